import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FixedClock } from '../../src/platform/clock.js';
import { AlipayGateway, type AlipayGatewayOptions } from '../../src/payments/gateways/alipay/alipay-gateway.js';
import { amountOfTradeNo, fromYuan, outTradeNo, toYuan } from '../../src/payments/gateways/alipay/alipay-trade.js';
import { GatewayError, type PaymentRequest } from '../../src/payments/payment-gateway.js';
import { rsaKeys, startFakeAlipay, type FakeAlipay } from '../helpers/fake-alipay.js';
import { paymentGatewayContract, paymentRequest } from '../helpers/payment-gateway.contract.js';

const notifyUrl = 'http://recoup.test/webhooks/payments/alipay';

paymentGatewayContract('AlipayGateway (QR flow)', async () => {
  const fake = await startFakeAlipay();
  const gateway = new AlipayGateway({ ...fake.gatewayOptions, notifyUrl, flow: 'qr' });
  return {
    gateway,
    methods: ['alipay'],
    currency: 'CNY',
    cardNextAction: 'redirect',
    alipayNextAction: 'qr',
    signatureIn: 'body',
    async customerPays(payment) {
      return fake.customerPays(payment.gatewayPaymentId);
    },
    signWithWrongSecret(webhook) {
      const fields = Object.fromEntries(new URLSearchParams(webhook.rawBody.toString('utf8')));
      return fake.signNotify(fields, rsaKeys().privateKey);
    },
    tamper(webhook) {
      return Buffer.from(webhook.rawBody.toString('utf8').replace('total_amount=5.00', 'total_amount=500.00'));
    },
    dispose: () => fake.close(),
  };
});

describe('AlipayGateway against the fake Alipay', () => {
  let fake: FakeAlipay;
  let gateway: AlipayGateway;
  const gatewayWith = (options: Partial<AlipayGatewayOptions> = {}) =>
    new AlipayGateway({ ...fake.gatewayOptions, notifyUrl, ...options });
  const request = (overrides: Partial<PaymentRequest> = {}) =>
    paymentRequest('CNY', { method: 'alipay', amount: 12_345, ...overrides });
  const nextAttempt = (first: PaymentRequest, previousGatewayPaymentId: string) =>
    request({
      orderId: first.orderId,
      attemptNumber: first.attemptNumber + 1,
      idempotencyKey: `${first.orderId}-${first.attemptNumber + 1}`,
      previousGatewayPaymentId,
    });
  const calls = (method: string) => fake.requests.filter((r) => r.method === method);

  beforeEach(async () => {
    fake = await startFakeAlipay();
    gateway = gatewayWith();
  });
  afterEach(() => fake.close());

  describe('amounts and trade numbers', () => {
    it('converts fen to the yuan string and back exactly', () => {
      expect(toYuan(12_345)).toBe('123.45');
      expect(toYuan(1)).toBe('0.01');
      expect(toYuan(100)).toBe('1.00');
      expect(toYuan(9_007_199_254_740_991)).toBe('90071992547409.91');
      expect(fromYuan('123.45')).toBe(12_345);
      expect(fromYuan('0.1')).toBe(10);
      expect(fromYuan('7')).toBe(700);
      expect(fromYuan('1.234')).toBeUndefined();
      expect(fromYuan('-1.00')).toBeUndefined();
      for (const fen of [1, 10, 99, 101, 19_999, 123_456_789]) expect(fromYuan(toYuan(fen))).toBe(fen);
    });

    it('derives out_trade_no from order and attempt, within Alipay’s alphabet and length', () => {
      expect(outTradeNo('ord-abc-2', 500)).toBe('ord_abc_2_A500');
      expect(outTradeNo('ord_abc-2', 500)).toBe('_ord__abc_d2_A500');
      const odd = outTradeNo('订单/2024#1-1', 500);
      expect(odd).toMatch(/^[A-Za-z0-9_]{1,64}$/);
      expect(outTradeNo('x'.repeat(80), 500)).toMatch(/^[A-Za-z0-9_]{1,64}$/);
      expect(outTradeNo('x'.repeat(80), 500)).not.toBe(outTradeNo(`${'x'.repeat(79)}y`, 500));
    });

    it('gives every key its own out_trade_no, however its dashes and underscores fall', () => {
      const keys = ['2026-0001-1', '2026_0001-1', '2026-0001_1', '2026_0001_1', 'a-_b-1', 'a_-b-1', 'a--b-1', '-a-1'];
      const tradeNos = keys.map((key) => outTradeNo(key, 500));
      expect(new Set(tradeNos).size).toBe(keys.length);
      for (const tradeNo of tradeNos) {
        expect(tradeNo).toMatch(/^[A-Za-z0-9_]{1,64}$/);
        expect(amountOfTradeNo(tradeNo)).toBe(500);
      }
      // Keys of letters, digits and single dashes keep the form open trades already carry.
      expect(outTradeNo('2026-0001-1', 500)).toBe('2026_0001_1_A500');
    });
  });

  describe('page and wap pay', () => {
    it('sends desktop visitors to page pay and mobile visitors to wap pay, signed, with the exact amount', async () => {
      const desktop = request({ device: 'desktop' });
      const created = await gateway.createPayment(desktop);
      expect(created.nextAction.type).toBe('redirect');
      if (created.nextAction.type !== 'redirect') return;
      const link = new URL(created.nextAction.url);
      expect(link.origin + link.pathname).toBe(fake.gatewayOptions.gatewayUrl);
      expect(link.searchParams.get('method')).toBe('alipay.trade.page.pay');
      expect(link.searchParams.get('notify_url')).toBe(notifyUrl);
      expect(link.searchParams.get('return_url')).toBe(desktop.returnUrl);
      const biz = JSON.parse(link.searchParams.get('biz_content') ?? '{}') as Record<string, string>;
      expect(biz).toMatchObject({
        out_trade_no: created.gatewayPaymentId,
        total_amount: '123.45',
        product_code: 'FAST_INSTANT_TRADE_PAY',
      });
      expect(biz.time_expire).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
      // Nothing exists at Alipay until the customer opens the cashier.
      expect(fake.tradeCount()).toBe(0);
      expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
        status: 'requires_action',
        amount: 12_345,
      });

      const mobile = await gateway.createPayment(request({ device: 'mobile' }));
      if (mobile.nextAction.type !== 'redirect') throw new Error('expected a redirect');
      const wap = new URL(mobile.nextAction.url);
      expect(wap.searchParams.get('method')).toBe('alipay.trade.wap.pay');
      expect(JSON.parse(wap.searchParams.get('biz_content') ?? '{}')).toMatchObject({ product_code: 'QUICK_WAP_WAY' });
    });

    it('the customer pays on the cashier: notify verified, retrieve says paid', async () => {
      const req = request({ device: 'desktop', amount: 8_800 });
      const created = await gateway.createPayment(req);
      if (created.nextAction.type !== 'redirect') throw new Error('expected a redirect');
      const notify = fake.customerPays(created.gatewayPaymentId, { cashierUrl: created.nextAction.url });
      expect(await gateway.parseWebhook(notify.rawBody, notify.headers)).toMatchObject({
        type: 'payment.succeeded',
        gatewayPaymentId: created.gatewayPaymentId,
        orderId: req.orderId,
        attemptId: req.attemptId,
        amount: 8_800,
        currency: 'CNY',
        method: 'alipay',
      });
      const status = await gateway.retrievePayment(created.gatewayPaymentId);
      expect(status).toMatchObject({ status: 'succeeded', amount: 8_800 });
      expect(status.paidAt).toBeInstanceOf(Date);
    });

    it('superseding an unopened page-pay trade closes nothing and opens the new one', async () => {
      const first = request({ device: 'desktop' });
      const one = await gateway.createPayment(first);
      const two = await gateway.createPayment(nextAttempt(first, one.gatewayPaymentId));
      expect(two.gatewayPaymentId).not.toBe(one.gatewayPaymentId);
      expect(calls('alipay.trade.close').map((c) => c.bizContent.out_trade_no)).toEqual([one.gatewayPaymentId]);
    });
  });

  describe('close-then-reissue (QR flow)', () => {
    beforeEach(() => {
      gateway = gatewayWith({ flow: 'qr' });
    });

    it('closes the previous trade before opening the next; the old QR code can no longer be paid', async () => {
      const first = request();
      const one = await gateway.createPayment(first);
      const two = await gateway.createPayment(nextAttempt(first, one.gatewayPaymentId));
      const order = fake.requests.map((r) => `${r.method}:${String(r.bizContent.out_trade_no)}`);
      expect(order).toEqual([
        `alipay.trade.precreate:${one.gatewayPaymentId}`,
        `alipay.trade.close:${one.gatewayPaymentId}`,
        `alipay.trade.precreate:${two.gatewayPaymentId}`,
      ]);
      expect(fake.trade(one.gatewayPaymentId)?.status).toBe('TRADE_CLOSED');
      expect(() => fake.customerPays(one.gatewayPaymentId)).toThrow(/TRADE_CLOSED/);
      expect((await gateway.retrievePayment(two.gatewayPaymentId)).status).toBe('requires_action');
    });

    it('a previous trade paid meanwhile is a conflict: no new trade is opened', async () => {
      const first = request();
      const one = await gateway.createPayment(first);
      fake.customerPays(one.gatewayPaymentId);
      await expect(gateway.createPayment(nextAttempt(first, one.gatewayPaymentId))).rejects.toMatchObject({
        kind: 'conflict',
        code: 'ACQ.TRADE_HAS_SUCCESS',
        gatewayPaymentId: one.gatewayPaymentId,
      });
      expect(calls('alipay.trade.precreate')).toHaveLength(1);
    });

    it('sets the trade’s timeout from the retry link’s expiry and says when the QR code expires', async () => {
      const clock = new FixedClock('2026-03-08T01:30:00Z');
      const timed = gatewayWith({ flow: 'qr', clock });
      const created = await timed.createPayment(
        request({ expiresAt: new Date('2026-03-08T02:15:30Z'), device: 'desktop' }),
      );
      expect(calls('alipay.trade.precreate')[0]?.bizContent).toMatchObject({ timeout_express: '45m' });
      expect(created.nextAction).toMatchObject({ type: 'qr', expiresAt: new Date('2026-03-08T02:15:00Z') });
    });
  });

  describe('orders whose ids differ only by a dash and an underscore', () => {
    it('are separate trades: paying one leaves the other unpaid, and each notify names its own attempt', async () => {
      gateway = gatewayWith({ flow: 'qr' });
      const dashed = request({ orderId: '2026-0001', idempotencyKey: '2026-0001-1' });
      const underscored = request({ orderId: '2026_0001', idempotencyKey: '2026_0001-1' });
      const one = await gateway.createPayment(dashed);
      const two = await gateway.createPayment(underscored);
      expect(two.gatewayPaymentId).not.toBe(one.gatewayPaymentId);
      expect(fake.tradeCount()).toBe(2);

      const notify = fake.customerPays(two.gatewayPaymentId);
      expect(await gateway.parseWebhook(notify.rawBody, notify.headers)).toMatchObject({
        type: 'payment.succeeded',
        gatewayPaymentId: two.gatewayPaymentId,
        orderId: '2026_0001',
        attemptId: underscored.attemptId,
      });
      // The poll of the other order's attempt asks Alipay about its own trade only.
      expect((await gateway.retrievePayment(one.gatewayPaymentId)).status).toBe('requires_action');
      expect((await gateway.retrievePayment(two.gatewayPaymentId)).status).toBe('succeeded');
    });
  });

  describe('refunds whose keys differ only by a dash and an underscore', () => {
    const refundOf = (gatewayPaymentId: string, refundKey: string, keyVersion?: 1 | 2) =>
      gateway.refund({
        gatewayPaymentId,
        amount: 300,
        currency: 'CNY',
        refundKey,
        reason: 'damaged item',
        ...(keyVersion ? { keyVersion } : {}),
      });
    const requestNos = () => calls('alipay.trade.refund').map((r) => r.bizContent.out_request_no);

    it('are two refunds at Alipay, each under its own out_request_no', async () => {
      gateway = gatewayWith({ flow: 'qr' });
      const created = await gateway.createPayment(request({ amount: 1_000 }));
      fake.customerPays(created.gatewayPaymentId);
      const one = await refundOf(created.gatewayPaymentId, 'ops-2026-0001-k-1');
      const two = await refundOf(created.gatewayPaymentId, 'ops-2026_0001-k_1');
      expect(two.gatewayRefundId).not.toBe(one.gatewayRefundId);
      expect(fake.trade(created.gatewayPaymentId)?.refunds.size).toBe(2);
      expect(fake.trade(created.gatewayPaymentId)?.refundedFen).toBe(600);
      for (const requestNo of requestNos()) expect(requestNo).toMatch(/^[A-Za-z0-9_]{1,64}$/);
      // Keys of letters, digits and single dashes keep their readable form.
      expect(one.gatewayRefundId).toBe('ops_2026_0001_k_1');
    });

    it('a refund first requested with version 1 is repeated under the number it was sent with', async () => {
      gateway = gatewayWith({ flow: 'qr' });
      const created = await gateway.createPayment(request({ amount: 1_000 }));
      fake.customerPays(created.gatewayPaymentId);
      const key = 'dup-pay_0a1b2c';
      const first = await refundOf(created.gatewayPaymentId, key, 1);
      const repeat = await refundOf(created.gatewayPaymentId, key, 1);
      expect(requestNos()).toEqual(['dup_pay_0a1b2c', 'dup_pay_0a1b2c']);
      expect(repeat).toEqual(first);
      expect(fake.trade(created.gatewayPaymentId)?.refundedFen).toBe(300);
      // The same key today has a number of its own.
      expect((await refundOf(created.gatewayPaymentId, key)).gatewayRefundId).toBe('_dup_dpay__0a1b2c');
    });
  });

  describe('unknown outcomes are queried first', () => {
    beforeEach(() => {
      gateway = gatewayWith({ flow: 'qr' });
    });

    it('ACQ.SYSTEM_ERROR on precreate → query → the same precreate again, one trade', async () => {
      fake.failNext({ subCode: 'ACQ.SYSTEM_ERROR', code: '20000' }, { on: 'alipay.trade.precreate' });
      const created = await gateway.createPayment(request());
      expect(fake.requests.map((r) => r.method)).toEqual([
        'alipay.trade.precreate',
        'alipay.trade.query',
        'alipay.trade.precreate',
      ]);
      expect(created.nextAction.type).toBe('qr');
      expect(fake.tradeCount()).toBe(1);
    });

    it('an answer lost after Alipay acted: the query finds the trade and the retry returns the same QR code', async () => {
      fake.failNext('lost', { on: 'alipay.trade.precreate' });
      const created = await gateway.createPayment(request());
      expect(created.nextAction).toMatchObject({ type: 'qr', payload: fake.trade(created.gatewayPaymentId)?.qrCode });
      expect(calls('alipay.trade.query')).toHaveLength(1);
    });

    it('a timeout whose trade was paid meanwhile is a conflict, not a second trade', async () => {
      const impatient = gatewayWith({ flow: 'qr', timeoutMs: 300 });
      const req = request();
      fake.failNext('hang', { on: 'alipay.trade.precreate' });
      fake.failNext({ subCode: 'ACQ.SYSTEM_ERROR' }, { on: 'alipay.trade.query' });
      // The query itself fails: the outcome stays unknown, retry later with the same key.
      await expect(impatient.createPayment(req)).rejects.toMatchObject({ kind: 'unknown_outcome', retryable: true });
      fake.customerPays(outTradeNo(req.idempotencyKey, req.amount));
      fake.failNext('hang', { on: 'alipay.trade.precreate' });
      await expect(impatient.createPayment(req)).rejects.toMatchObject({ kind: 'conflict' });
      expect(fake.tradeCount()).toBe(1);
    });

    it('a refund whose answer was lost is queried, not repeated', async () => {
      const created = await gateway.createPayment(request({ amount: 1_000 }));
      fake.customerPays(created.gatewayPaymentId);
      fake.failNext('lost', { on: 'alipay.trade.refund' });
      const refund = await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 400,
        currency: 'CNY',
        refundKey: 'ord-1-duplicate-pay_1',
        reason: 'duplicate',
      });
      expect(refund).toEqual({ gatewayRefundId: '_ord_d1_dduplicate_dpay__1', status: 'succeeded' });
      expect(calls('alipay.trade.refund')).toHaveLength(1);
      expect(calls('alipay.trade.fastpay.refund.query')).toHaveLength(1);
      expect(fake.trade(created.gatewayPaymentId)?.refundedFen).toBe(400);
    });
  });

  describe('declines and errors', () => {
    const cases = [
      { subCode: 'ACQ.BUYER_ENABLE_STATUS_FORBID', kind: 'declined', category: 'account_frozen' },
      { subCode: 'ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR', kind: 'declined', category: 'insufficient_funds' },
      { subCode: 'ACQ.PAYMENT_REQUEST_HAS_RISK', kind: 'declined', category: 'fraud_suspected' },
      { subCode: 'ACQ.TRADE_HAS_SUCCESS', kind: 'conflict', category: undefined },
      { subCode: 'ACQ.INVALID_PARAMETER', kind: 'invalid_request', category: 'unknown' },
    ] as const;
    for (const { subCode, kind, category } of cases) {
      it(`${subCode} → ${kind}${category ? ` / ${category}` : ''}`, async () => {
        const qr = gatewayWith({ flow: 'qr' });
        fake.failNext({ subCode }, { on: 'alipay.trade.precreate' });
        const error = await qr.createPayment(request()).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GatewayError);
        expect(error).toMatchObject({ kind, code: subCode, ...(category ? { category } : {}) });
      });
    }

    it('refuses cards and other currencies up front', async () => {
      await expect(gateway.createPayment(request({ method: 'card' }))).rejects.toMatchObject({
        kind: 'invalid_request',
        category: 'method_unsupported',
      });
      await expect(gateway.createPayment(request({ currency: 'USD' }))).rejects.toMatchObject({
        kind: 'invalid_request',
        code: 'currency_not_supported',
      });
      expect(fake.requests).toHaveLength(0);
    });

    it('an answer not signed by Alipay’s key is not trusted', async () => {
      const impostor = gatewayWith({ flow: 'qr', alipayPublicKey: rsaKeys().publicKey });
      await expect(impostor.createPayment(request())).rejects.toMatchObject({
        kind: 'unknown_outcome',
        code: 'response_signature_invalid',
      });
    });

    it('a wrong application key is refused by Alipay as an invalid request', async () => {
      const wrongKey = gatewayWith({ flow: 'qr', privateKey: rsaKeys().privateKey });
      await expect(wrongKey.createPayment(request())).rejects.toMatchObject({
        kind: 'invalid_request',
        code: 'isv.invalid-signature',
      });
    });

    it('an unsigned answer (Alipay sends some refusals so) is not trusted: the outcome stays unknown', async () => {
      const qr = gatewayWith({ flow: 'qr' });
      fake.failNext({ subCode: 'isv.invalid-signature', code: '40002', unsigned: true }, { count: 2 });
      await expect(qr.createPayment(request())).rejects.toMatchObject({
        kind: 'unknown_outcome',
        code: 'response_signature_invalid',
      });
    });

    it('unreachable Alipay is unavailable', async () => {
      await fake.close();
      await expect(gatewayWith({ flow: 'qr' }).createPayment(request())).rejects.toMatchObject({
        kind: 'unavailable',
        category: 'network',
      });
    });
  });

  describe('notifies', () => {
    beforeEach(() => {
      gateway = gatewayWith({ flow: 'qr' });
    });

    it('counts only TRADE_SUCCESS and TRADE_FINISHED as paid; a refund notify is a refund', async () => {
      const created = await gateway.createPayment(request({ amount: 2_000 }));
      const parse = (overrides: Record<string, string>) => {
        const notify = fake.notifyFor(created.gatewayPaymentId, overrides);
        return gateway.parseWebhook(notify.rawBody, notify.headers);
      };
      expect(await parse({ trade_status: 'WAIT_BUYER_PAY' })).toBeNull();
      expect(await parse({ trade_status: 'TRADE_CLOSED' })).toMatchObject({ type: 'payment.cancelled' });
      expect(await parse({ trade_status: 'TRADE_FINISHED' })).toMatchObject({
        type: 'payment.succeeded',
        amount: 2_000,
      });
      expect(
        await parse({
          trade_status: 'TRADE_SUCCESS',
          refund_fee: '5.00',
          out_biz_no: 'r_1',
          gmt_refund: '2026-03-08 09:30:00',
        }),
      ).toMatchObject({ type: 'refund.succeeded', amount: 500, refundId: 'r_1' });
    });

    it('refuses a notify for another app, another amount or a trade recoup did not open', async () => {
      const created = await gateway.createPayment(request({ amount: 2_000 }));
      fake.customerPays(created.gatewayPaymentId);
      const parse = (overrides: Record<string, string>) => {
        const notify = fake.notifyFor(created.gatewayPaymentId, overrides);
        return gateway.parseWebhook(notify.rawBody, notify.headers);
      };
      await expect(parse({ app_id: '2021000000000000' })).rejects.toMatchObject({ code: 'app_id_mismatch' });
      await expect(parse({ total_amount: '0.01' })).rejects.toMatchObject({ code: 'amount_mismatch' });
      await expect(parse({ out_trade_no: 'someone_elses_order' })).rejects.toMatchObject({
        code: 'unknown_out_trade_no',
      });
    });
  });
});
