import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { startFakeAlipay, type FakeAlipay } from '../helpers/fake-alipay.js';
import { makeEvent, startTestService, testApiKey, type TestService, firstReminderToken } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay] }
`;

/** Ops refunds of Alipay payments, through the API, against the fake Alipay. */
describe('refunds of Alipay payments', () => {
  let alipay: FakeAlipay;
  let svc: TestService;
  let retry: RetryDeps;

  beforeAll(async () => {
    alipay = await startFakeAlipay();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY_ALIPAY: 'alipay',
        ALIPAY_APP_ID: alipay.appId,
        ALIPAY_PRIVATE_KEY: alipay.gatewayOptions.privateKey,
        ALIPAY_PUBLIC_KEY: alipay.gatewayOptions.alipayPublicKey,
        ALIPAY_GATEWAY_URL: alipay.gatewayOptions.gatewayUrl,
      },
    });
    retry = svc.service.payments!;
  });
  afterAll(async () => {
    await svc.close();
    await alipay.close();
  });

  /** An order paid through Alipay (129.00 yuan): its id and its trade number. */
  async function paidOrder() {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    const started = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (started.kind !== 'next_action' || started.action.type !== 'redirect') throw new Error('expected a cashier');
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${started.attemptId}`,
    );
    const tradeNo = attempt?.gateway_payment_id ?? '';
    const notify = alipay.customerPays(tradeNo, { cashierUrl: started.action.url });
    const answer = await fetch(`${svc.url}/webhooks/payments/alipay`, {
      method: 'POST',
      headers: notify.headers,
      body: notify.rawBody,
    });
    expect(await answer.text()).toBe('success');
    return { orderId: event.order.id, tradeNo };
  }

  const refund = (orderId: string, idempotencyKey: string, amount: number) =>
    fetch(`${svc.url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${testApiKey}`,
        'content-type': 'application/json',
        'idempotency-key': idempotencyKey,
      },
      body: JSON.stringify({ amount, reason: 'damaged item' }),
    });

  const refundRows = (orderId: string) =>
    rows<{ refund_key: string; status: string; gateway_refund_id: string | null }>(
      svc.database.db,
      sql`select refund_key, status, gateway_refund_id from refunds where order_id = ${orderId} order by created_at`,
    );

  it('makes two refunds whose idempotency keys differ only by a dash and an underscore', async () => {
    const { orderId, tradeNo } = await paidOrder();
    expect((await refund(orderId, 'damaged-1', 1_000)).status).toBe(202);
    expect((await refund(orderId, 'damaged_1', 1_000)).status).toBe(202);

    const made = await refundRows(orderId);
    expect(made.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    expect(made[0]?.gateway_refund_id).not.toBe(made[1]?.gateway_refund_id);
    const trade = alipay.trade(tradeNo);
    expect([...(trade?.refunds.keys() ?? [])].sort()).toEqual(made.map((r) => r.gateway_refund_id).sort());
    expect(trade?.refundedFen).toBe(2_000);
  });

  it('repeats a refund requested before the upgrade under its original out_request_no', async () => {
    const { orderId, tradeNo } = await paidOrder();
    // A refund the previous release recorded and sent, whose answer never came back: Alipay
    // made it under the number that release derived (every `-` of the key an `_`).
    const key = `ops-${orderId}-legacy-1`;
    const originalNo = key.replace(/-/g, '_');
    const [payment] = await rows<{ id: string }>(
      svc.database.db,
      sql`select id from payments where order_id = ${orderId}`,
    );
    const now = new Date();
    await svc.database.db.execute(
      sql`insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, key_version,
                               requested_by, created_at, updated_at)
          values (${`ref_legacy_${Date.now()}`}, ${orderId}, ${payment?.id}, 500, 'CNY', 'damaged item', 'pending',
                  ${key}, 1, 'key:ops', ${now}, ${now})`,
    );
    const trade = alipay.trade(tradeNo);
    if (!trade) throw new Error('no trade');
    trade.refunds.set(originalNo, { amount: '5.00', at: '2026-03-08 09:30:00' });
    trade.refundedFen += 500;

    // Ops repeat the request with the same idempotency key.
    expect((await refund(orderId, 'legacy-1', 500)).status).toBe(202);
    expect(await refundRows(orderId)).toEqual([
      { refund_key: key, status: 'succeeded', gateway_refund_id: originalNo },
    ]);
    expect(alipay.requests.at(-1)?.bizContent).toMatchObject({ out_request_no: originalNo });
    expect(trade.refundedFen).toBe(500);
  });
});
