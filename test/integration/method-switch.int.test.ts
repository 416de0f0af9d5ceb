import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { startFakeAlipay, type FakeAlipay } from '../helpers/fake-alipay.js';
import { startFakeStripe, type FakeStripe } from '../helpers/fake-stripe.js';
import { makeEvent, startTestService, type TestService, firstReminderToken } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [card, alipay] }
`;

const t = pageStrings['zh-CN'];

/** Card through Stripe, Alipay direct, both against local fakes; the customer switches on the retry page. */
describe('switching payment method while the previous attempt is open', () => {
  let stripe: FakeStripe;
  let alipay: FakeAlipay;
  let svc: TestService;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    alipay = await startFakeAlipay();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY: 'stripe',
        PAYMENT_GATEWAY_ALIPAY: 'alipay',
        STRIPE_SECRET_KEY: stripe.secretKey,
        STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
        STRIPE_PUBLISHABLE_KEY: 'pk_test_method_switch',
        STRIPE_API_URL: stripe.url,
        ALIPAY_APP_ID: alipay.appId,
        ALIPAY_PRIVATE_KEY: alipay.gatewayOptions.privateKey,
        ALIPAY_PUBLIC_KEY: alipay.gatewayOptions.alipayPublicKey,
        ALIPAY_GATEWAY_URL: alipay.gatewayOptions.gatewayUrl,
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
    await stripe?.close();
    await alipay?.close();
  });

  /** The retry page of a fresh recovery's first reminder, opened like a browser. */
  async function openRetryPage() {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    const page = await fetch(`${svc.url}/r/${token}`);
    expect(page.status).toBe(200);
    const cookie = page.headers
      .getSetCookie()
      .find((c) => c.startsWith('recoup_csrf='))
      ?.split(';')[0];
    const csrf = /<input type="hidden" name="csrf" value="([^"]+)">/.exec(await page.text())?.[1];
    if (!cookie || !csrf) throw new Error('no CSRF cookie or field on the retry page');
    const pay = (method: string) =>
      fetch(`${svc.url}/r/${token}`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ csrf, email: '', phone: '', method }).toString(),
      });
    return { orderId: event.order.id, token, pay };
  }

  /** The attempts recoup made through the retry link (the shop's reported one left out). */
  async function attemptsOf(orderId: string) {
    return rows<{ gateway: string; method: string; status: string; gateway_payment_id: string | null }>(
      svc.database.db,
      sql`select gateway, method, status, gateway_payment_id from payment_attempts
          where order_id = ${orderId} and source = 'retry_link' order by attempt_number`,
    );
  }

  /** Opens a card attempt (a PaymentIntent at Stripe) and returns it. */
  async function cardAttemptOpen() {
    const page = await openRetryPage();
    const card = await page.pay('card');
    expect(card.status).toBe(303);
    expect(card.headers.get('location')).toMatch(new RegExp(`^/r/${page.token}/card/att_`));
    const [attempt] = await attemptsOf(page.orderId);
    expect(attempt).toMatchObject({ gateway: 'stripe', method: 'card', status: 'open' });
    return { ...page, intentId: attempt!.gateway_payment_id! };
  }

  it('while Stripe is down, keeps the card attempt open and asks to try again, with no 5xx and no second payment', async () => {
    const { orderId, pay, intentId } = await cardAttemptOpen();
    // Stripe answers 503 to the cancel and to the SDK's one retry of it.
    stripe.failNext({ status: 503 }, { on: 'cancel', count: 2 });

    const switched = await pay('alipay');
    expect(switched.status).toBe(200);
    expect(await switched.text()).toContain(t.previousAttemptOpen);
    expect(await attemptsOf(orderId)).toEqual([
      { gateway: 'stripe', method: 'card', status: 'open', gateway_payment_id: intentId },
    ]);
    expect(stripe.paymentIntent(intentId)?.status).not.toBe('canceled');

    // The card payment the customer completes meanwhile on the open attempt is recorded.
    const paid = stripe.signedWebhook(stripe.customerPays(intentId));
    const delivered = await fetch(`${svc.url}/webhooks/payments/stripe`, {
      method: 'POST',
      headers: paid.headers,
      body: paid.rawBody,
    });
    expect(delivered.status).toBe(200);
    const order = await svc.getOrder(orderId);
    expect(order.order).toMatchObject({ status: 'paid' });
    expect(await attemptsOf(orderId)).toEqual([
      { gateway: 'stripe', method: 'card', status: 'succeeded', gateway_payment_id: intentId },
    ]);
  });

  it('once Stripe answers again, the switch closes the PaymentIntent and opens the Alipay payment', async () => {
    const { orderId, pay, intentId } = await cardAttemptOpen();
    stripe.failNext({ status: 503 }, { on: 'cancel', count: 2 });
    expect((await pay('alipay')).status).toBe(200);

    const switched = await pay('alipay');
    expect(switched.status).toBe(303);
    expect(new URL(String(switched.headers.get('location'))).origin).toBe(new URL(alipay.url).origin);
    expect(stripe.paymentIntent(intentId)?.status).toBe('canceled');
    expect(await attemptsOf(orderId)).toEqual([
      { gateway: 'stripe', method: 'card', status: 'cancelled', gateway_payment_id: intentId },
      { gateway: 'alipay', method: 'alipay', status: 'open', gateway_payment_id: expect.any(String) },
    ]);
  });
});
