import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrderTimeline } from '../../src/console/order-timeline.js';
import { rows } from '../../src/db/rows.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { startFakeStripe, type FakeJson, type FakeStripe, type FakeStripeEvent } from '../helpers/fake-stripe.js';
import { startFakeWechatPay, type FakeWechatPay } from '../helpers/fake-wechat-pay.js';
import { makeEvent, startTestService, type TestService, firstReminderToken } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [card, wechat_pay] }
  - { after: 1h, channel: email, template: last-call }
`;

/**
 * A validly signed gateway event settles an order only when it pays an attempt recoup opened
 * at that gateway, for the amount and currency that attempt asked. Card goes through Stripe,
 * WeChat Pay direct, both against their fakes and through the real adapters.
 */
describe('a gateway payment is reconciled with the attempt it pays', () => {
  let stripe: FakeStripe;
  let wechat: FakeWechatPay;
  let svc: TestService;
  let retry: RetryDeps;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    wechat = await startFakeWechatPay();
    const wechatKey = Object.entries(wechat.gatewayOptions.platformKeys)[0] ?? ['', ''];
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY_CARD: 'stripe',
        PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay',
        STRIPE_SECRET_KEY: stripe.secretKey,
        STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
        STRIPE_API_URL: stripe.url,
        WECHAT_PAY_APP_ID: wechat.gatewayOptions.appId,
        WECHAT_PAY_MCH_ID: wechat.gatewayOptions.mchId,
        WECHAT_PAY_MERCHANT_SERIAL: wechat.gatewayOptions.merchantSerial,
        WECHAT_PAY_PRIVATE_KEY: wechat.gatewayOptions.privateKey,
        WECHAT_PAY_API_V3_KEY: wechat.gatewayOptions.apiV3Key,
        WECHAT_PAY_PUBLIC_KEY_ID: wechatKey[0],
        WECHAT_PAY_PUBLIC_KEY: wechatKey[1],
        WECHAT_PAY_API_URL: wechat.gatewayOptions.baseUrl,
      },
    });
    retry = svc.service.payments!;
  });
  afterAll(async () => {
    await svc?.close();
    await stripe?.close();
    await wechat?.close();
  });

  /** A $50.00 (or ¥50.00) order in recovery whose first reminder went out, and an attempt opened with `method`. */
  async function openAttempt(method: 'card' | 'wechat_pay') {
    const event = makeEvent({}, { amount: 5000, currency: method === 'card' ? 'USD' : 'CNY' });
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    const result = await initiatePayment(retry, { token, method, email: null, phone: null, device: 'desktop' });
    if (result.kind !== 'next_action') throw new Error(`initiate: ${result.kind}`);
    const [attempt] = await rows<{ id: string; gateway: string; gateway_payment_id: string; amount: string }>(
      svc.database.db,
      sql`select id, gateway, gateway_payment_id, amount::text as amount from payment_attempts
          where id = ${result.attemptId}`,
    );
    if (!attempt) throw new Error('no attempt');
    expect(attempt.amount).toBe('5000');
    return { orderId: event.order.id, attempt };
  }

  const post = (gateway: string, delivery: { rawBody: Buffer; headers: Record<string, string> }) =>
    fetch(`${svc.url}/webhooks/payments/${gateway}`, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.rawBody,
    });

  /** The Stripe event with its PaymentIntent changed by `change`, signed with the real webhook secret. */
  function alteredStripeEvent(event: FakeStripeEvent, change: (intent: FakeJson) => void) {
    const altered = structuredClone(event);
    altered.id = `${event.id}_altered`;
    change(altered.data.object);
    return stripe.signedWebhook(altered);
  }

  async function expectUnsettled(orderId: string, gateway: string, outcome: string) {
    const order = await svc.getOrder(orderId);
    expect(order.order).toMatchObject({ status: 'pending' });
    expect(order.recovery).toMatchObject({ state: 'active' });
    expect(await rows(svc.database.db, sql`select id from payments where order_id = ${orderId}`)).toEqual([]);
    const events = await rows<{ outcome: string }>(
      svc.database.db,
      sql`select g.outcome from gateway_events g
          where g.gateway = ${gateway} and g.event->>'orderId' = ${orderId} and g.type = 'payment.succeeded'`,
    );
    expect(events).toEqual([{ outcome }]);
    const timeline = await loadOrderTimeline(svc.database.db, orderId);
    const flagged = timeline?.entries.filter((e) => e.flag === outcome) ?? [];
    expect(flagged).toHaveLength(1);
    expect(flagged[0]).toMatchObject({ kind: 'payment', tone: 'bad' });
  }

  it('Stripe: 1 cent for a $50.00 attempt is flagged, answered 2xx, and the order stays unpaid', async () => {
    const { orderId, attempt } = await openAttempt('card');
    expect(attempt.gateway).toBe('stripe');
    const paid = stripe.customerPays(attempt.gateway_payment_id, { method: 'card' });
    const cent = alteredStripeEvent(paid, (intent) => {
      intent.amount = 1;
      intent.amount_received = 1;
    });

    const answer = await post('stripe', cent);
    expect(answer.status).toBe(200);
    await expectUnsettled(orderId, 'stripe', 'amount_mismatch');
    // The attempt is closed with the problem (the sweeper stops asking; ops see why).
    expect(
      await rows(svc.database.db, sql`select status, failure_code from payment_attempts where id = ${attempt.id}`),
    ).toEqual([{ status: 'failed', failure_code: 'amount_mismatch' }]);
    // A resend of the same event has no second effect.
    expect((await post('stripe', cent)).status).toBe(200);
    await expectUnsettled(orderId, 'stripe', 'amount_mismatch');

    // The genuine event for the full amount still settles it.
    expect((await post('stripe', stripe.signedWebhook(paid))).status).toBe(200);
    expect((await svc.getOrder(orderId)).order).toMatchObject({ status: 'paid' });
  });

  it('Stripe: the right amount in another currency is flagged too', async () => {
    const { orderId, attempt } = await openAttempt('card');
    const paid = stripe.customerPays(attempt.gateway_payment_id, { method: 'card' });
    const yen = alteredStripeEvent(paid, (intent) => {
      intent.currency = 'jpy';
    });
    expect((await post('stripe', yen)).status).toBe(200);
    await expectUnsettled(orderId, 'stripe', 'amount_mismatch');
  });

  it('Stripe: a PaymentIntent recoup never opened, naming a real order and attempt, is flagged', async () => {
    const { orderId, attempt } = await openAttempt('card');
    const paid = stripe.customerPays(attempt.gateway_payment_id, { method: 'card' });
    const foreign = alteredStripeEvent(paid, (intent) => {
      intent.id = 'pi_never_opened_by_recoup';
    });
    expect((await post('stripe', foreign)).status).toBe(200);
    await expectUnsettled(orderId, 'stripe', 'unknown_attempt');
  });

  it('WeChat Pay: 1 fen for a ¥50.00 attempt is flagged and answered 204', async () => {
    const { orderId, attempt } = await openAttempt('wechat_pay');
    expect(attempt.gateway).toBe('wechat_pay');
    wechat.customerPays(attempt.gateway_payment_id);
    const fen = wechat.notifyFor(attempt.gateway_payment_id, {
      amount: { total: 1, currency: 'CNY', payer_total: 1, payer_currency: 'CNY' },
    });
    expect((await post('wechat_pay', fen)).status).toBe(204);
    await expectUnsettled(orderId, 'wechat_pay', 'amount_mismatch');

    expect((await post('wechat_pay', wechat.notifyFor(attempt.gateway_payment_id))).status).toBe(204);
    expect((await svc.getOrder(orderId)).order).toMatchObject({ status: 'paid' });
  });

  it('WeChat Pay: an out_trade_no recoup never placed is flagged and answered 204', async () => {
    const { orderId, attempt } = await openAttempt('wechat_pay');
    wechat.customerPays(attempt.gateway_payment_id);
    const foreign = wechat.notifyFor(attempt.gateway_payment_id, { out_trade_no: 'never-placed-by-recoup' });
    expect((await post('wechat_pay', foreign)).status).toBe(204);
    await expectUnsettled(orderId, 'wechat_pay', 'unknown_attempt');
  });
});
