import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { RecoupError } from '../platform/errors.js';
import { isGatewayError, type GatewayEvent, type WebhookHeaders } from './payment-gateway.js';
import { closeAttempt } from './payment-attempts.js';
import type { RetryDeps } from './retry-session.js';
import { settleSuccess, type Mismatch } from './settle-success.js';

export type WebhookOutcome =
  | 'ignored'
  | 'duplicate_event'
  | 'payment_recorded'
  | 'payment_already_recorded'
  | 'duplicate_payment_refunded'
  | 'attempt_failed'
  | 'attempt_cancelled'
  | 'refund_updated'
  | 'unknown_payment'
  | Mismatch;

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

/** Applies a claimed event and records its outcome; on failure hands the event back for a resend or the sweeper. */
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

export interface UnsettledEventResult {
  gateway: string;
  eventId: string;
  /** What applying it did, or `error` when that failed again (it stays for a later pass). */
  outcome: WebhookOutcome | 'error';
}

/**
 * Applies events whose delivery died after claiming them (stale `processing`) or failed
 * (`error`) once their last claim is stale: a gateway that got no answer, or gave up
 * resending, still has its payment recorded. At most `limit` events, oldest claim first;
 * each is taken over with the same conditional claim as a resend, so the two never both
 * hold it. Events claimed before their body was kept (no stored event) wait for a resend.
 */
export async function applyUnsettledEvents(deps: RetryDeps, limit: number): Promise<UnsettledEventResult[]> {
  const staleSeconds = (deps.webhookStaleAfterMs ?? defaultWebhookStaleAfterMs) / 1000;
  const due = await rows<{ gateway: string; event_id: string; event: StoredEvent; claims: number }>(
    deps.db,
    sql`with due as (
          select gateway, event_id from gateway_events
          where outcome in ('processing', 'error') and event is not null
            and claimed_at < now() - make_interval(secs => ${staleSeconds})
          order by claimed_at limit ${limit}
          for update skip locked)
        update gateway_events g set outcome = 'processing', claimed_at = now(), claims = g.claims + 1
        from due where g.gateway = due.gateway and g.event_id = due.event_id
        returning g.gateway, g.event_id, g.event, g.claims`,
  );
  const results: UnsettledEventResult[] = [];
  for (const row of due) {
    let outcome: UnsettledEventResult['outcome'];
    try {
      outcome = await applyClaimed(deps, row.gateway, fromStored(row.event), row.claims);
    } catch (err) {
      deps.logger.warn(
        { err, gateway: row.gateway, eventId: row.event_id },
        'applying an unsettled webhook event failed',
      );
      outcome = 'error';
    }
    results.push({ gateway: row.gateway, eventId: row.event_id, outcome });
  }
  return results;
}

/** A GatewayEvent read back from jsonb: its instant comes back as a string. */
type StoredEvent = Omit<GatewayEvent, 'occurredAt'> & { occurredAt: string };

function fromStored(stored: StoredEvent): GatewayEvent {
  return { ...stored, occurredAt: new Date(stored.occurredAt) };
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
    // Recorded as the event's outcome and answered 2xx like any applied event: a resend would
    // carry the same verified facts and be refused again, so retrying helps no one; the money
    // is for ops to settle (the order's timeline shows the event, the log warned).
    if (settled.kind === 'mismatch') return settled.problem;
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
