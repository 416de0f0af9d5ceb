import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { resolveSecret, sandboxWebhookSecret } from '../../src/app/deps.js';
import { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { refreshAttempt } from '../../src/payments/attempt-status.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import { recordClick, loadRetryLink, type RetryDeps } from '../../src/payments/retry-session.js';
import {
  freePort,
  makeEvent,
  startTestService,
  testApiKey,
  waitFor,
  type TestService,
  firstReminderToken,
} from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
  - { after: 1h, channel: email, template: last-call }
`;

describe('payments through retry links and gateway webhooks', () => {
  let svc: TestService;
  let retry: RetryDeps;
  let sandbox: SandboxGateway;

  beforeAll(async () => {
    const port = await freePort();
    // PUBLIC_URL is this very service, so the sandbox's signed webhooks reach it.
    svc = await startTestService({
      cadences: cadence,
      env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` },
    });
    retry = svc.service.payments!;
    sandbox = retry.gateways.byName('sandbox') as SandboxGateway;
  });
  afterAll(async () => {
    await svc.close();
  });

  /** A recovery whose first SMS went out; returns its retry token. */
  async function recoveryWithLink(order: Record<string, unknown> = {}) {
    const event = makeEvent({}, order);
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    return { event, token };
  }

  async function paymentsOf(orderId: string) {
    return rows<{
      id: string;
      amount: string;
      duplicate: boolean;
      attribution: string;
      click_id: string | null;
      message_id: string | null;
      step: number | null;
    }>(
      svc.database.db,
      sql`select id, amount::text as amount, duplicate, attribution, click_id, message_id, step from payments where order_id = ${orderId}`,
    );
  }

  async function orderState(orderId: string) {
    const view = await svc.getOrder(orderId);
    return { status: (view.order as { status: string }).status, recovery: view.recovery?.state };
  }

  it('pays through the link: the webhook records the payment, ends the recovery and credits the click', async () => {
    const { event, token } = await recoveryWithLink();
    const state = await loadRetryLink(retry, token);
    if (state.kind !== 'open') throw new Error(`link is ${state.kind}`);
    const clickId = await recordClick(retry, state.view, 'vitest');

    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error(`initiate: ${result.kind}`);
    expect(result.action.type).toBe('redirect');

    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });

    await waitFor(async () => ((await orderState(event.order.id)).status === 'paid' ? true : undefined), {
      what: 'the webhook to mark the order paid',
    });
    expect(await orderState(event.order.id)).toEqual({ status: 'paid', recovery: 'recovered' });
    const [payment] = await paymentsOf(event.order.id);
    expect(payment).toMatchObject({
      amount: '12900',
      duplicate: false,
      attribution: 'clicked',
      click_id: clickId,
      step: 0,
    });
  });

  it('a double submit reuses the open attempt: one attempt, one gateway payment', async () => {
    const { event, token } = await recoveryWithLink();
    const [first, second] = await Promise.all([
      initiatePayment(retry, { token, method: 'wechat_pay', email: null, phone: null }),
      initiatePayment(retry, { token, method: 'wechat_pay', email: null, phone: null }),
    ]);
    expect(first.kind).toBe('next_action');
    expect(second).toEqual(first);
    const attempts = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from payment_attempts where order_id = ${event.order.id} and source = 'retry_link'`,
    );
    expect(attempts[0]?.n).toBe(1);
  });

  it('a new method supersedes the open attempt and closes it at the gateway', async () => {
    const { event, token } = await recoveryWithLink();
    const first = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    const second = await initiatePayment(retry, { token, method: 'wechat_pay', email: null, phone: null });
    if (first.kind !== 'next_action' || second.kind !== 'next_action') throw new Error('initiate failed');
    const attempts = await rows<{ id: string; status: string; gateway_payment_id: string }>(
      svc.database.db,
      sql`select id, status, gateway_payment_id from payment_attempts
          where order_id = ${event.order.id} and source = 'retry_link' order by attempt_number`,
    );
    expect(attempts.map((a) => a.status)).toEqual(['cancelled', 'open']);
    expect((await sandbox.retrievePayment(attempts[0]!.gateway_payment_id)).status).toBe('cancelled');
  });

  it('rejects a forged webhook and records nothing; a replayed one has one effect', async () => {
    const { event, token } = await recoveryWithLink();
    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error('initiate failed');
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    const body = JSON.stringify({
      id: 'evt_forged_1',
      type: 'payment.succeeded',
      data: { payment_id: attempt!.gateway_payment_id, order_id: event.order.id, attempt_id: result.attemptId },
    });
    const forged = await fetch(`${svc.url}/webhooks/payments/sandbox`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'recoup-sandbox-signature': signSandboxPayload(body, 'not-the-secret', new Date()),
      },
      body,
    });
    expect(forged.status).toBe(403);
    const unsigned = await fetch(`${svc.url}/webhooks/payments/sandbox`, { method: 'POST', body });
    expect(unsigned.status).toBe(403);
    expect(await paymentsOf(event.order.id)).toEqual([]);
    expect((await orderState(event.order.id)).status).toBe('pending');

    // Let the genuine webhook through once, then replay it with a valid signature.
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });
    await waitFor(async () => ((await orderState(event.order.id)).status === 'paid' ? true : undefined), {
      what: 'the payment',
    });
    const [{ n: eventsBefore } = { n: 0 }] = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from gateway_events where gateway_payment_id = ${attempt!.gateway_payment_id}`,
    );
    expect(eventsBefore).toBe(1);
    const [stored] = await rows<{ event_id: string }>(
      svc.database.db,
      sql`select event_id from gateway_events where gateway_payment_id = ${attempt!.gateway_payment_id}`,
    );
    // Re-deliver the same event id with a valid signature: a replay.
    const replayBody = JSON.stringify({
      id: stored!.event_id,
      type: 'payment.succeeded',
      created: Math.floor(Date.now() / 1000),
      data: {
        payment_id: attempt!.gateway_payment_id,
        order_id: event.order.id,
        attempt_id: result.attemptId,
        amount: 12900,
        currency: 'CNY',
        method: 'alipay',
        failure_code: null,
        refund_id: null,
      },
    });
    const replay = await fetch(`${svc.url}/webhooks/payments/sandbox`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'recoup-sandbox-signature': signSandboxPayload(
          replayBody,
          sandboxWebhookSecret(resolveSecret(svc.config)),
          new Date(),
        ),
      },
      body: replayBody,
    });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ outcome: 'duplicate_event' });
    expect(await paymentsOf(event.order.id)).toHaveLength(1);
  });

  it('refunds a second payment for an already-paid order automatically', async () => {
    const { event, token } = await recoveryWithLink();
    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error('initiate failed');
    // The customer had paid in the shop a minute earlier (its event arrives late), then pays the
    // recoup payment page as well: two payments, the second refunded.
    const paidInShop = {
      ...makeEvent({ type: 'payment.succeeded', occurred_at: new Date(Date.now() - 60_000).toISOString() }),
      order: event.order,
    };
    expect((await svc.post(paidInShop)).status).toBe(202);
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });

    const refund = await waitFor(
      async () => {
        const [r] = await rows<{ reason: string; status: string; amount: string }>(
          svc.database.db,
          sql`select reason, status, amount::text as amount from refunds where order_id = ${event.order.id}`,
        );
        return r?.status === 'succeeded' ? r : undefined;
      },
      { what: 'the duplicate refund' },
    );
    expect(refund).toEqual({ reason: 'duplicate', status: 'succeeded', amount: '12900' });
    const view = (await svc.getOrder(event.order.id)) as unknown as {
      payments: Array<{ duplicate: boolean }>;
      refunds: Array<{ reason: string; amount: number }>;
    };
    expect(view.payments.map((p) => p.duplicate).sort()).toEqual([false, true]);
    expect(view.refunds).toEqual([expect.objectContaining({ reason: 'duplicate', amount: 12900 })]);
    const payments = await paymentsOf(event.order.id);
    expect(payments.map((p) => p.duplicate).sort()).toEqual([false, true]);
    expect((await sandbox.retrievePayment(attempt!.gateway_payment_id)).amountRefunded).toBe(12900);
  });

  it('leaves a possible double report to ops instead of refunding it', async () => {
    const { event, token } = await recoveryWithLink();
    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error('initiate failed');
    // The shop reports a payment made after recoup's attempt started: it may be the same money.
    const reported = { ...makeEvent({ type: 'payment.succeeded' }), order: event.order };
    expect((await svc.post(reported)).status).toBe(202);
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });
    await waitFor(async () => ((await paymentsOf(event.order.id)).length === 2 ? true : undefined), {
      what: 'the second payment',
    });
    expect((await paymentsOf(event.order.id)).map((p) => p.duplicate).sort()).toEqual([false, true]);
    expect(await rows(svc.database.db, sql`select id from refunds where order_id = ${event.order.id}`)).toEqual([]);
    expect((await sandbox.retrievePayment(attempt!.gateway_payment_id)).amountRefunded ?? 0).toBe(0);
  });

  it('lets ops refund part of a payment through the API, once per idempotency key', async () => {
    const { event, token } = await recoveryWithLink();
    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error('initiate failed');
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });
    await waitFor(async () => ((await orderState(event.order.id)).status === 'paid' ? true : undefined), {
      what: 'the payment',
    });
    const refund = (key: string, body: unknown) =>
      fetch(`${svc.url}/v1/orders/${event.order.id}/refunds`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
      });
    expect((await refund('k1', { amount: 99999, reason: 'too much' })).status).toBe(400);
    expect((await refund('k1', { reason: '' })).status).toBe(400);
    const first = await refund('k2', { amount: 2900, reason: 'damaged item' });
    expect(first.status).toBe(202);
    const again = await refund('k2', { amount: 2900, reason: 'damaged item' });
    const ids = [await again.json(), await first.json()] as Array<{ refund_id: string }>;
    expect(ids[0]?.refund_id).toBe(ids[1]?.refund_id);
    const refunds = await rows<{ amount: string }>(
      svc.database.db,
      sql`select amount::text as amount from refunds where order_id = ${event.order.id}`,
    );
    expect(refunds).toEqual([{ amount: '2900' }]);
    expect((await sandbox.retrievePayment(attempt!.gateway_payment_id)).amountRefunded).toBe(2900);
  });

  it("never shows or settles another order's attempt through a link", async () => {
    const a = await recoveryWithLink();
    const b = await recoveryWithLink();
    const started = await initiatePayment(retry, { token: b.token, method: 'wechat_pay', email: null, phone: null });
    if (started.kind !== 'next_action') throw new Error('initiate failed');
    for (const path of [
      `status/${started.attemptId}`,
      `pay/${started.attemptId}`,
      `done?attempt=${started.attemptId}`,
    ]) {
      const response = await fetch(`${svc.url}/r/${a.token}/${path}`);
      expect(response.status).toBe(404);
      expect(await response.text()).not.toContain(b.event.order.id);
    }
    expect(await refreshAttempt(retry, a.token, started.attemptId)).toBeUndefined();
  });

  it('charges the total without an expired coupon', async () => {
    const { token } = await recoveryWithLink({
      amount: 9000,
      coupon: { code: 'WELCOME10', discount_amount: 1000, expires_at: '2020-01-01T00:00:00Z' },
    });
    const state = await loadRetryLink(retry, token);
    if (state.kind !== 'open') throw new Error('link not open');
    expect(state.view.charge).toMatchObject({ coupon: { code: 'WELCOME10', status: 'expired' }, total: 10000 });
    const result = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (result.kind !== 'next_action') throw new Error('initiate failed');
    const [attempt] = await rows<{ amount: string; gateway_payment_id: string }>(
      svc.database.db,
      sql`select amount::text as amount, gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    expect(attempt?.amount).toBe('10000');
    expect((await sandbox.retrievePayment(attempt!.gateway_payment_id)).amount).toBe(10000);
  });
});
