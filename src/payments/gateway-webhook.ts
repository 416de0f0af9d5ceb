import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { RecoupError } from '../errors.js';
import { isGatewayError, type GatewayEvent, type WebhookHeaders } from './payment-gateway.js';
import { closeAttempt, settleSuccess, type RetryDeps } from './retry-session.js';

export type WebhookOutcome =
  | 'ignored'
  | 'duplicate_event'
  | 'payment_recorded'
  | 'payment_already_recorded'
  | 'duplicate_payment_refunded'
  | 'attempt_failed'
  | 'attempt_cancelled'
  | 'refund_updated'
  | 'unknown_payment';

/**
 * A gateway's webhook: verified on the raw body, de-duplicated by the gateway's event id,
 * applied as forward-only state changes. Throws `forbidden` for a bad signature (nothing
 * is recorded) and `not_found` for an unknown gateway.
 */
export async function handleGatewayWebhook(
  deps: RetryDeps,
  gatewayName: string,
  rawBody: Buffer,
  headers: WebhookHeaders,
): Promise<WebhookOutcome> {
  const gateway = deps.gateways.byName(gatewayName);
  if (!gateway) throw new RecoupError('not_found', `No payment gateway "${gatewayName}"`);
  let event: GatewayEvent | null;
  try {
    event = await gateway.parseWebhook(rawBody, headers);
  } catch (err) {
    if (isGatewayError(err, 'invalid_signature')) throw new RecoupError('forbidden', 'Invalid webhook signature');
    if (isGatewayError(err, 'invalid_request')) {
      throw new RecoupError('validation', 'Unreadable webhook', { issues: [{ path: '(body)', message: err.message }] });
    }
    throw err;
  }
  if (!event) return 'ignored';
  const now = deps.clock.now();

  // First delivery wins; a replay (the gateway resending, or an attacker replaying a captured
  // request within the signature tolerance) has no second effect.
  const claimed = await rows<{ event_id: string }>(
    deps.db,
    sql`insert into gateway_events (gateway, event_id, type, gateway_payment_id, outcome, received_at)
        values (${gateway.name}, ${event.id}, ${event.type}, ${event.gatewayPaymentId}, 'processing', ${now})
        on conflict do nothing returning event_id`,
  );
  if (claimed.length === 0) return 'duplicate_event';
  try {
    const outcome = await applyEvent(deps, gateway.name, event);
    await deps.db.execute(
      sql`update gateway_events set outcome = ${outcome} where gateway = ${gateway.name} and event_id = ${event.id}`,
    );
    return outcome;
  } catch (err) {
    // Let the gateway resend: forget the claim so the retry is processed.
    await deps.db.execute(sql`delete from gateway_events where gateway = ${gateway.name} and event_id = ${event.id}`);
    throw err;
  }
}

async function applyEvent(deps: RetryDeps, gateway: string, event: GatewayEvent): Promise<WebhookOutcome> {
  const now = deps.clock.now();
  const [attempt] = await rows<{ id: string; order_id: string }>(
    deps.db,
    event.attemptId
      ? sql`select id, order_id from payment_attempts where id = ${event.attemptId}`
      : sql`select id, order_id from payment_attempts
            where gateway = ${gateway} and gateway_payment_id = ${event.gatewayPaymentId}
            order by attempt_number desc nulls last limit 1`,
  );
  const orderId = attempt?.order_id ?? event.orderId;

  if (event.type === 'refund.succeeded' || event.type === 'refund.failed') {
    const updated = await rows<{ id: string }>(
      deps.db,
      sql`update refunds set status = ${event.type === 'refund.succeeded' ? 'succeeded' : 'failed'}, updated_at = ${now},
                             succeeded_at = ${event.type === 'refund.succeeded' ? now : null}
          where gateway_refund_id = ${event.refundId ?? ''} and status = 'pending' returning id`,
    );
    return updated.length > 0 ? 'refund_updated' : 'ignored';
  }
  if (!orderId) return 'unknown_payment';
  const [order] = await rows<{ id: string }>(deps.db, sql`select id from orders where id = ${orderId}`);
  if (!order) return 'unknown_payment';

  if (event.type === 'payment.succeeded') {
    const settled = await settleSuccess(deps, {
      gateway,
      gatewayPaymentId: event.gatewayPaymentId,
      attemptId: attempt?.id ?? null,
      orderId,
      amount: event.amount,
      currency: event.currency,
      method: event.method ?? null,
      paidAt: event.occurredAt,
    });
    if (settled.kind === 'duplicate') return 'duplicate_payment_refunded';
    return settled.kind === 'recorded' ? 'payment_recorded' : 'payment_already_recorded';
  }
  if (!attempt) return 'unknown_payment';
  if (event.type === 'payment.failed') {
    await closeAttempt(deps.db, attempt.id, 'failed', event.failureCode ?? null, event.failureCategory ?? null, now);
    await deps.db.execute(
      sql`update orders set last_failure_code = coalesce(${event.failureCode ?? null}, last_failure_code),
                            last_failure_category = coalesce(${event.failureCategory ?? null}, last_failure_category),
                            last_method = coalesce(${event.method ?? null}, last_method), last_gateway = ${gateway}
          where id = ${orderId} and status = 'pending'`,
    );
    return 'attempt_failed';
  }
  await closeAttempt(deps.db, attempt.id, 'cancelled', null, null, now);
  return 'attempt_cancelled';
}
