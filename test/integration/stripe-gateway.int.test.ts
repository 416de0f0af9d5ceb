import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FixedClock } from '../../src/platform/clock.js';
import type { FailureCategory } from '../../src/domain/vocabulary.js';
import { StripeGateway, type StripeGatewayOptions } from '../../src/payments/gateways/stripe/stripe-gateway.js';
import { GatewayError, type PaymentRequest } from '../../src/payments/payment-gateway.js';
import {
  startFakeStripe,
  type FakeStripe,
  type FakeStripeEvent,
  type FakeStripeRequest,
} from '../helpers/fake-stripe.js';
import { paymentGatewayContract, paymentRequest } from '../helpers/payment-gateway.contract.js';

paymentGatewayContract('StripeGateway', async () => {
  const fake = await startFakeStripe();
  const gateway = new StripeGateway({ ...fake.gatewayOptions, publishableKey: 'pk_test_recoup', maxNetworkRetries: 0 });
  return {
    gateway,
    currency: 'CNY',
    cardNextAction: 'client_secret',
    async customerPays(payment, request) {
      return fake.signedWebhook(fake.customerPays(payment.gatewayPaymentId, { method: request.method }));
    },
    async customerIsDeclined(payment, request) {
      const event = fake.customerFails(payment.gatewayPaymentId, {
        code: 'card_declined',
        decline_code: 'insufficient_funds',
        method: request.method,
      });
      return fake.signedWebhook(event);
    },
    signWithWrongSecret(webhook) {
      return fake.signedWebhook(JSON.parse(webhook.rawBody.toString('utf8')) as FakeStripeEvent, {
        secret: 'whsec_not_the_secret',
      });
    },
    dispose: () => fake.close(),
  };
});

describe('StripeGateway against the fake Stripe', () => {
  let fake: FakeStripe;
  let gateway: StripeGateway;
  const gatewayWith = (options: Partial<StripeGatewayOptions> = {}) =>
    new StripeGateway({ ...fake.gatewayOptions, publishableKey: 'pk_test_recoup', maxNetworkRetries: 0, ...options });
  const request = (overrides: Partial<PaymentRequest> = {}) => paymentRequest('CNY', overrides);
  const nextAttempt = (
    first: PaymentRequest,
    previousGatewayPaymentId: string,
    overrides: Partial<PaymentRequest> = {},
  ) => {
    const attemptNumber = (overrides.attemptNumber ?? first.attemptNumber + 1) as number;
    return request({
      orderId: first.orderId,
      attemptNumber,
      idempotencyKey: `${first.orderId}-${attemptNumber}`,
      previousGatewayPaymentId,
      ...overrides,
    });
  };
  const calls = (operation: FakeStripeRequest['operation']) => fake.requests.filter((r) => r.operation === operation);

  beforeEach(async () => {
    fake = await startFakeStripe();
    gateway = gatewayWith();
  });
  afterEach(() => fake.close());

  describe('what goes over the wire', () => {
    it('creates the PaymentIntent with allowed_payment_method_types, WeChat client web, metadata and an idempotency key', async () => {
      const req = request({ method: 'wechat_pay', amount: 8_800 });
      await gateway.createPayment(req);
      const [create] = calls('create');
      expect(create?.rawBody).toContain('allowed_payment_method_types[0]=card');
      expect(create?.rawBody).toContain('allowed_payment_method_types[1]=alipay');
      expect(create?.rawBody).toContain('allowed_payment_method_types[2]=wechat_pay');
      expect(create?.rawBody).toContain('payment_method_options[wechat_pay][client]=web');
      expect(create?.rawBody).not.toMatch(/(^|&)payment_method_types/);
      expect(create?.params).toMatchObject({
        amount: '8800',
        currency: 'cny',
        metadata: { order_id: req.orderId, attempt_id: req.attemptId, attempt_number: '1', method: 'wechat_pay' },
      });
      expect(create?.idempotencyKey).toBe(`recoup:${req.idempotencyKey}:create`);
      expect(create?.stripeVersion).toMatch(/^\d{4}-\d{2}-\d{2}/);

      const [confirm] = calls('confirm');
      expect(confirm?.params).toMatchObject({
        payment_method_data: { type: 'wechat_pay' },
        payment_method_options: { wechat_pay: { client: 'web' } },
        return_url: req.returnUrl,
      });
      expect(confirm?.idempotencyKey).toBe(`recoup:${req.idempotencyKey}:confirm`);
    });

    it('confirms Alipay with its return_url and redirects to Stripe’s Alipay page', async () => {
      const req = request({ method: 'alipay' });
      const created = await gateway.createPayment(req);
      expect(created.nextAction).toEqual({
        type: 'redirect',
        url: `${fake.url}/fake/alipay/${created.gatewayPaymentId}`,
      });
      expect(calls('confirm')[0]?.params).toMatchObject({
        payment_method_data: { type: 'alipay' },
        return_url: req.returnUrl,
      });
    });

    it('shows the WeChat Pay QR data until the attempt expires', async () => {
      const req = request({ method: 'wechat_pay' });
      const created = await gateway.createPayment(req);
      const intent = fake.paymentIntent(created.gatewayPaymentId);
      const data = (intent?.next_action as { wechat_pay_display_qr_code: { data: string } }).wechat_pay_display_qr_code
        .data;
      expect(created.nextAction).toEqual({ type: 'qr', payload: data, expiresAt: req.expiresAt });
      expect(data).toMatch(/^weixin:\/\//);
    });

    it('hands card payments to Stripe.js: client secret and publishable key, nothing confirmed server-side', async () => {
      const created = await gateway.createPayment(request({ method: 'card' }));
      const intent = fake.paymentIntent(created.gatewayPaymentId);
      expect(created).toEqual({
        gatewayPaymentId: intent?.id,
        status: 'requires_action',
        nextAction: { type: 'client_secret', clientSecret: intent?.client_secret, publishableKey: 'pk_test_recoup' },
      });
      expect(calls('confirm')).toHaveLength(0);
    });

    it('allows only the methods configured for the currency', async () => {
      expect(gateway.supports('card', 'KRW')).toBe(true);
      expect(gateway.supports('wechat_pay', 'KRW')).toBe(false);
      await expect(gateway.createPayment(paymentRequest('KRW', { method: 'alipay' }))).rejects.toMatchObject({
        kind: 'invalid_request',
        category: 'method_unsupported',
      });
      expect(fake.requests).toHaveLength(0);
      await gateway.createPayment(paymentRequest('KRW', { method: 'card' }));
      expect(calls('create')[0]?.params).toMatchObject({ allowed_payment_method_types: ['card'] });
      expect(calls('create')[0]?.params.payment_method_options).toBeUndefined();

      const custom = gatewayWith({ currencies: { wechat_pay: ['krw'] } });
      expect(custom.supports('wechat_pay', 'KRW')).toBe(true);
      expect(custom.supports('wechat_pay', 'CNY')).toBe(false);
    });
  });

  describe('one PaymentIntent per order', () => {
    it('updates and re-confirms the same PaymentIntent on every later attempt', async () => {
      const first = request({ method: 'alipay', amount: 10_000 });
      const one = await gateway.createPayment(first);
      fake.customerFails(one.gatewayPaymentId, { code: 'card_declined', decline_code: 'generic_decline' });
      const second = nextAttempt(first, one.gatewayPaymentId, { method: 'wechat_pay' });
      const two = await gateway.createPayment(second);
      // The coupon expired: the third attempt charges the full amount.
      const third = nextAttempt(second, two.gatewayPaymentId, { method: 'card', amount: 11_000 });
      const three = await gateway.createPayment(third);

      expect(two.gatewayPaymentId).toBe(one.gatewayPaymentId);
      expect(three.gatewayPaymentId).toBe(one.gatewayPaymentId);
      expect(fake.paymentIntentCount()).toBe(1);
      expect(calls('create')).toHaveLength(1);
      expect(calls('update').map((r) => r.idempotencyKey)).toEqual([
        `recoup:${second.idempotencyKey}:update`,
        `recoup:${third.idempotencyKey}:update`,
      ]);
      expect(calls('confirm')).toHaveLength(2);
      expect(fake.paymentIntent(one.gatewayPaymentId)).toMatchObject({
        amount: 11_000,
        metadata: { order_id: first.orderId, attempt_id: third.attemptId, attempt_number: '3', method: 'card' },
      });

      fake.customerPays(one.gatewayPaymentId, { method: 'card' });
      expect(await gateway.retrievePayment(one.gatewayPaymentId)).toMatchObject({
        status: 'succeeded',
        amount: 11_000,
      });
    });

    it('shows a new card attempt as waiting, not as the previous attempt’s failure', async () => {
      const first = request({ method: 'card' });
      const one = await gateway.createPayment(first);
      fake.customerFails(one.gatewayPaymentId, { code: 'card_declined', decline_code: 'insufficient_funds' });
      expect(await gateway.retrievePayment(one.gatewayPaymentId)).toMatchObject({
        status: 'failed',
        failureCategory: 'insufficient_funds',
      });

      const two = await gateway.createPayment(nextAttempt(first, one.gatewayPaymentId, { method: 'card' }));
      expect(two.status).toBe('requires_action');
      const waiting = await gateway.retrievePayment(one.gatewayPaymentId);
      expect(waiting.status).toBe('requires_action');
      expect(waiting.failureCode).toBeUndefined();

      const event = fake.customerFails(one.gatewayPaymentId, { code: 'expired_card', decline_code: 'expired_card' });
      expect(await gateway.retrievePayment(one.gatewayPaymentId)).toMatchObject({
        status: 'failed',
        failureCode: 'expired_card',
        failureCategory: 'card_data',
      });
      const { rawBody, headers } = fake.signedWebhook(event);
      expect(await gateway.parseWebhook(rawBody, headers)).toMatchObject({
        type: 'payment.failed',
        failureCode: 'expired_card',
        failureCategory: 'card_data',
        method: 'card',
      });
    });

    it('starts a new PaymentIntent when the previous one was cancelled', async () => {
      const first = request({ method: 'alipay' });
      const one = await gateway.createPayment(first);
      await gateway.cancelPayment(one.gatewayPaymentId);
      const two = await gateway.createPayment(nextAttempt(first, one.gatewayPaymentId));
      expect(two.gatewayPaymentId).not.toBe(one.gatewayPaymentId);
      expect(fake.paymentIntentCount()).toBe(2);
    });

    it('refuses a previous PaymentIntent of another order', async () => {
      const other = await gateway.createPayment(request({ method: 'alipay' }));
      await expect(
        gateway.createPayment(request({ previousGatewayPaymentId: other.gatewayPaymentId })),
      ).rejects.toMatchObject({ kind: 'invalid_request', code: 'previous_payment_mismatch' });
      expect(calls('update')).toHaveLength(0);
    });

    it('turns an idempotency key reused with other parameters into a conflict', async () => {
      const req = request({ method: 'card', amount: 1_000 });
      await gateway.createPayment(req);
      await expect(gateway.createPayment({ ...req, amount: 2_000 })).rejects.toMatchObject({
        kind: 'conflict',
        code: 'idempotency_error',
      });
      expect(fake.paymentIntentCount()).toBe(1);
    });
  });

  describe('declines → failure categories', () => {
    const cases: {
      failure: { code: string; decline_code?: string; advice_code?: string };
      code: string;
      category: FailureCategory;
    }[] = [
      {
        failure: { code: 'card_declined', decline_code: 'insufficient_funds' },
        code: 'insufficient_funds',
        category: 'insufficient_funds',
      },
      { failure: { code: 'expired_card', decline_code: 'expired_card' }, code: 'expired_card', category: 'card_data' },
      {
        failure: { code: 'card_declined', decline_code: 'do_not_honor' },
        code: 'do_not_honor',
        category: 'account_frozen',
      },
      {
        failure: { code: 'card_declined', decline_code: 'fraudulent' },
        code: 'fraudulent',
        category: 'fraud_suspected',
      },
      {
        failure: { code: 'card_declined', decline_code: 'stolen_card' },
        code: 'stolen_card',
        category: 'fraud_suspected',
      },
      {
        failure: { code: 'authentication_required', decline_code: 'authentication_required' },
        code: 'authentication_required',
        category: 'authentication_required',
      },
      {
        failure: { code: 'card_declined', decline_code: 'generic_decline', advice_code: 'do_not_try_again' },
        code: 'generic_decline',
        category: 'fraud_suspected',
      },
      {
        failure: { code: 'card_declined', decline_code: 'generic_decline', advice_code: 'try_again_later' },
        code: 'generic_decline',
        category: 'insufficient_funds',
      },
      {
        failure: { code: 'card_declined', decline_code: 'generic_decline', advice_code: 'confirm_card_data' },
        code: 'generic_decline',
        category: 'card_data',
      },
      {
        failure: { code: 'card_declined', decline_code: 'card_not_supported' },
        code: 'card_not_supported',
        category: 'method_unsupported',
      },
    ];

    for (const { failure, code, category } of cases) {
      const label = [failure.decline_code ?? failure.code, failure.advice_code].filter(Boolean).join(' + ');

      it(`${label} → ${category}, in retrieve and in the payment_failed webhook`, async () => {
        const created = await gateway.createPayment(request({ method: 'card' }));
        const event = fake.customerFails(created.gatewayPaymentId, failure);
        expect(await gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
          status: 'failed',
          failureCode: code,
          failureCategory: category,
        });
        const { rawBody, headers } = fake.signedWebhook(event);
        expect(await gateway.parseWebhook(rawBody, headers)).toMatchObject({
          type: 'payment.failed',
          gatewayPaymentId: created.gatewayPaymentId,
          failureCode: code,
          failureCategory: category,
        });
      });

      it(`${label} answered to a server-side confirm → GatewayError declined / ${category}`, async () => {
        fake.failNext({ status: 402, ...failure }, { on: 'confirm' });
        const error = await gateway.createPayment(request({ method: 'alipay' })).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GatewayError);
        const intentId = fake.events.find((e) => e.type === 'payment_intent.created')?.data.object.id;
        expect(error).toMatchObject({ kind: 'declined', code, category, gatewayPaymentId: intentId, retryable: false });
      });
    }
  });

  describe('outages and uncertain outcomes', () => {
    it('5xx on a write is an unknown outcome; retrying the same request is safe', async () => {
      const req = request({ method: 'alipay' });
      fake.failNext({ status: 500 }, { on: 'confirm' });
      const error = await gateway.createPayment(req).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ kind: 'unknown_outcome', category: 'gateway_outage', retryable: true });
      const retried = await gateway.createPayment(req);
      expect(retried.nextAction.type).toBe('redirect');
      expect(fake.paymentIntentCount()).toBe(1);
      expect(calls('create').filter((r) => r.replayed)).toHaveLength(1);
    });

    it('a request Stripe processed but whose answer never came is replayed, not repeated', async () => {
      const req = request({ method: 'card' });
      const impatient = gatewayWith({ timeoutMs: 300 });
      fake.failNext('hang', { on: 'create' });
      await expect(impatient.createPayment(req)).rejects.toMatchObject({
        kind: 'unknown_outcome',
        category: 'network',
      });
      const retried = await impatient.createPayment(req);
      expect(fake.paymentIntentCount()).toBe(1);
      expect(retried.gatewayPaymentId).toBe(fake.events[0]?.data.object.id);
    });

    it('a connection cut after processing is recovered by the SDK’s own retry with the same key', async () => {
      fake.failNext('drop', { on: 'create' });
      const created = await gateway.createPayment(request({ method: 'card' }));
      expect(fake.paymentIntentCount()).toBe(1);
      expect(calls('create').map((r) => r.replayed)).toEqual([false, true]);
      expect(created.nextAction.type).toBe('client_secret');
    });

    it('429 and unreachable Stripe are unavailable; reads failing are unavailable too', async () => {
      fake.failNext({ status: 429 }, { on: 'create' });
      await expect(gateway.createPayment(request())).rejects.toMatchObject({ kind: 'unavailable', retryable: true });

      const created = await gateway.createPayment(request({ method: 'card' }));
      fake.failNext({ status: 500 }, { on: 'retrieve' });
      await expect(gateway.retrievePayment(created.gatewayPaymentId)).rejects.toMatchObject({ kind: 'unavailable' });

      await fake.close();
      await expect(gateway.createPayment(request())).rejects.toMatchObject({
        kind: 'unavailable',
        code: 'ECONNREFUSED',
        category: 'network',
      });
    });

    it('a wrong secret key or an unknown PaymentIntent is an invalid request', async () => {
      const wrongKey = new StripeGateway({ ...fake.gatewayOptions, secretKey: 'sk_test_wrong', maxNetworkRetries: 0 });
      await expect(wrongKey.createPayment(request())).rejects.toMatchObject({
        kind: 'invalid_request',
        retryable: false,
      });
      await expect(gateway.retrievePayment('pi_missing')).rejects.toMatchObject({
        kind: 'invalid_request',
        code: 'resource_missing',
      });
    });
  });

  describe('retrieve, cancel and refund', () => {
    it('tells when it was paid and how much was refunded', async () => {
      const req = request({ method: 'wechat_pay', amount: 6_600 });
      const created = await gateway.createPayment(req);
      fake.customerPays(created.gatewayPaymentId);
      await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 600,
        currency: 'CNY',
        refundKey: 'r-1',
        reason: 'duplicate',
      });
      const status = await gateway.retrievePayment(created.gatewayPaymentId);
      expect(status).toMatchObject({ status: 'succeeded', method: 'wechat_pay', amountRefunded: 600 });
      expect(status.paidAt).toBeInstanceOf(Date);
    });

    it('refunds with the refund key as idempotency key, Stripe’s reason when it has one, and ours in metadata', async () => {
      const created = await gateway.createPayment(request({ method: 'card' }));
      fake.customerPays(created.gatewayPaymentId);
      await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 100,
        currency: 'CNY',
        refundKey: 'k1',
        reason: 'duplicate',
      });
      await gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 100,
        currency: 'CNY',
        refundKey: 'k2',
        reason: 'customer called',
      });
      const [first, second] = calls('refund');
      expect(first?.idempotencyKey).toBe('recoup:refund:k1');
      expect(first?.params).toMatchObject({
        payment_intent: created.gatewayPaymentId,
        amount: '100',
        reason: 'duplicate',
      });
      expect(second?.params).toMatchObject({ metadata: { refund_key: 'k2', reason: 'customer called' } });
      expect(second?.params.reason).toBeUndefined();
    });

    it('refuses to refund an unpaid PaymentIntent', async () => {
      const created = await gateway.createPayment(request({ method: 'card' }));
      await expect(
        gateway.refund({
          gatewayPaymentId: created.gatewayPaymentId,
          amount: 100,
          currency: 'CNY',
          refundKey: 'x',
          reason: 'duplicate',
        }),
      ).rejects.toMatchObject({ kind: 'conflict', code: 'payment_intent_unexpected_state' });
    });
  });

  describe('webhooks', () => {
    it('maps cancellations and refunds, and ignores what recoup does not act on', async () => {
      const req = request({ method: 'alipay', amount: 3_000 });
      const created = await gateway.createPayment(req);
      await gateway.cancelPayment(created.gatewayPaymentId);
      const parse = (event: FakeStripeEvent | undefined) => {
        if (!event) throw new Error('no event');
        const { rawBody, headers } = fake.signedWebhook(event);
        return gateway.parseWebhook(rawBody, headers);
      };
      const cancelled = fake.lastEvent('payment_intent.canceled', created.gatewayPaymentId);
      expect(await parse(cancelled)).toEqual({
        id: cancelled?.id,
        type: 'payment.cancelled',
        gatewayPaymentId: created.gatewayPaymentId,
        orderId: req.orderId,
        attemptId: req.attemptId,
        amount: 3_000,
        currency: 'CNY',
        method: 'alipay',
        occurredAt: new Date((cancelled?.created ?? 0) * 1000),
      });
      expect(await parse(fake.lastEvent('payment_intent.created'))).toBeNull();
      expect(await parse(fake.lastEvent('payment_intent.requires_action'))).toBeNull();

      const paidReq = request({ method: 'card', amount: 5_000 });
      const paid = await gateway.createPayment(paidReq);
      fake.customerPays(paid.gatewayPaymentId);
      const refund = await gateway.refund({
        gatewayPaymentId: paid.gatewayPaymentId,
        amount: 5_000,
        currency: 'CNY',
        refundKey: 'dup',
        reason: 'duplicate',
      });
      expect(await parse(fake.lastEvent('refund.created'))).toMatchObject({
        type: 'refund.succeeded',
        gatewayPaymentId: paid.gatewayPaymentId,
        refundId: refund.gatewayRefundId,
        amount: 5_000,
        currency: 'CNY',
      });
      expect(await parse(fake.lastEvent('charge.refunded'))).toBeNull();
    });

    it('refuses a signature older than the tolerance, judged by the injected clock', async () => {
      const created = await gateway.createPayment(request({ method: 'card' }));
      const event = fake.customerPays(created.gatewayPaymentId);
      const signedAt = Math.floor(Date.parse('2026-03-08T01:30:00Z') / 1000);
      const { rawBody, headers } = fake.signedWebhook(event, { timestamp: signedAt });
      const clock = new FixedClock(new Date(signedAt * 1000 + 299_000));
      const withClock = gatewayWith({ clock });
      await expect(withClock.parseWebhook(rawBody, headers)).resolves.toMatchObject({ type: 'payment.succeeded' });
      clock.advance(2_000);
      await expect(withClock.parseWebhook(rawBody, headers)).rejects.toMatchObject({ kind: 'invalid_signature' });
    });
  });

  describe('the fake itself', () => {
    it('refuses the removed payment_method_types and unknown keys, like Stripe', async () => {
      const post = (body: string, key = fake.secretKey) =>
        fetch(`${fake.url}/v1/payment_intents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' },
          body,
        });
      const removed = await post('amount=100&currency=cny&payment_method_types[0]=card');
      expect(removed.status).toBe(400);
      expect(await removed.json()).toMatchObject({
        error: { code: 'parameter_unknown', param: 'payment_method_types' },
      });
      expect((await post('amount=100&currency=cny', 'sk_test_other')).status).toBe(401);
      expect((await post('amount=100&currency=cny')).status).toBe(200);
    });
  });
});
