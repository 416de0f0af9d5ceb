import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FailureCategory, PaymentMethod } from '../../src/domain/vocabulary.js';
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
  /**
   * The methods this gateway takes. Default all three (card, Alipay, WeChat Pay). A
   * single-method gateway (direct Alipay, direct WeChat Pay) lists its one method: every case
   * then runs with it, and the gateway must refuse the others.
   */
  methods?: readonly PaymentMethod[];
  /** A currency the gateway takes for each of its methods. */
  currency: string;
  /** What a card payment asks of the customer with this gateway. */
  cardNextAction: 'redirect' | 'client_secret';
  /** What an Alipay payment asks of the customer. Default `redirect` (a hosted page). */
  alipayNextAction?: 'redirect' | 'qr';
  /** The customer pays at the gateway; resolves with the webhook the gateway sends about it. */
  customerPays(payment: CreatedPayment, request: PaymentRequest): Promise<RawWebhook>;
  /**
   * The customer's bank or wallet declines (`insufficient_funds` in the method's own codes);
   * resolves with the webhook. Absent for gateways that report no declined payment at all:
   * Alipay's and WeChat Pay's own cashiers let the customer pick another funding source and
   * notify only successes (their adapters' own tests cover declines answered by the API).
   */
  customerIsDeclined?(payment: CreatedPayment, request: PaymentRequest): Promise<RawWebhook>;
  /** The same body signed with another secret: what a forger without the secret can do. */
  signWithWrongSecret(webhook: RawWebhook): RawWebhook;
  /**
   * Where the signature travels, for the forgery cases. Default `headers` (Stripe, WeChat Pay,
   * the sandbox); Alipay signs inside the form body (`sign`).
   */
  signatureIn?: 'headers' | 'body';
  /**
   * The genuine body with its amount raised, signature left as it was. Default: the first
   * `500` in the body becomes `50000`; gateways whose body hides the amount (WeChat Pay
   * encrypts it) change another signed byte.
   */
  tamper?(webhook: RawWebhook): Buffer;
  dispose?(): Promise<void>;
}

const allMethods: readonly PaymentMethod[] = ['card', 'alipay', 'wechat_pay'];

/** Cases every PaymentGateway must pass. Call inside a test file; `create` runs before each case. */
export function paymentGatewayContract(name: string, create: () => Promise<PaymentGatewayHarness>): void {
  describe(`${name} satisfies the PaymentGateway contract`, () => {
    let harness: PaymentGatewayHarness;
    let gateway: PaymentGateway;
    /** `preferred` where the gateway takes it, else the gateway's first method. */
    const method = (preferred: PaymentMethod): PaymentMethod => {
      const supported = harness.methods ?? allMethods;
      return supported.includes(preferred) ? preferred : (supported[0] ?? preferred);
    };
    const request = (overrides: Partial<PaymentRequest> = {}) =>
      paymentRequest(harness.currency, { method: method('card'), ...overrides });
    const expectedAction = (m: PaymentMethod) =>
      m === 'card' ? harness.cardNextAction : m === 'alipay' ? (harness.alipayNextAction ?? 'redirect') : 'qr';

    beforeEach(async () => {
      harness = await create();
      gateway = harness.gateway;
    });
    afterEach(async () => {
      await harness.dispose?.();
    });

    it('names itself and supports its methods in its currency, and no others', () => {
      expect(gateway.name).toMatch(/^[a-z][a-z0-9_-]*$/);
      const supported = harness.methods ?? allMethods;
      for (const m of allMethods) {
        expect(gateway.supports(m, harness.currency)).toBe(supported.includes(m));
        expect(gateway.supports(m, harness.currency.toLowerCase())).toBe(supported.includes(m));
        expect(gateway.supports(m, 'C1Y')).toBe(false);
      }
    });

    for (const m of allMethods) {
      it(`creates a ${m} payment that asks the customer for the right next action`, async () => {
        if (!(harness.methods ?? allMethods).includes(m)) {
          // A method the gateway does not take is refused up front, never half-started.
          await expect(gateway.createPayment(request({ method: m }))).rejects.toMatchObject({
            kind: 'invalid_request',
          });
          return;
        }
        const req = request({ method: m });
        const created = await gateway.createPayment(req);
        expect(created.gatewayPaymentId).toMatch(/\S/);
        expect(created.status).toBe('requires_action');
        expect(created.nextAction.type).toBe(expectedAction(m));
        if (created.nextAction.type === 'redirect') expect(URL.canParse(created.nextAction.url)).toBe(true);
        if (created.nextAction.type === 'qr') {
          expect(created.nextAction.payload).toMatch(/\S/);
          expect(created.nextAction.expiresAt.getTime()).toBeLessThanOrEqual(req.expiresAt.getTime());
        }
        if (created.nextAction.type === 'client_secret') expect(created.nextAction.clientSecret).toMatch(/\S/);
      });
    }

    it('retrieves the status as it moves from waiting to paid', async () => {
      const req = request({ method: method('alipay'), amount: 4_250 });
      const created = await gateway.createPayment(req);
      expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
        gatewayPaymentId: created.gatewayPaymentId,
        status: 'requires_action',
        amount: 4_250,
        currency: harness.currency.toUpperCase(),
      });
      await harness.customerPays(created, req);
      const paid = await gateway.retrievePayment(created.gatewayPaymentId);
      expect(paid).toMatchObject({ status: 'succeeded', amount: 4_250, method: method('alipay') });
      expect(paid.failureCategory).toBeUndefined();
    });

    it('reports a decline with its code and failure category, in retrieve and in the webhook', async () => {
      const req = request({ method: method('wechat_pay') });
      const created = await gateway.createPayment(req);
      if (!harness.customerIsDeclined) {
        // No decline is ever reported: the payment keeps waiting for the customer, and no
        // failure is made up for it.
        const waiting = await gateway.retrievePayment(created.gatewayPaymentId);
        expect(waiting).toMatchObject({ status: 'requires_action' });
        expect(waiting.failureCategory).toBeUndefined();
        return;
      }
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
      const req = request({ method: method('wechat_pay') });
      const first = await gateway.createPayment(req);
      const again = await gateway.createPayment(req);
      expect(again.gatewayPaymentId).toBe(first.gatewayPaymentId);
      expect(again.nextAction).toEqual(first.nextAction);

      const other = request({ method: method('alipay') });
      const [a, b] = await Promise.all([gateway.createPayment(other), gateway.createPayment(other)]);
      expect(a.gatewayPaymentId).toBe(b.gatewayPaymentId);
    });

    it('supersedes the previous attempt: it cannot be paid alongside the new one', async () => {
      const first = request({ method: method('alipay') });
      const previous = await gateway.createPayment(first);
      const second = request({
        orderId: first.orderId,
        attemptNumber: 2,
        idempotencyKey: `${first.orderId}-2`,
        method: method('wechat_pay'),
        previousGatewayPaymentId: previous.gatewayPaymentId,
      });
      const next = await gateway.createPayment(second);
      expect(next.nextAction.type).toBe(expectedAction(second.method));
      if (next.gatewayPaymentId !== previous.gatewayPaymentId) {
        expect((await gateway.retrievePayment(previous.gatewayPaymentId)).status).toBe('cancelled');
      }
      await harness.customerPays(next, second);
      expect((await gateway.retrievePayment(next.gatewayPaymentId)).status).toBe('succeeded');
    });

    it('refuses to supersede a paid payment with a conflict', async () => {
      const first = request({ method: method('card') });
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
      const open = await gateway.createPayment(request({ method: method('alipay') }));
      await gateway.cancelPayment(open.gatewayPaymentId);
      await gateway.cancelPayment(open.gatewayPaymentId);
      expect((await gateway.retrievePayment(open.gatewayPaymentId)).status).toBe('cancelled');

      const req = request({ method: method('card') });
      const paid = await gateway.createPayment(req);
      await harness.customerPays(paid, req);
      await gateway.cancelPayment(paid.gatewayPaymentId);
      expect((await gateway.retrievePayment(paid.gatewayPaymentId)).status).toBe('succeeded');
    });

    it('refunds once per refund key, and refuses more than was paid', async () => {
      const req = request({ method: method('card'), amount: 10_000 });
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
      const req = request({ method: method('alipay'), amount: 8_800 });
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
        method: method('alipay'),
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
      const req = request({ method: method('card'), amount: 500 });
      const created = await gateway.createPayment(req);
      const genuine = await harness.customerPays(created, req);
      const tampered = harness.tamper
        ? harness.tamper(genuine)
        : Buffer.from(genuine.rawBody.toString('utf8').replace('500', '50000'));
      expect(tampered.equals(genuine.rawBody)).toBe(false);
      const inBody = harness.signatureIn === 'body';
      const form = new URLSearchParams(genuine.rawBody.toString('utf8'));
      const unsigned = new URLSearchParams([...form].filter(([key]) => key !== 'sign'));
      const forgeries: RawWebhook[] = [
        { rawBody: tampered, headers: genuine.headers },
        harness.signWithWrongSecret(genuine),
        inBody
          ? { rawBody: Buffer.from(unsigned.toString()), headers: genuine.headers }
          : { rawBody: genuine.rawBody, headers: { 'content-type': 'application/json' } },
      ];
      for (const forged of forgeries) {
        const error = await gateway.parseWebhook(forged.rawBody, forged.headers).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GatewayError);
        expect(error).toMatchObject({ kind: 'invalid_signature' });
      }
      // Two signatures are ambiguous: refused rather than guessed at.
      if (inBody) {
        const doubled = Buffer.from(`${genuine.rawBody.toString('utf8')}&sign=${encodeURIComponent('v1=0')}`);
        await expect(gateway.parseWebhook(doubled, genuine.headers)).rejects.toMatchObject({
          kind: 'invalid_signature',
        });
        return;
      }
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
