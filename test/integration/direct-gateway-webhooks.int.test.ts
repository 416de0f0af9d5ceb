import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { rsaKeys, startFakeAlipay, type FakeAlipay } from '../helpers/fake-alipay.js';
import { startFakeWechatPay, type FakeWechatPay } from '../helpers/fake-wechat-pay.js';
import { makeEvent, startTestService, waitFor, type TestService, firstReminderToken } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
  - { after: 1h, channel: email, template: last-call }
`;

/** recoup configured with card on the sandbox and Alipay / WeChat Pay direct, against the fakes. */
describe('direct Alipay and WeChat Pay through /webhooks/payments/:gateway', () => {
  let alipay: FakeAlipay;
  let wechat: FakeWechatPay;
  let svc: TestService;
  let retry: RetryDeps;

  beforeAll(async () => {
    alipay = await startFakeAlipay();
    wechat = await startFakeWechatPay();
    const wechatKey = Object.entries(wechat.gatewayOptions.platformKeys)[0] ?? ['', ''];
    svc = await startTestService({
      cadences: cadence,
      env: {
        PAYMENT_GATEWAY_ALIPAY: 'alipay',
        PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay',
        ALIPAY_APP_ID: alipay.appId,
        ALIPAY_PRIVATE_KEY: alipay.gatewayOptions.privateKey,
        ALIPAY_PUBLIC_KEY: alipay.gatewayOptions.alipayPublicKey,
        ALIPAY_GATEWAY_URL: alipay.gatewayOptions.gatewayUrl,
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
    await svc.close();
    await alipay.close();
    await wechat.close();
  });

  /** A recovery whose first reminder went out, and an attempt opened with `method`. */
  async function openAttempt(method: 'alipay' | 'wechat_pay') {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    const result = await initiatePayment(retry, { token, method, email: null, phone: null, device: 'desktop' });
    if (result.kind !== 'next_action') throw new Error(`initiate: ${result.kind}`);
    const [attempt] = await rows<{ gateway: string; gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway, gateway_payment_id from payment_attempts where id = ${result.attemptId}`,
    );
    if (!attempt) throw new Error('no attempt');
    return { orderId: event.order.id, action: result.action, attempt };
  }

  const post = (gateway: string, notify: { rawBody: Buffer; headers: Record<string, string> }) =>
    fetch(`${svc.url}/webhooks/payments/${gateway}`, { method: 'POST', headers: notify.headers, body: notify.rawBody });

  async function paymentsOf(orderId: string) {
    return rows<{ amount: string; gateway: string }>(
      svc.database.db,
      sql`select amount::text as amount, gateway from payments where order_id = ${orderId}`,
    );
  }

  it('Alipay: `success` only once recorded, one effect for a resend, `fail` for a forgery', async () => {
    const { orderId, action, attempt } = await openAttempt('alipay');
    expect(attempt.gateway).toBe('alipay');
    if (action.type !== 'redirect') throw new Error('expected a redirect to the cashier');
    const notify = alipay.customerPays(attempt.gateway_payment_id, { cashierUrl: action.url });

    const fields = Object.fromEntries(new URLSearchParams(notify.rawBody.toString('utf8')));
    const forged = await post('alipay', alipay.signNotify(fields, rsaKeys().privateKey));
    expect(forged.status).toBe(403);
    expect(await forged.text()).toBe('fail');
    expect(await paymentsOf(orderId)).toEqual([]);

    const genuine = await post('alipay', notify);
    expect(genuine.status).toBe(200);
    expect(genuine.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await genuine.text()).toBe('success');
    // `success` came after the commit: the payment is already there.
    expect(await paymentsOf(orderId)).toEqual([{ amount: '12900', gateway: 'alipay' }]);

    const resent = await post('alipay', notify);
    expect(await resent.text()).toBe('success');
    expect(await paymentsOf(orderId)).toHaveLength(1);
    expect((await svc.getOrder(orderId)).order).toMatchObject({ status: 'paid' });
  });

  it('WeChat Pay: 204 once recorded, one effect for a resend, 4xx {code:"FAIL"} for a forgery', async () => {
    const { orderId, action, attempt } = await openAttempt('wechat_pay');
    expect(attempt.gateway).toBe('wechat_pay');
    expect(action.type).toBe('qr');
    const notify = wechat.customerPays(attempt.gateway_payment_id);

    const forged = await post(
      'wechat_pay',
      wechat.signNotify(notify.rawBody.toString('utf8'), { privateKey: rsaKeys().privateKey }),
    );
    expect(forged.status).toBe(403);
    expect(await forged.json()).toMatchObject({ code: 'FAIL', message: expect.stringMatching(/\S/) });
    expect(await paymentsOf(orderId)).toEqual([]);

    const genuine = await post('wechat_pay', notify);
    expect(genuine.status).toBe(204);
    expect(await paymentsOf(orderId)).toEqual([{ amount: '12900', gateway: 'wechat_pay' }]);
    const resent = await post('wechat_pay', notify);
    expect(resent.status).toBe(204);
    expect(await resent.text()).toBe('');
    expect(await paymentsOf(orderId)).toHaveLength(1);
  });

  it('answers a resend while the first delivery is still being applied with the failure reply, so it comes again', async () => {
    for (const method of ['alipay', 'wechat_pay'] as const) {
      const { orderId, action, attempt } = await openAttempt(method);
      const notify =
        method === 'alipay'
          ? alipay.customerPays(attempt.gateway_payment_id, {
              cashierUrl: action.type === 'redirect' ? action.url : undefined,
            })
          : wechat.customerPays(attempt.gateway_payment_id);
      // Hold the order's row lock: the first delivery claims the event, then waits for it.
      const holder = new pg.Client({ connectionString: svc.database.url });
      await holder.connect();
      let inFlight: Promise<Response> | undefined;
      try {
        await holder.query('begin');
        await holder.query('select id from orders where id = $1 for update', [orderId]);
        const first = post(method, notify);
        inFlight = first;
        await waitFor(
          async () => {
            const { rows: blocked } = await holder.query(
              `select pid from pg_stat_activity
               where datname = current_database() and pg_backend_pid() = any(pg_blocking_pids(pid))`,
            );
            return blocked.length > 0 ? true : undefined;
          },
          { what: 'the first delivery to wait for the order lock' },
        );

        const second = await post(method, notify);
        expect(second.status).toBe(409);
        if (method === 'alipay') expect(await second.text()).toBe('fail');
        else expect(await second.json()).toMatchObject({ code: 'FAIL', message: expect.stringMatching(/\S/) });

        await holder.query('commit');
        const answered = await first;
        expect(answered.status).toBe(method === 'alipay' ? 200 : 204);
        if (method === 'alipay') expect(await answered.text()).toBe('success');
      } finally {
        await holder.end();
        // Never leave it in flight (a failed assertion above): the service could not close under it.
        await inFlight?.catch(() => undefined);
      }
      expect(await paymentsOf(orderId)).toEqual([{ amount: '12900', gateway: method }]);
      const resent = await post(method, notify);
      expect(resent.status).toBe(method === 'alipay' ? 200 : 204);
      expect(await paymentsOf(orderId)).toHaveLength(1);
    }
  });

  it('offers card through the sandbox beside the direct wallets', () => {
    expect(retry.gateways.forMethod('card', 'CNY')?.name).toBe('sandbox');
    expect(retry.gateways.forMethod('alipay', 'CNY')?.name).toBe('alipay');
    expect(retry.gateways.forMethod('wechat_pay', 'CNY')?.name).toBe('wechat_pay');
    expect(retry.gateways.methodsFor('USD')).toEqual(['card']);
  });
});
