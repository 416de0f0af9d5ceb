import Stripe from 'stripe';
import { systemClock, type Clock } from '../../../platform/clock.js';
import { paymentMethods, type PaymentMethod } from '../../../domain/vocabulary.js';
import {
  GatewayError,
  singleHeader,
  type CreatedPayment,
  type GatewayEvent,
  type PaymentGateway,
  type PaymentNextAction,
  type PaymentRequest,
  type PaymentStatus,
  type RefundRequest,
  type RefundResult,
  type WebhookHeaders,
} from '../../payment-gateway.js';
import { toGatewayError, type StripeCallKind } from './stripe-errors.js';
import { errorFingerprint, failureOf, metadataKeys, methodOf, statusOf, toGatewayEvent } from './stripe-events.js';

export interface StripeGatewayOptions {
  /** `sk_live_…` / `sk_test_…` (or a restricted key allowed PaymentIntents and Refunds). */
  secretKey: string;
  /** The webhook endpoint's signing secret, `whsec_…`. */
  webhookSecret: string;
  /** `pk_…`, handed to the card page together with the client secret. Default: not included. */
  publishableKey?: string;
  /** API host, port and protocol: for a local fake in tests. Default: Stripe's own (`api.stripe.com`, 443, https). */
  host?: string;
  port?: number;
  protocol?: 'http' | 'https';
  /** Per-request timeout. Default 30 000 ms. */
  timeoutMs?: number;
  /** The SDK's own retries of failed requests, with the same idempotency key. Default 1. */
  maxNetworkRetries?: number;
  /**
   * Presentment currencies per method (lowercase or uppercase ISO codes, or `'any'`). Which
   * ones Stripe accepts depends on the account's country; override to match yours.
   * Default: card any; Alipay and WeChat Pay the currencies Stripe lists for them.
   */
  currencies?: Partial<Record<PaymentMethod, readonly string[] | 'any'>>;
  /** Oldest webhook signature accepted, in seconds. Default 300 (Stripe's default). */
  webhookToleranceSeconds?: number;
  /** Default: the system clock. Only used to judge webhook signature age. */
  clock?: Clock;
}

const defaultCurrencies: Record<PaymentMethod, readonly string[] | 'any'> = {
  card: 'any',
  alipay: ['aud', 'cad', 'cny', 'eur', 'gbp', 'hkd', 'jpy', 'myr', 'nzd', 'sgd', 'usd'],
  wechat_pay: ['aud', 'cad', 'chf', 'cny', 'dkk', 'eur', 'gbp', 'hkd', 'jpy', 'nok', 'sek', 'sgd', 'usd'],
};

/**
 * Stripe, through the official SDK: one PaymentIntent per order, allowing card, Alipay and
 * WeChat Pay.
 *
 * - A later attempt passes the PaymentIntent as `previousGatewayPaymentId`: it is updated
 *   (amount, metadata) and confirmed again rather than replaced, so the order can never be
 *   paid twice through Stripe. A cancelled PaymentIntent is replaced by a new one.
 * - Card returns a `client_secret` next action: the page confirms with Stripe.js (Payment
 *   Element), which also runs 3-D Secure. Card data then never touches recoup (PCI SAQ A),
 *   and the PaymentIntent stays the one per order; a Checkout Session would create its own.
 *   The price: that page must allow https://js.stripe.com in its CSP (script-src, frame-src).
 * - Alipay and WeChat Pay are confirmed here: Alipay → `redirect` to Stripe's Alipay page,
 *   WeChat Pay (client `web`) → `qr` with the code's data.
 * - Every create / update / confirm / refund carries an idempotency key derived from the
 *   request's `idempotencyKey` (or `refundKey`).
 */
export class StripeGateway implements PaymentGateway {
  readonly name = 'stripe';
  readonly #stripe: Stripe;
  readonly #webhookSecret: string;
  readonly #publishableKey: string | undefined;
  readonly #currencies: Record<PaymentMethod, ReadonlySet<string> | 'any'>;
  readonly #toleranceSeconds: number;
  readonly #clock: Clock;

  constructor(options: StripeGatewayOptions) {
    if (!options.secretKey) throw new Error('StripeGateway needs a secretKey');
    if (!options.webhookSecret) throw new Error('StripeGateway needs a webhookSecret');
    this.#stripe = new Stripe(options.secretKey, {
      ...(options.host ? { host: options.host } : {}),
      ...(options.port ? { port: options.port } : {}),
      ...(options.protocol ? { protocol: options.protocol } : {}),
      timeout: options.timeoutMs ?? 30_000,
      maxNetworkRetries: options.maxNetworkRetries ?? 1,
      telemetry: false,
      appInfo: { name: 'recoup' },
    });
    this.#webhookSecret = options.webhookSecret;
    this.#publishableKey = options.publishableKey;
    const currencies = { ...defaultCurrencies, ...options.currencies };
    this.#currencies = {
      card: currencySet(currencies.card),
      alipay: currencySet(currencies.alipay),
      wechat_pay: currencySet(currencies.wechat_pay),
    };
    this.#toleranceSeconds = options.webhookToleranceSeconds ?? 300;
    this.#clock = options.clock ?? systemClock;
  }

  supports(method: PaymentMethod, currency: string): boolean {
    const allowed = this.#currencies[method];
    if (!allowed || !/^[A-Za-z]{3}$/.test(currency)) return false;
    return allowed === 'any' || allowed.has(currency.toLowerCase());
  }

  async createPayment(request: PaymentRequest): Promise<CreatedPayment> {
    this.#validate(request);
    const intent = await this.#intentFor(request);
    if (request.method === 'card') {
      if (!intent.client_secret) throw new GatewayError('invalid_request', 'Stripe returned no client secret');
      return {
        gatewayPaymentId: intent.id,
        status: 'requires_action',
        nextAction: {
          type: 'client_secret',
          clientSecret: intent.client_secret,
          ...(this.#publishableKey ? { publishableKey: this.#publishableKey } : {}),
        },
      };
    }
    const confirmed = await this.#call(
      'write',
      () =>
        this.#stripe.paymentIntents.confirm(
          intent.id,
          {
            payment_method_data: { type: request.method },
            return_url: request.returnUrl,
            ...(request.method === 'wechat_pay' ? { payment_method_options: { wechat_pay: { client: 'web' } } } : {}),
          },
          { idempotencyKey: idempotencyKey(request, 'confirm') },
        ),
      intent.id,
    );
    return {
      gatewayPaymentId: confirmed.id,
      status: statusOf(confirmed),
      nextAction: nextActionOf(confirmed, request),
    };
  }

  async retrievePayment(gatewayPaymentId: string): Promise<PaymentStatus> {
    const intent = await this.#call(
      'read',
      () => this.#stripe.paymentIntents.retrieve(gatewayPaymentId, { expand: ['latest_charge'] }),
      gatewayPaymentId,
    );
    const failure = failureOf(intent);
    const method = methodOf(intent);
    const charge = typeof intent.latest_charge === 'object' ? intent.latest_charge : null;
    return {
      gatewayPaymentId: intent.id,
      status: statusOf(intent),
      amount: intent.amount,
      currency: intent.currency.toUpperCase(),
      ...(method ? { method } : {}),
      ...(failure && intent.status === 'requires_payment_method'
        ? { failureCode: failure.code, failureCategory: failure.category }
        : {}),
      ...(intent.status === 'succeeded' && charge?.paid ? { paidAt: new Date(charge.created * 1000) } : {}),
      ...(charge ? { amountRefunded: charge.amount_refunded } : {}),
    };
  }

  async cancelPayment(gatewayPaymentId: string): Promise<void> {
    try {
      // No own idempotency key: cancelling twice is harmless, and a stored error must not be replayed.
      await this.#call('write', () => this.#stripe.paymentIntents.cancel(gatewayPaymentId), gatewayPaymentId);
    } catch (error) {
      if (!(error instanceof GatewayError) || error.code !== 'payment_intent_unexpected_state') throw error;
      const intent = await this.#call(
        'read',
        () => this.#stripe.paymentIntents.retrieve(gatewayPaymentId),
        gatewayPaymentId,
      );
      if (intent.status === 'canceled' || intent.status === 'succeeded') return;
      throw error;
    }
  }

  async refund(input: RefundRequest): Promise<RefundResult> {
    if (!Number.isSafeInteger(input.amount) || input.amount <= 0) {
      throw new GatewayError('invalid_request', 'Refund amount must be a positive integer', { code: 'invalid_amount' });
    }
    const reason = stripeRefundReasons.find((known) => known === input.reason);
    const refund = await this.#call(
      'write',
      () =>
        this.#stripe.refunds.create(
          {
            payment_intent: input.gatewayPaymentId,
            amount: input.amount,
            ...(reason ? { reason } : {}),
            metadata: { refund_key: input.refundKey, reason: input.reason.slice(0, 500) },
          },
          { idempotencyKey: `recoup:refund:${input.refundKey}` },
        ),
      input.gatewayPaymentId,
    ).catch((error: unknown) => {
      // More than is left to refund: the payment's state forbids it, like an already refunded charge.
      if (error instanceof GatewayError && error.code === 'amount_too_large') {
        throw new GatewayError('conflict', error.message, {
          code: error.code,
          gatewayPaymentId: input.gatewayPaymentId,
          cause: error,
        });
      }
      throw error;
    });
    if (refund.currency.toUpperCase() !== input.currency.toUpperCase()) {
      // Stripe refunds in the charge's currency; a mismatch means the caller's records are wrong.
      throw new GatewayError('invalid_request', `Refund ${refund.id} is in ${refund.currency}, not ${input.currency}`, {
        code: 'currency_mismatch',
        gatewayPaymentId: input.gatewayPaymentId,
      });
    }
    return { gatewayRefundId: refund.id, status: refundStatus(refund.status) };
  }

  async parseWebhook(rawBody: Buffer, headers: WebhookHeaders): Promise<GatewayEvent | null> {
    const signature = singleHeader(headers, 'stripe-signature');
    if (!signature)
      throw new GatewayError('invalid_signature', 'Stripe webhook rejected: missing Stripe-Signature header');
    let event: Stripe.Event;
    try {
      event = this.#stripe.webhooks.constructEvent(
        rawBody,
        signature,
        this.#webhookSecret,
        this.#toleranceSeconds,
        undefined,
        this.#clock.now().getTime(),
      );
    } catch (error) {
      if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
        throw new GatewayError('invalid_signature', `Stripe webhook rejected: ${error.message}`, { cause: error });
      }
      throw new GatewayError('invalid_request', 'Stripe webhook body is not an event', { cause: error });
    }
    return toGatewayEvent(event);
  }

  // ---- internals ----

  #validate(request: PaymentRequest): void {
    if (!Number.isSafeInteger(request.amount) || request.amount <= 0) {
      throw new GatewayError('invalid_request', 'amount must be a positive integer', { code: 'invalid_amount' });
    }
    if (!this.supports(request.method, request.currency)) {
      throw new GatewayError('invalid_request', `Stripe is not set up for ${request.method} in ${request.currency}`, {
        code: 'currency_not_supported',
        category: 'method_unsupported',
      });
    }
  }

  /** The order's PaymentIntent, set up for this attempt: the previous one updated, or a new one. */
  async #intentFor(request: PaymentRequest): Promise<Stripe.PaymentIntent> {
    const currency = request.currency.toLowerCase();
    const allowed = paymentMethods.filter((method) => this.supports(method, currency));
    const params = {
      amount: request.amount,
      currency,
      description: request.description.slice(0, 1000),
      allowed_payment_method_types: allowed,
      // WeChat Pay in a browser: Stripe answers with a QR code rather than an app hand-off.
      ...(allowed.includes('wechat_pay') ? { payment_method_options: { wechat_pay: { client: 'web' as const } } } : {}),
    };
    const metadata = {
      [metadataKeys.orderId]: request.orderId,
      [metadataKeys.attemptId]: request.attemptId,
      [metadataKeys.attemptNumber]: String(request.attemptNumber),
      [metadataKeys.method]: request.method,
    };

    const previousId = request.previousGatewayPaymentId;
    if (previousId) {
      const previous = await this.#call('read', () => this.#stripe.paymentIntents.retrieve(previousId), previousId);
      if (previous.metadata[metadataKeys.orderId] !== request.orderId) {
        throw new GatewayError('invalid_request', `PaymentIntent ${previousId} belongs to another order`, {
          code: 'previous_payment_mismatch',
        });
      }
      if (
        previous.status === 'succeeded' ||
        previous.status === 'processing' ||
        previous.status === 'requires_capture'
      ) {
        throw new GatewayError('conflict', `PaymentIntent ${previousId} is already ${previous.status}`, {
          code: previous.status === 'processing' ? 'previous_payment_processing' : 'previous_payment_succeeded',
          gatewayPaymentId: previousId,
        });
      }
      if (previous.status !== 'canceled') {
        const settled = errorFingerprint(previous);
        return this.#call(
          'write',
          () =>
            this.#stripe.paymentIntents.update(
              previousId,
              { ...params, metadata: { ...metadata, [metadataKeys.settledError]: settled ?? '' } },
              { idempotencyKey: idempotencyKey(request, 'update') },
            ),
          previousId,
        );
      }
      // Cancelled (by cancelPayment, or by Stripe after too many confirmations): start afresh.
    }
    return this.#call('write', () =>
      this.#stripe.paymentIntents.create(
        { ...params, metadata },
        { idempotencyKey: idempotencyKey(request, 'create') },
      ),
    );
  }

  async #call<T>(kind: StripeCallKind, call: () => Promise<T>, gatewayPaymentId?: string): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toGatewayError(error, kind, gatewayPaymentId);
    }
  }
}

const stripeRefundReasons = ['duplicate', 'fraudulent', 'requested_by_customer'] as const;

/** Stripe allows 255 characters; recoup's keys are far shorter. */
function idempotencyKey(request: PaymentRequest, step: 'create' | 'update' | 'confirm'): string {
  return `recoup:${request.idempotencyKey}:${step}`;
}

function nextActionOf(intent: Stripe.PaymentIntent, request: PaymentRequest): PaymentNextAction {
  const action = intent.next_action;
  if (request.method === 'wechat_pay' && action?.wechat_pay_display_qr_code?.data) {
    return { type: 'qr', payload: action.wechat_pay_display_qr_code.data, expiresAt: request.expiresAt };
  }
  const url = action?.alipay_handle_redirect?.url ?? action?.redirect_to_url?.url;
  if (request.method === 'alipay' && url) return { type: 'redirect', url };
  // Nothing left to do (already paid): send the customer straight to the result page.
  if (intent.status === 'succeeded' || intent.status === 'processing')
    return { type: 'redirect', url: request.returnUrl };
  throw new GatewayError(
    'invalid_request',
    `Stripe asked for ${action?.type ?? 'nothing'} after confirming ${request.method}`,
    {
      code: 'unexpected_next_action',
      gatewayPaymentId: intent.id,
    },
  );
}

function refundStatus(status: string | null): RefundResult['status'] {
  if (status === 'succeeded') return 'succeeded';
  if (status === 'failed' || status === 'canceled') return 'failed';
  return 'pending';
}

function currencySet(value: readonly string[] | 'any' | undefined): ReadonlySet<string> | 'any' {
  if (value === undefined || value === 'any') return value ?? new Set();
  return new Set(value.map((currency) => currency.toLowerCase()));
}
