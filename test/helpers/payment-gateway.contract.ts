import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FailureCategory, PaymentMethod } from '../../src/domain.js';
import {
  GatewayError,
  isGatewayError,
  type CreatedPayment,
  type PaymentGateway,
  type PaymentRequest,
} from '../../src/payments/payment-gateway.js';

/** A webhook delivery as recoup's route would receive it. */
export interface RawWebhook {
  rawBody: Buffer;
  headers: Record<string, string>;
}

/** One adapter under test, plus the gateway's far side: the customer and the signer. */
export interface PaymentGatewayHarness {
  gateway: PaymentGateway;
  /** A currency the gateway takes for card, Alipay and WeChat Pay. */
  currency: string;
  /** What a card payment asks of the customer with this gateway. */
  cardNextAction: 'redirect' | 'client_secret';
  /** The customer pays at the gateway; resolves with the webhook the gateway sends about it. */
  customerPays(payment: CreatedPayment, request: PaymentRequest): Promise<RawWebhook>;
  /** The customer's bank or wallet declines (`insufficient_funds` in the method's own codes); resolves with the webhook. */
  customerIsDeclined(payment: CreatedPayment, request: PaymentRequest): Promise<RawWebhook>;
  /** The same body signed with another secret: what a forger without the secret can do. */
  signWithWrongSecret(webhook: RawWebhook): RawWebhook;
  dispose?(): Promise<void>;
}

const methods: PaymentMethod[] = ['card', 'alipay', 'wechat_pay'];

/** Cases every PaymentGateway must pass. Call inside a test file; `create` runs before each case. */
export function paymentGatewayContract(name: string, create: () => Promise<PaymentGatewayHarness>): void {
  describe(`${name} satisfies the PaymentGateway contract`, () => {
    let harness: PaymentGatewayHarness;
    let gateway: PaymentGateway;
    const request = (overrides: Partial<PaymentRequest> = {}) => paymentRequest(harness.currency, overrides);

    beforeEach(async () => {
      harness = await create();
      gateway = harness.gateway;
    });
    afterEach(async () => {
      await harness.dispose?.();
    });

    it('names itself and supports card, Alipay and WeChat Pay in its currency', () => {
      expect(gateway.name).toMatch(/^[a-z][a-z0-9_-]*$/);
      for (const method of methods) {
        expect(gateway.supports(method, harness.currency)).toBe(true);
        expect(gateway.supports(method, harness.currency.toLowerCase())).toBe(true);
        expect(gateway.supports(method, 'C1Y')).toBe(false);
      }
    });

    for (const method of methods) {
      it(`creates a ${method} payment that asks the customer for the right next action`, async () => {
        const req = request({ method });
        const created = await gateway.createPayment(req);
        expect(created.gatewayPaymentId).toMatch(/\S/);
        expect(created.status).toBe('requires_action');
        const expected = method === 'card' ? harness.cardNextAction : method === 'alipay' ? 'redirect' : 'qr';
        expect(created.nextAction.type).toBe(expected);
        if (created.nextAction.type === 'redirect') expect(URL.canParse(created.nextAction.url)).toBe(true);
        if (created.nextAction.type === 'qr') {
          expect(created.nextAction.payload).toMatch(/\S/);
          expect(created.nextAction.expiresAt.getTime()).toBeLessThanOrEqual(req.expiresAt.getTime());
        }
        if (created.nextAction.type === 'client_secret') expect(created.nextAction.clientSecret).toMatch(/\S/);
      });
    }

    it('retrieves the status as it moves from waiting to paid', async () => {
      const req = request({ method: 'alipay', amount: 4_250 });
      const created = await gateway.createPayment(req);
      expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
        gatewayPaymentId: created.gatewayPaymentId,
        status: 'requires_action',
        amount: 4_250,
        currency: harness.currency.toUpperCase(),
      });
      await harness.customerPays(created, req);
      const paid = await gateway.retrievePayment(created.gatewayPaymentId);
      expect(paid).toMatchObject({ status: 'succeeded', amount: 4_250, method: 'alipay' });
      expect(paid.failureCategory).toBeUndefined();
    });

    it('reports a decline with its code and failure category, in retrieve and in the webhook', async () => {
      const req = request({ method: 'wechat_pay' });
      const created = await gateway.createPayment(req);
      const webhook = await harness.customerIsDeclined(created, req);
      const status = await gateway.retrievePayment(created.gatewayPaymentId);
      expect(status).toMatchObject({
        status: 'failed',
        failureCategory: 'insufficient_funds' satisfies FailureCategory,
      });
      expect(status.failureCode).toMatch(/\S/);
      expect(await gateway.parseWebhook(webhook.rawBody, webhook.headers)).toMatchObject({
        type: 'payment.failed',
        gatewayPaymentId: created.gatewayPaymentId,
        orderId: req.orderId,
        failureCategory: 'insufficient_funds',
      });
    });

    it('gives the same payment for the same idempotency key, even for concurrent calls', async () => {
      const req = request({ method: 'wechat_pay' });
      const first = await gateway.createPayment(req);
      const again = await gateway.createPayment(req);
      expect(again.gatewayPaymentId).toBe(first.gatewayPaymentId);
      expect(again.nextAction).toEqual(first.nextAction);

      const other = request({ method: 'alipay' });
      const [a, b] = await Promise.all([gateway.createPayment(other), gateway.createPayment(other)]);
      expect(a.gatewayPaymentId).toBe(b.gatewayPaymentId);
    });

    it('supersedes the previous attempt: it cannot be paid alongside the new one', async () => {
      const first = request({ method: 'alipay' });
      const previous = await gateway.createPayment(first);
      const second = request({
        orderId: first.orderId,
        attemptNumber: 2,
        idempotencyKey: `${first.orderId}-2`,
        method: 'wechat_pay',
        previousGatewayPaymentId: previous.gatewayPaymentId,
      });
      const next = await gateway.createPayment(second);
      expect(next.nextAction.type).toBe('qr');
      if (next.gatewayPaymentId !== previous.gatewayPaymentId) {
        expect((await gateway.retrievePayment(previous.gatewayPaymentId)).status).toBe('cancelled');
      }
      await harness.customerPays(next, second);
      expect((await gateway.retrievePayment(next.gatewayPaymentId)).status).toBe('succeeded');
    });

    it('refuses to supersede a paid payment with a conflict', async () => {
      const first = request({ method: 'card' });
      const paid = await gateway.createPayment(first);
      await harness.customerPays(paid, first);
      const error = await gateway
        .createPayment(
          request({
            orderId: first.orderId,
            attemptNumber: 2,
            idempotencyKey: `${first.orderId}-2`,
            previousGatewayPaymentId: paid.gatewayPaymentId,
          }),
        )
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ kind: 'conflict', gatewayPaymentId: paid.gatewayPaymentId });
    });

    it('cancels idempotently, and leaves a paid payment alone', async () => {
      const open = await gateway.createPayment(request({ method: 'alipay' }));
      await gateway.cancelPayment(open.gatewayPaymentId);
      await gateway.cancelPayment(open.gatewayPaymentId);
      expect((await gateway.retrievePayment(open.gatewayPaymentId)).status).toBe('cancelled');

      const req = request({ method: 'card' });
      const paid = await gateway.createPayment(req);
      await harness.customerPays(paid, req);
      await gateway.cancelPayment(paid.gatewayPaymentId);
      expect((await gateway.retrievePayment(paid.gatewayPaymentId)).status).toBe('succeeded');
    });

    it('refunds once per refund key, and refuses more than was paid', async () => {
      const req = request({ method: 'card', amount: 10_000 });
      const paid = await gateway.createPayment(req);
      await harness.customerPays(paid, req);
      const refund = {
        gatewayPaymentId: paid.gatewayPaymentId,
        amount: 3_000,
        currency: harness.currency,
        refundKey: `${req.orderId}-refund-1`,
        reason: 'duplicate',
      };
      const first = await gateway.refund(refund);
      const again = await gateway.refund(refund);
      expect(first.gatewayRefundId).toMatch(/\S/);
      expect(again.gatewayRefundId).toBe(first.gatewayRefundId);
      expect(['pending', 'succeeded']).toContain(first.status);

      const second = await gateway.refund({ ...refund, refundKey: `${req.orderId}-refund-2`, amount: 7_000 });
      expect(second.gatewayRefundId).not.toBe(first.gatewayRefundId);
      const tooMuch = await gateway
        .refund({ ...refund, refundKey: `${req.orderId}-refund-3`, amount: 1 })
        .catch((caught: unknown) => caught);
      expect(isGatewayError(tooMuch, 'conflict')).toBe(true);
    });

    it('parses a genuine webhook into the payment event', async () => {
      const req = request({ method: 'alipay', amount: 8_800 });
      const created = await gateway.createPayment(req);
      const webhook = await harness.customerPays(created, req);
      const event = await gateway.parseWebhook(webhook.rawBody, webhook.headers);
      expect(event).toMatchObject({
        type: 'payment.succeeded',
        gatewayPaymentId: created.gatewayPaymentId,
        orderId: req.orderId,
        attemptId: req.attemptId,
        amount: 8_800,
        currency: harness.currency.toUpperCase(),
        method: 'alipay',
      });
      expect(event?.id).toMatch(/\S/);
      expect(event?.occurredAt).toBeInstanceOf(Date);
      // Header names arrive lowercased from Node, but any case must do.
      const shouted = Object.fromEntries(
        Object.entries(webhook.headers).map(([key, value]) => [key.toUpperCase(), value]),
      );
      expect(await gateway.parseWebhook(webhook.rawBody, shouted)).toEqual(event);
    });

    it('rejects forged webhooks with invalid_signature', async () => {
      const req = request({ method: 'card', amount: 500 });
      const created = await gateway.createPayment(req);
      const genuine = await harness.customerPays(created, req);
      const tampered = Buffer.from(genuine.rawBody.toString('utf8').replace('500', '50000'));
      expect(tampered.equals(genuine.rawBody)).toBe(false);
      const forgeries: RawWebhook[] = [
        { rawBody: tampered, headers: genuine.headers },
        harness.signWithWrongSecret(genuine),
        { rawBody: genuine.rawBody, headers: { 'content-type': 'application/json' } },
      ];
      for (const forged of forgeries) {
        const error = await gateway.parseWebhook(forged.rawBody, forged.headers).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GatewayError);
        expect(error).toMatchObject({ kind: 'invalid_signature' });
      }
      // Two signature headers are ambiguous: refused rather than guessed at.
      const signatureHeader = Object.keys(genuine.headers).find((key) => /signature/i.test(key)) ?? 'signature';
      const doubled = { ...genuine.headers, [signatureHeader]: [genuine.headers[signatureHeader] ?? '', 'v1=0'] };
      await expect(gateway.parseWebhook(genuine.rawBody, doubled)).rejects.toMatchObject({ kind: 'invalid_signature' });
    });
  });
}

/** A valid request for a fresh order. */
export function paymentRequest(currency: string, overrides: Partial<PaymentRequest> = {}): PaymentRequest {
  const orderId = overrides.orderId ?? `ord_${randomBytes(6).toString('hex')}`;
  const attemptNumber = overrides.attemptNumber ?? 1;
  return {
    orderId,
    attemptId: `pay_${randomBytes(6).toString('hex')}`,
    attemptNumber,
    amount: 12_345,
    currency,
    method: 'card',
    description: 'Order #1024 — 2 items from Tea House',
    customer: { email: 'li.wei@example.com', phone: '+8613812345678', locale: 'zh-CN' },
    returnUrl: 'https://shop.example/r/tok_abc/return?lang=zh-CN',
    expiresAt: new Date(Date.now() + 30 * 60_000),
    idempotencyKey: `${orderId}-${attemptNumber}`,
    device: 'mobile',
    ...overrides,
  };
}
