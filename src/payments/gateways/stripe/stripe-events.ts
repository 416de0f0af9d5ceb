import type Stripe from 'stripe';
import { paymentMethods, type PaymentMethod } from '../../../domain/vocabulary.js';
import type { GatewayEvent, GatewayPaymentStatus } from '../../payment-gateway.js';
import { classifyStripeFailure } from './stripe-errors.js';

/**
 * Metadata recoup puts on its PaymentIntents. Stripe merges metadata on update, so each
 * attempt overwrites the previous attempt's values.
 */
export const metadataKeys = {
  orderId: 'order_id',
  attemptId: 'attempt_id',
  attemptNumber: 'attempt_number',
  method: 'method',
  /**
   * The `last_payment_error` an earlier attempt left behind when a new card attempt starts
   * (a new confirmation clears it; a card attempt is confirmed later, in the browser). A
   * PaymentIntent still showing that error is waiting for the customer, not failed.
   */
  settledError: 'recoup_settled_error',
} as const;

/**
 * A verified Stripe event → recoup's event, or null when it carries nothing recoup acts on.
 * Refunds are followed through `refund.*` events (`charge.refunded` no longer lists the
 * refunds); a refund may be reported succeeded by both `refund.created` and `refund.updated`:
 * the integrator applies refund outcomes idempotently per refund id.
 */
export function toGatewayEvent(event: Stripe.Event): GatewayEvent | null {
  const occurredAt = new Date(event.created * 1000);
  switch (event.type) {
    case 'payment_intent.succeeded':
      return paymentEvent(event.id, 'payment.succeeded', event.data.object, occurredAt);
    case 'payment_intent.payment_failed':
      return paymentEvent(event.id, 'payment.failed', event.data.object, occurredAt);
    case 'payment_intent.canceled':
      return paymentEvent(event.id, 'payment.cancelled', event.data.object, occurredAt);
    case 'refund.created':
    case 'refund.updated':
    case 'refund.failed':
      return refundEvent(event.id, event.data.object, occurredAt);
    default:
      return null;
  }
}

function paymentEvent(
  id: string,
  type: 'payment.succeeded' | 'payment.failed' | 'payment.cancelled',
  intent: Stripe.PaymentIntent,
  occurredAt: Date,
): GatewayEvent {
  // The event reports its own failure, even if a newer attempt has set it aside since.
  const error = type === 'payment.failed' ? intent.last_payment_error : null;
  const failure = error ? classifyStripeFailure(error) : undefined;
  const method = methodOf(intent);
  return {
    id,
    type,
    gatewayPaymentId: intent.id,
    ...metadataIds(intent.metadata),
    amount: type === 'payment.succeeded' ? intent.amount_received || intent.amount : intent.amount,
    currency: intent.currency.toUpperCase(),
    ...(method ? { method } : {}),
    ...(failure ? { failureCode: failure.code, failureCategory: failure.category } : {}),
    occurredAt,
  };
}

function refundEvent(id: string, refund: Stripe.Refund, occurredAt: Date): GatewayEvent | null {
  const status = refund.status;
  const type =
    status === 'succeeded'
      ? 'refund.succeeded'
      : status === 'failed' || status === 'canceled'
        ? 'refund.failed'
        : undefined;
  const paymentIntentId = typeof refund.payment_intent === 'string' ? refund.payment_intent : refund.payment_intent?.id;
  if (!type || !paymentIntentId) return null;
  return {
    id,
    type,
    gatewayPaymentId: paymentIntentId,
    ...(typeof refund.payment_intent === 'object' && refund.payment_intent
      ? metadataIds(refund.payment_intent.metadata)
      : {}),
    amount: refund.amount,
    currency: refund.currency.toUpperCase(),
    ...(type === 'refund.failed' && refund.failure_reason ? { failureCode: refund.failure_reason } : {}),
    refundId: refund.id,
    occurredAt,
  };
}

function metadataIds(metadata: Stripe.Metadata | null | undefined): { orderId?: string; attemptId?: string } {
  const orderId = metadata?.[metadataKeys.orderId];
  const attemptId = metadata?.[metadataKeys.attemptId];
  return { ...(orderId ? { orderId } : {}), ...(attemptId ? { attemptId } : {}) };
}

/** The method actually used when Stripe tells (the failed or attached payment method), else the attempt's. */
export function methodOf(intent: Stripe.PaymentIntent): PaymentMethod | undefined {
  const candidates = [
    intent.last_payment_error?.payment_method?.type,
    typeof intent.payment_method === 'object' ? intent.payment_method?.type : undefined,
    intent.metadata?.[metadataKeys.method],
  ];
  return candidates.find((type): type is PaymentMethod => (paymentMethods as readonly unknown[]).includes(type));
}

/** The failure the PaymentIntent currently shows, unless a later attempt has set it aside. */
export function failureOf(intent: Stripe.PaymentIntent): ReturnType<typeof classifyStripeFailure> | undefined {
  const error = intent.last_payment_error;
  if (!error || errorFingerprint(intent) === intent.metadata?.[metadataKeys.settledError]) return undefined;
  return classifyStripeFailure(error);
}

/** Identifies one `last_payment_error`: each confirmation creates a new payment method. */
export function errorFingerprint(intent: Stripe.PaymentIntent): string | undefined {
  const error = intent.last_payment_error;
  if (!error) return undefined;
  return error.payment_method?.id ?? error.charge ?? `${error.code ?? ''}/${error.decline_code ?? ''}`;
}

export function statusOf(intent: Stripe.PaymentIntent): GatewayPaymentStatus {
  switch (intent.status) {
    case 'succeeded':
      return 'succeeded';
    case 'canceled':
      return 'cancelled';
    case 'processing':
    case 'requires_capture':
      return 'pending';
    case 'requires_payment_method':
      return failureOf(intent) ? 'failed' : 'requires_action';
    default:
      // requires_action, requires_confirmation: the customer has something to do.
      return 'requires_action';
  }
}
