import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveSecret, sandboxWebhookSecret } from '../../src/app/deps.js';
import { rows } from '../../src/db/rows.js';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import type { PaymentMethod } from '../../src/domain/vocabulary.js';
import { startFakeStripe, type FakeStripe } from '../helpers/fake-stripe.js';
import { makeEvent, startTestService, type TestService, firstReminderToken } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [card, alipay, wechat_pay] }
`;

/** A recovery whose first reminder went out, and an attempt opened with `method` through the retry link. */
async function openAttempt(svc: TestService, method: PaymentMethod) {
  const event = makeEvent();
  expect((await svc.post(event)).status).toBe(202);
  const token = await firstReminderToken(svc, event.order.id);
  const result = await initiatePayment(svc.service.payments!, { token, method, email: null, phone: null });
  if (result.kind !== 'next_action') throw new Error(`initiate: ${result.kind}`);
  const [attempt] = await rows<{ gateway: string; gateway_payment_id: string }>(
    svc.database.db,
    sql`select gateway, gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
  );
  if (!attempt) throw new Error('no attempt');
  return { orderId: event.order.id, attemptId: result.attemptId, action: result.action, attempt };
}

/** A sandbox `payment.succeeded` for the order, signed with the key this service derives from its secret. */
function sandboxSuccess(svc: TestService, paid: { orderId: string; attemptId: string; paymentId: string }) {
  const body = JSON.stringify({
    id: `evt_${paid.attemptId}`,
    type: 'payment.succeeded',
    created: Math.floor(Date.now() / 1000),
    data: {
      payment_id: paid.paymentId,
      order_id: paid.orderId,
      attempt_id: paid.attemptId,
      amount: 12900,
      currency: 'CNY',
      method: 'card',
      failure_code: null,
      refund_id: null,
    },
  });
  return fetch(`${svc.url}/webhooks/payments/sandbox`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'recoup-sandbox-signature': signSandboxPayload(body, sandboxWebhookSecret(resolveSecret(svc.config)), new Date()),
    },
    body,
  });
}

async function orderStatus(svc: TestService, orderId: string) {
  const [order] = await rows<{ status: string; payments: number }>(
    svc.database.db,
    sql`select status, (select count(*)::int from payments where order_id = ${orderId}) as payments
        from orders where id = ${orderId}`,
  );
  return order;
}

describe('the sandbox gateway with every method on a real gateway', () => {
  let stripe: FakeStripe;
  let svc: TestService;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY: 'stripe',
        STRIPE_SECRET_KEY: stripe.secretKey,
        STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
        STRIPE_API_URL: stripe.url,
        RECOUP_SECRET: 'sandbox-routes-secret-0123456789',
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
    await stripe?.close();
  });

  it('is not there: its pages and webhook answer 404, and a signed sandbox webhook settles nothing', async () => {
    const { orderId, attemptId, attempt } = await openAttempt(svc, 'card');
    expect(attempt.gateway).toBe('stripe');

    const webhook = await sandboxSuccess(svc, { orderId, attemptId, paymentId: 'sbx_0123456789abcdef01234567' });
    expect(await orderStatus(svc, orderId)).toEqual({ status: 'pending', payments: 0 });
    expect(webhook.status).toBe(404);
    const [open] = await rows<{ status: string }>(
      svc.database.db,
      sql`select status from payment_attempts where id = ${attemptId}`,
    );
    expect(open?.status).toBe('open');

    for (const path of ['/sandbox/assets/sandbox.css', '/sandbox/checkout/sbx_0123456789abcdef01234567']) {
      expect((await fetch(`${svc.url}${path}`)).status, path).toBe(404);
    }
    expect(svc.service.payments?.gateways.byName('sandbox')).toBeUndefined();
  });
});

describe('the sandbox gateway where a method is on it', () => {
  let stripe: FakeStripe;
  let svc: TestService;

  beforeAll(async () => {
    stripe = await startFakeStripe();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY: 'stripe',
        PAYMENT_GATEWAY_CARD: 'sandbox',
        STRIPE_SECRET_KEY: stripe.secretKey,
        STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
        STRIPE_API_URL: stripe.url,
        RECOUP_SECRET: 'sandbox-routes-secret-0123456789',
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
    await stripe?.close();
  });

  it('serves its pages and takes its webhook for the methods on it', async () => {
    const { orderId, attemptId, action, attempt } = await openAttempt(svc, 'card');
    expect(attempt.gateway).toBe('sandbox');
    if (action.type !== 'redirect') throw new Error('expected the sandbox checkout');
    const checkout = new URL(action.url);
    expect((await fetch(`${svc.url}${checkout.pathname}`)).status).toBe(200);
    expect((await fetch(`${svc.url}/sandbox/assets/sandbox.css`)).status).toBe(200);

    const webhook = await sandboxSuccess(svc, { orderId, attemptId, paymentId: attempt.gateway_payment_id });
    expect(webhook.status).toBe(200);
    expect(await webhook.json()).toMatchObject({ outcome: 'payment_recorded' });
    expect(await orderStatus(svc, orderId)).toEqual({ status: 'paid', payments: 1 });
  });
});
