import Stripe from 'stripe';
import type { FailureCategory } from '../../../domain/vocabulary.js';
import { classifyFailure } from '../../../recoveries/classify-failure.js';
import { GatewayError } from '../../payment-gateway.js';

/** Whether a failed call could have changed anything at Stripe: decides `unavailable` vs `unknown_outcome`. */
export type StripeCallKind = 'read' | 'write';

// Connection failures where the request never left this machine.
const neverSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The codes of a Stripe payment failure, as the API reports them on errors and `last_payment_error`. */
export interface StripeFailureCodes {
  code?: string | null | undefined;
  decline_code?: string | null | undefined;
  advice_code?: string | null | undefined;
  message?: string | null | undefined;
}

/**
 * A Stripe failure → the code recoup records and its category. The issuer's `decline_code`
 * is the most specific; when it is vague (`generic_decline`) Stripe's `advice_code`
 * (`try_again_later`, `do_not_try_again`, `confirm_card_data`) decides; then the API `code`.
 */
export function classifyStripeFailure(failure: StripeFailureCodes): { code: string; category: FailureCategory } {
  const codes = [failure.decline_code, failure.advice_code, failure.code].filter(
    (code): code is string => typeof code === 'string' && code !== '',
  );
  const code = failure.decline_code || failure.code || failure.advice_code || 'unknown';
  const category = classifyFailure({ gateway: 'stripe', code: codes.join(':'), message: failure.message });
  return { code, category };
}

/**
 * Any error thrown by the Stripe SDK → GatewayError. Errors that are not Stripe's (bugs)
 * are returned unchanged.
 */
export function toGatewayError(error: unknown, kind: StripeCallKind, gatewayPaymentId?: string): unknown {
  if (error instanceof GatewayError || !(error instanceof Stripe.errors.StripeError)) return error;
  const paymentId = error.payment_intent?.id ?? gatewayPaymentId;
  const base = { cause: error, ...(paymentId ? { gatewayPaymentId: paymentId } : {}) };
  const message = `Stripe: ${error.message}`;

  if (error instanceof Stripe.errors.StripeCardError) {
    const { code, category } = classifyStripeFailure(error);
    return new GatewayError('declined', message, { ...base, code, category });
  }
  if (error instanceof Stripe.errors.StripeRateLimitError) {
    return new GatewayError('unavailable', message, {
      ...base,
      code: error.code ?? 'rate_limit',
      category: 'gateway_outage',
    });
  }
  if (error instanceof Stripe.errors.StripeIdempotencyError) {
    return new GatewayError('conflict', message, { ...base, code: 'idempotency_error' });
  }
  if (error instanceof Stripe.errors.StripeInvalidRequestError) {
    const code = error.code ?? 'invalid_request_error';
    if (code === 'payment_intent_unexpected_state' || code === 'charge_already_refunded') {
      return new GatewayError('conflict', message, { ...base, code });
    }
    // Requests Stripe refuses for what they ask (amount too small, currency unsupported) still
    // classify; plain parameter errors come out as `unknown`.
    return new GatewayError('invalid_request', message, {
      ...base,
      code,
      category: classifyStripeFailure(error).category,
    });
  }
  if (
    error instanceof Stripe.errors.StripeAuthenticationError ||
    error instanceof Stripe.errors.StripePermissionError
  ) {
    return new GatewayError('invalid_request', message, {
      ...base,
      code: error.code ?? error.type,
      category: 'unknown',
    });
  }
  if (error instanceof Stripe.errors.StripeConnectionError) {
    const detailCode = errorCode(error.detail);
    const neverSent = detailCode !== undefined && neverSentCodes.has(detailCode);
    return new GatewayError(neverSent || kind === 'read' ? 'unavailable' : 'unknown_outcome', message, {
      ...base,
      code: detailCode ?? 'api_connection_error',
      category: 'network',
    });
  }
  // StripeAPIError (5xx, unreadable answers) and anything newer: Stripe may have acted on a write.
  return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', message, {
    ...base,
    code: error.code ?? (error.statusCode ? String(error.statusCode) : 'api_error'),
    category: 'gateway_outage',
  });
}

function errorCode(detail: unknown): string | undefined {
  if (typeof detail !== 'object' || detail === null || !('code' in detail)) return undefined;
  return typeof detail.code === 'string' ? detail.code : undefined;
}
