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

/** WEBHOOK_STALE_AFTER's default: a claim this old belongs to a delivery that died. */
export const defaultWebhookStaleAfterMs = 120_000;

/**
 * A gateway's webhook: verified on the raw body, de-duplicated by the gateway's event id,
 * applied as forward-only state changes. Throws `forbidden` for a bad signature (nothing
 * is recorded), `not_found` for an unknown gateway, and `in_progress` while another
 * delivery of the same event is being applied (the gateway must send it again: that
 * delivery may still fail).
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

  // First delivery wins; a replay (the gateway resending, or an attacker replaying a captured
  // request within the signature tolerance) has no second effect. A delivery is acknowledged
  // only once its event is applied: until then the gateway is told to send it again.
  const claim = await claimEvent(deps, gateway.name, event);
  if (claim.kind === 'settled') return 'duplicate_event';
  if (claim.kind === 'in_flight') {
    throw new RecoupError('in_progress', `Event ${event.id} is being processed; send it again later`);
  }
  await deps.faultPoint?.('after_webhook_claim', event.id);
  return applyClaimed(deps, gateway.name, event, claim.claims);
}

type Claim =
  /** This delivery holds the event: the `claims`-th claim on it. */
  | { kind: 'claimed'; claims: number }
  /** Another delivery is applying it right now. */
  | { kind: 'in_flight' }
  /** Applied already. */
  | { kind: 'settled' };

/**
 * One conditional write: a new event is inserted as `processing`; a known one is taken over
 * only if its last application failed or its claim is stale by Postgres's clock (the
 * delivery died). Concurrent deliveries serialise on the row, so exactly one of them wins.
 */
async function claimEvent(deps: RetryDeps, gateway: string, event: GatewayEvent): Promise<Claim> {
  const staleSeconds = (deps.webhookStaleAfterMs ?? defaultWebhookStaleAfterMs) / 1000;
  const [claimed] = await rows<{ claims: number }>(
    deps.db,
    sql`insert into gateway_events as g (gateway, event_id, type, gateway_payment_id, outcome, received_at, event,
                                         claimed_at, claims)
        values (${gateway}, ${event.id}, ${event.type}, ${event.gatewayPaymentId}, 'processing', ${deps.clock.now()},
                ${JSON.stringify(event)}::jsonb, now(), 1)
        on conflict (gateway, event_id) do update
          set outcome = 'processing', event = excluded.event, claimed_at = now(), claims = g.claims + 1
          where g.outcome = 'error'
             or (g.outcome = 'processing' and g.claimed_at < now() - make_interval(secs => ${staleSeconds}))
        returning claims`,
  );
  if (claimed) return { kind: 'claimed', claims: claimed.claims };
  const [row] = await rows<{ outcome: string }>(
    deps.db,
    sql`select outcome from gateway_events where gateway = ${gateway} and event_id = ${event.id}`,
  );
  // Unsettled (the other delivery may have failed meanwhile): the gateway's next try takes it over.
  return row && !unsettled.includes(row.outcome) ? { kind: 'settled' } : { kind: 'in_flight' };
}

const unsettled = ['processing', 'error'];

/** Applies a claimed event and records its outcome; on failure hands the event back for a resend. */
async function applyClaimed(
  deps: RetryDeps,
  gateway: string,
  event: GatewayEvent,
  claims: number,
): Promise<WebhookOutcome> {
  try {
    const outcome = await applyEvent(deps, gateway, event);
    await deps.db.execute(
      sql`update gateway_events set outcome = ${outcome} where gateway = ${gateway} and event_id = ${event.id}`,
    );
    return outcome;
  } catch (err) {
    // Only the claim still held: a takeover (or its outcome) is never undone by the delivery it replaced.
    await deps.db
      .execute(
        sql`update gateway_events set outcome = 'error'
            where gateway = ${gateway} and event_id = ${event.id} and claims = ${claims} and outcome = 'processing'`,
      )
      .catch((releaseErr: unknown) =>
        // The claim then goes stale and is taken over all the same.
        deps.logger.warn({ err: releaseErr, gateway, eventId: event.id }, 'could not release a webhook event claim'),
      );
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
