import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FixedClock } from '../../src/platform/clock.js';
import {
  WechatPayGateway,
  outTradeNo,
  type WechatPayGatewayOptions,
} from '../../src/payments/gateways/wechat-pay/wechat-pay-gateway.js';
import { GatewayError, type PaymentRequest } from '../../src/payments/payment-gateway.js';
import { rsaKeys } from '../helpers/fake-alipay.js';
import { startFakeWechatPay, type FakeWechatPay } from '../helpers/fake-wechat-pay.js';
import { paymentGatewayContract, paymentRequest } from '../helpers/payment-gateway.contract.js';

const notifyUrl = 'http://recoup.test/webhooks/payments/wechat_pay';

for (const keyMode of ['public_key', 'certificate'] as const) {
  paymentGatewayContract(
    `WechatPayGateway (${keyMode === 'public_key' ? 'WeChat Pay public key' : 'platform certificate'})`,
    async () => {
      const fake = await startFakeWechatPay({ keyMode });
      const gateway = new WechatPayGateway({ ...fake.gatewayOptions, notifyUrl });
      return {
        gateway,
        methods: ['wechat_pay'],
        currency: 'CNY',
        cardNextAction: 'redirect',
        async customerPays(payment) {
          return fake.customerPays(payment.gatewayPaymentId);
        },
        signWithWrongSecret(webhook) {
          return fake.signNotify(webhook.rawBody.toString('utf8'), { privateKey: rsaKeys().privateKey });
        },
        tamper(webhook) {
          return Buffer.from(webhook.rawBody.toString('utf8').replace('支付成功', '支付失败'));
        },
        dispose: () => fake.close(),
      };
    },
  );
}

describe('WechatPayGateway against the fake WeChat Pay', () => {
  let fake: FakeWechatPay;
  let gateway: WechatPayGateway;
  const gatewayWith = (options: Partial<WechatPayGatewayOptions> = {}) =>
    new WechatPayGateway({ ...fake.gatewayOptions, notifyUrl, ...options });
  const request = (overrides: Partial<PaymentRequest> = {}) =>
    paymentRequest('CNY', { method: 'wechat_pay', amount: 12_345, ...overrides });
  const nextAttempt = (first: PaymentRequest, previousGatewayPaymentId: string) =>
    request({
      orderId: first.orderId,
      attemptNumber: first.attemptNumber + 1,
      idempotencyKey: `${first.orderId}-${first.attemptNumber + 1}`,
      previousGatewayPaymentId,
    });
  const calls = (operation: string) => fake.requests.filter((r) => r.operation === operation);

  beforeEach(async () => {
    fake = await startFakeWechatPay();
    gateway = gatewayWith();
  });
  afterEach(() => fake.close());

  describe('what goes over the wire', () => {
    it('places a Native order in fen with time_expire from the retry link, and shows code_url as the QR code', async () => {
      const req = request({ expiresAt: new Date('2030-03-08T01:30:00.750Z') });
      const created = await gateway.createPayment(req);
      expect(calls('native')[0]?.body).toMatchObject({
        appid: fake.gatewayOptions.appId,
        mchid: fake.gatewayOptions.mchId,
        out_trade_no: req.idempotencyKey,
        time_expire: '2030-03-08T09:30:00+08:00',
        notify_url: notifyUrl,
        amount: { total: 12_345, currency: 'CNY' },
      });
      expect(created).toEqual({
        gatewayPaymentId: req.idempotencyKey,
        status: 'requires_action',
        nextAction: {
          type: 'qr',
          payload: fake.order(req.idempotencyKey)?.codeUrl,
          expiresAt: new Date('2030-03-08T01:30:00Z'),
        },
      });
    });

    it('with H5 on, mobile visitors get h5_url with the return address; desktop ones still a QR code', async () => {
      const h5 = gatewayWith({ h5: true });
      const mobile = request({ device: 'mobile', clientIp: '203.0.113.7' });
      const created = await h5.createPayment(mobile);
      expect(calls('h5')[0]?.body).toMatchObject({
        scene_info: { payer_client_ip: '203.0.113.7', h5_info: { type: 'Wap' } },
      });
      expect(created.nextAction.type).toBe('redirect');
      if (created.nextAction.type === 'redirect') {
        expect(new URL(created.nextAction.url).searchParams.get('redirect_url')).toBe(mobile.returnUrl);
      }
      const desktop = await h5.createPayment(request({ device: 'desktop', clientIp: '203.0.113.7' }));
      expect(desktop.nextAction.type).toBe('qr');
    });

    it('keeps out_trade_no within WeChat Pay’s 32 characters', () => {
      expect(outTradeNo('ord_abc-1')).toBe('ord_abc-1');
      expect(outTradeNo(`ord_${'x'.repeat(40)}-1`)).toMatch(/^[A-Za-z0-9_-]{6,32}$/);
      expect(outTradeNo('订单-1')).toMatch(/^[A-Za-z0-9_-]{6,32}$/);
    });
  });

  describe('close-then-reissue', () => {
    it('closes the previous order before placing the next; the old QR code can no longer be paid', async () => {
      const first = request();
      const one = await gateway.createPayment(first);
      const two = await gateway.createPayment(nextAttempt(first, one.gatewayPaymentId));
      expect(fake.requests.map((r) => r.operation)).toEqual(['native', 'close', 'native']);
      expect(fake.order(one.gatewayPaymentId)?.state).toBe('CLOSED');
      expect(() => fake.customerPays(one.gatewayPaymentId)).toThrow(/CLOSED/);
      expect((await gateway.retrievePayment(two.gatewayPaymentId)).status).toBe('requires_action');
    });

    it('a previous order paid meanwhile is a conflict and nothing new is placed', async () => {
      const first = request();
      const one = await gateway.createPayment(first);
      fake.customerPays(one.gatewayPaymentId);
      await expect(gateway.createPayment(nextAttempt(first, one.gatewayPaymentId))).rejects.toMatchObject({
        kind: 'conflict',
        code: 'ORDERPAID',
        gatewayPaymentId: one.gatewayPaymentId,
      });
      expect(calls('native')).toHaveLength(1);
    });
  });

  describe('unknown outcomes are queried first', () => {
    it('a 500 SYSTEM_ERROR on placing → query → the same order placed again, one order', async () => {
      fake.failNext({ status: 500, code: 'SYSTEM_ERROR' }, { on: 'native' });
      const created = await gateway.createPayment(request());
      expect(fake.requests.map((r) => r.operation)).toEqual(['native', 'query', 'native']);
      expect(created.nextAction.type).toBe('qr');
      expect(fake.orderCount()).toBe(1);
    });

    it('an answer lost after WeChat Pay acted: the retry answers the same code', async () => {
      fake.failNext('lost', { on: 'native' });
      const created = await gateway.createPayment(request());
      expect(created.nextAction).toMatchObject({ payload: fake.order(created.gatewayPaymentId)?.codeUrl });
      expect(fake.orderCount()).toBe(1);
    });

    it('a timeout whose order was paid meanwhile is a conflict, not a second order', async () => {
      const impatient = gatewayWith({ timeoutMs: 300 });
      const req = request();
      fake.failNext('hang', { on: 'native' });
      fake.failNext({ status: 500, code: 'SYSTEM_ERROR' }, { on: 'query' });
      await expect(impatient.createPayment(req)).rejects.toMatchObject({ kind: 'unknown_outcome', retryable: true });
      fake.customerPays(req.idempotencyKey);
      fake.failNext('hang', { on: 'native' });
      await expect(impatient.createPayment(req)).rejects.toMatchObject({ kind: 'conflict', code: 'SUCCESS' });
      expect(fake.orderCount()).toBe(1);
    });

    it('a refund whose answer was lost is looked up, not repeated', async () => {
      const created = await gateway.createPayment(request({ amount: 1_000 }));
      fake.customerPays(created.gatewayPaymentId);
      fake.failNext('lost', { on: 'refund' });
      const refund = await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 400,
        currency: 'CNY',
        refundKey: 'ord-1-duplicate-pay_1',
        reason: 'duplicate',
      });
      expect(refund).toEqual({ gatewayRefundId: 'ord-1-duplicate-pay_1', status: 'succeeded' });
      expect(calls('refund')).toHaveLength(1);
      expect(fake.order(created.gatewayPaymentId)?.refunded).toBe(400);
    });
  });

  describe('declines and errors', () => {
    it('a payment the bank refused shows as failed with its category (WeChat Pay sends no notify for it)', async () => {
      const created = await gateway.createPayment(request());
      fake.customerFails(created.gatewayPaymentId);
      expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
        status: 'failed',
        failureCode: 'PAYERROR',
        failureCategory: 'insufficient_funds',
      });
    });

    const cases = [
      { status: 403, code: 'RULE_LIMIT', kind: 'declined', category: 'insufficient_funds' },
      { status: 400, code: 'ORDER_CLOSED', kind: 'conflict', category: undefined },
      { status: 400, code: 'PARAM_ERROR', kind: 'invalid_request', category: 'unknown' },
      { status: 429, code: 'FREQUENCY_LIMITED', kind: 'unavailable', category: 'gateway_outage' },
    ] as const;
    for (const { status, code, kind, category } of cases) {
      it(`${status} ${code} → ${kind}`, async () => {
        fake.failNext({ status, code }, { on: 'native' });
        const error = await gateway.createPayment(request()).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GatewayError);
        expect(error).toMatchObject({ kind, code, ...(category ? { category } : {}) });
      });
    }

    it('an answer not signed by a key recoup trusts is not trusted', async () => {
      const impostor = gatewayWith({ platformKeys: { [fake.serial]: rsaKeys().publicKey } });
      await expect(impostor.createPayment(request())).rejects.toMatchObject({
        kind: 'unknown_outcome',
        code: 'response_signature_invalid',
      });
    });

    it('a wrong merchant key is refused by WeChat Pay (401 SIGN_ERROR) as an invalid request', async () => {
      const wrongKey = gatewayWith({ privateKey: rsaKeys().privateKey });
      await expect(wrongKey.createPayment(request())).rejects.toMatchObject({
        kind: 'invalid_request',
        code: 'SIGN_ERROR',
      });
    });

    it('refuses cards and other currencies up front; unreachable WeChat Pay is unavailable', async () => {
      await expect(gateway.createPayment(request({ method: 'alipay' }))).rejects.toMatchObject({
        kind: 'invalid_request',
        category: 'method_unsupported',
      });
      await expect(gateway.createPayment(request({ currency: 'HKD' }))).rejects.toMatchObject({
        code: 'currency_not_supported',
      });
      expect(fake.requests).toHaveLength(0);
      await fake.close();
      await expect(gateway.createPayment(request())).rejects.toMatchObject({
        kind: 'unavailable',
        category: 'network',
      });
    });
  });

  describe('notifies', () => {
    it('refuses a stale signature, judged by the injected clock, and an unknown serial', async () => {
      const created = await gateway.createPayment(request());
      fake.customerPays(created.gatewayPaymentId);
      const signedAt = Math.floor(Date.parse('2026-03-08T01:30:00Z') / 1000);
      const notify = fake.notifyFor(created.gatewayPaymentId);
      const stale = fake.signNotify(notify.rawBody.toString('utf8'), { timestamp: signedAt });
      const clock = new FixedClock(new Date(signedAt * 1000 + 299_000));
      const withClock = gatewayWith({ clock });
      await expect(withClock.parseWebhook(stale.rawBody, stale.headers)).resolves.toMatchObject({
        type: 'payment.succeeded',
      });
      clock.advance(2_000);
      await expect(withClock.parseWebhook(stale.rawBody, stale.headers)).rejects.toMatchObject({
        kind: 'invalid_signature',
      });
      const otherSerial = fake.signNotify(notify.rawBody.toString('utf8'), { serial: 'PUB_KEY_ID_0000000000000000' });
      await expect(gateway.parseWebhook(otherSerial.rawBody, otherSerial.headers)).rejects.toMatchObject({
        kind: 'invalid_signature',
      });
    });

    it('accepts both a platform certificate and the WeChat Pay public key during a switch-over', async () => {
      const created = await gateway.createPayment(request());
      const notify = fake.customerPays(created.gatewayPaymentId);
      const certified = await startFakeWechatPay({ keyMode: 'certificate' });
      try {
        const both = gatewayWith({
          platformKeys: { ...certified.gatewayOptions.platformKeys, ...fake.gatewayOptions.platformKeys },
        });
        await expect(both.parseWebhook(notify.rawBody, notify.headers)).resolves.toMatchObject({
          type: 'payment.succeeded',
        });
      } finally {
        await certified.close();
      }
    });

    it('maps a refund notify to the refund recoup made, by its out_refund_no', async () => {
      const req = request({ amount: 3_000 });
      const created = await gateway.createPayment(req);
      fake.customerPays(created.gatewayPaymentId);
      const refund = await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 1_000,
        currency: 'CNY',
        refundKey: `${req.orderId}-duplicate-1`,
        reason: 'duplicate',
      });
      expect(calls('refund')[0]?.body).toMatchObject({
        out_trade_no: created.gatewayPaymentId,
        out_refund_no: refund.gatewayRefundId,
        notify_url: notifyUrl,
        amount: { refund: 1_000, total: 3_000, currency: 'CNY' },
      });
      const notify = fake.refundNotify(refund.gatewayRefundId);
      expect(await gateway.parseWebhook(notify.rawBody, notify.headers)).toMatchObject({
        type: 'refund.succeeded',
        gatewayPaymentId: created.gatewayPaymentId,
        refundId: refund.gatewayRefundId,
        amount: 1_000,
        currency: 'CNY',
      });
      expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({ status: 'succeeded' });
    });

    it('refuses a resource that does not decrypt with our APIv3 key, or is for another merchant', async () => {
      const created = await gateway.createPayment(request());
      const notify = fake.customerPays(created.gatewayPaymentId);
      const otherKey = gatewayWith({ apiV3Key: 'k'.repeat(32) });
      await expect(otherKey.parseWebhook(notify.rawBody, notify.headers)).rejects.toMatchObject({
        kind: 'invalid_signature',
      });
      const foreign = fake.notifyFor(created.gatewayPaymentId, { mchid: '1230000109' });
      await expect(gateway.parseWebhook(foreign.rawBody, foreign.headers)).rejects.toMatchObject({
        code: 'mchid_mismatch',
      });
    });
  });
});
