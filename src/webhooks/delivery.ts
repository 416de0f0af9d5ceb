import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import type { ShopWriteBack, WriteBackResult } from './write-back.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Logger } from '../platform/logger.js';
import type { DeliveryWakeup, WebhookJobData } from '../queue/webhook-queue.js';
import { postJson, type PostOptions, type PostResult } from './safe-http.js';
import type { WebhooksConfig } from './webhooks-config.js';

export interface DeliveryDeps {
  db: Db;
  logger: Logger;
  config: WebhooksConfig;
  /** Test seam: how a delivery is posted. */
  post?: (options: PostOptions) => Promise<PostResult>;
  /** The connectors' write-backs by platform: deliveries to their endpoints go through them. */
  writeBacks?: ReadonlyMap<string, ShopWriteBack>;
}

/** One attempt's result, whoever made it: an HTTP post, or a connector's write-back. */
interface AttemptResult {
  success: boolean;
  /** The HTTP status answered, if any. */
  status: number | null;
  /** The start of the answer (an endpoint's body, a write-back's account of what it did). */
  excerpt: string | null;
  error: string | null;
  latencyMs: number;
}

export type DeliveryOutcome =
  | { kind: 'delivered' | 'retrying' | 'given_up'; status: number | null; next?: DeliveryWakeup }
  /** Not due under this wake-up: another wake-up has it, it is running elsewhere, or it is settled. */
  | { kind: 'skipped' }
  /** The job fired before the delivery was due (clocks differ): woken again when it is. */
  | { kind: 'early'; next: DeliveryWakeup };

/** How early a wake-up may fire and still count as due (clock skew between hosts). */
const earlyToleranceMs = 1_000;
/** The lease an attempt holds beyond its timeout: another worker takes the delivery over after it. */
const leaseMarginMs = 5_000;

interface Claimed {
  attempts: number;
  event_id: string;
  url: string;
  platform: string | null;
  secret: string;
  previous_secret: string | null;
  type: string;
  data: Record<string, unknown>;
  sequence: number | null;
  occurred_at: Date;
  now: Date;
}

/**
 * The body of every attempt of a delivery, the same bytes each time: the event's type, when it
 * happened, and its data with the event's id (the feed's `id`, the same for every endpoint) and the
 * order's sequence.
 */
export function deliveryBody(event: Pick<Claimed, 'event_id' | 'type' | 'data' | 'sequence' | 'occurred_at'>): string {
  const data = {
    ...event.data,
    event_id: event.event_id,
    ...(event.sequence === null ? {} : { sequence: event.sequence }),
  };
  return JSON.stringify({ type: event.type, timestamp: event.occurred_at.toISOString(), data });
}

/** Standard Webhooks signatures, with every secret that signs now, separated by spaces. */
export function signatures(secrets: string[], id: string, at: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, at, body)).join(' ');
}

/**
 * Makes one attempt of a delivery. The attempt is claimed in Postgres first (a lease a little
 * longer than WEBHOOK_TIMEOUT), so two wake-ups never post it at once, and a worker that died
 * mid-attempt leaves it to the restore pass once the lease ran out: a redelivery under the same
 * `webhook-id`, never a lost event. Returns the wake-up of the next attempt, if any, to queue.
 */
export async function attemptDelivery(deps: DeliveryDeps, job: WebhookJobData): Promise<DeliveryOutcome> {
  const { db, config } = deps;
  const leaseMs = config.timeoutMs + leaseMarginMs;
  const [claimed] = await rows<Claimed>(
    db,
    sql`update webhook_deliveries d
          set attempts = d.attempts + 1, lease_until = clock_timestamp() + ${leaseMs} * interval '1 millisecond',
              updated_at = clock_timestamp()
        from webhook_endpoints w, outbound_events e
        where d.id = ${job.deliveryId} and d.wake_seq = ${job.wakeSeq} and d.status = 'pending'
          and d.next_attempt_at <= clock_timestamp() + ${earlyToleranceMs} * interval '1 millisecond'
          and (d.lease_until is null or d.lease_until < clock_timestamp())
          and w.id = d.endpoint_id and w.enabled and e.id = d.event_id
        returning d.attempts, w.url, w.platform, w.secret,
                  case when w.previous_secret_until > clock_timestamp() then w.previous_secret end as previous_secret,
                  e.id as event_id, e.type, e.data, e.sequence, e.created_at as occurred_at, clock_timestamp() as now`,
  );
  if (!claimed) return notClaimed(db, job);
  if (claimed.platform !== null) {
    return recordAttempt(deps, job.deliveryId, claimed.attempts, await writeBack(deps, claimed.platform, claimed));
  }

  const body = deliveryBody(claimed);
  const secrets = claimed.previous_secret ? [claimed.secret, claimed.previous_secret] : [claimed.secret];
  const result = await (deps.post ?? postJson)({
    url: claimed.url,
    headers: {
      'webhook-id': job.deliveryId,
      'webhook-timestamp': String(Math.floor(claimed.now.getTime() / 1000)),
      'webhook-signature': signatures(secrets, job.deliveryId, claimed.now, body),
    },
    body,
    timeoutMs: config.timeoutMs,
    allowPrivateNetworks: config.allowPrivateNetworks,
  });
  return recordAttempt(deps, job.deliveryId, claimed.attempts, {
    success: isSuccess(result),
    status: result.kind === 'answered' ? result.status : null,
    excerpt: result.kind === 'answered' ? result.excerpt : null,
    error: result.kind === 'failed' ? `${result.reason}: ${result.detail}` : null,
    latencyMs: result.latencyMs,
  });
}

/** A delivery to a connector's write-back: the platform's admin API is told, by the connector. */
async function writeBack(deps: DeliveryDeps, platform: string, event: Claimed): Promise<AttemptResult> {
  const connector = deps.writeBacks?.get(platform);
  if (!connector) {
    // Its endpoint is disabled at the next start; until then the delivery waits, retried.
    return {
      success: false,
      status: null,
      excerpt: null,
      error: `no ${platform} write-back is configured`,
      latencyMs: 0,
    };
  }
  const started = performance.now();
  let result: WriteBackResult;
  try {
    result = await connector.apply({ id: event.event_id, type: event.type, data: event.data });
  } catch (err) {
    result = { kind: 'failed', status: null, detail: err instanceof Error ? err.message : String(err) };
  }
  const latencyMs = performance.now() - started;
  switch (result.kind) {
    case 'done':
      return { success: true, status: result.status, excerpt: result.detail.slice(0, 200), error: null, latencyMs };
    case 'skipped':
      return {
        success: true,
        status: null,
        excerpt: `nothing to do: ${result.reason}`.slice(0, 200),
        error: null,
        latencyMs,
      };
    case 'failed':
      return { success: false, status: result.status, excerpt: null, error: result.detail.slice(0, 500), latencyMs };
  }
}

/** Why a wake-up found nothing to do; one that fired early is moved to when the delivery is due. */
async function notClaimed(db: Db, job: WebhookJobData): Promise<DeliveryOutcome> {
  const [early] = await rows<DeliveryWakeup>(
    db,
    sql`update webhook_deliveries set wake_seq = wake_seq + 1, updated_at = clock_timestamp()
        where id = ${job.deliveryId} and wake_seq = ${job.wakeSeq} and status = 'pending'
          and next_attempt_at > clock_timestamp() + ${earlyToleranceMs} * interval '1 millisecond'
        returning id as "deliveryId", wake_seq as "wakeSeq", next_attempt_at as "runAt"`,
  );
  return early ? { kind: 'early', next: early } : { kind: 'skipped' };
}

function isSuccess(result: PostResult): boolean {
  return result.kind === 'answered' && result.status >= 200 && result.status < 300;
}

/**
 * Records an attempt and what follows: delivered; retried after the next wait of
 * WEBHOOK_RETRY_SCHEDULE; or given up after the last. An endpoint whose deliveries have all failed
 * for WEBHOOK_DISABLE_AFTER is disabled. Only the attempt that holds the claim records it: one
 * that outlived its lease (a frozen worker) finds another attempt has taken over.
 */
async function recordAttempt(
  deps: DeliveryDeps,
  deliveryId: string,
  attempt: number,
  result: AttemptResult,
): Promise<DeliveryOutcome> {
  const { config } = deps;
  const { status, success, error, excerpt } = result;
  const waitMs = config.retryScheduleMs[attempt - 1];
  return deps.db.transaction(async (tx) => {
    await tx.execute(
      sql`insert into webhook_attempts (delivery_id, attempt, at, status, latency_ms, excerpt, error)
          values (${deliveryId}, ${attempt}, clock_timestamp(), ${status}, ${Math.round(result.latencyMs)},
                  ${excerpt}, ${error})
          on conflict do nothing`,
    );
    const [row] = await rows<{ endpoint_id: string; status: string; wake_seq: number; next_attempt_at: Date | null }>(
      tx,
      sql`update webhook_deliveries set
            status = case when ${success} then 'delivered' when ${waitMs ?? null}::int is null then 'failed' else 'pending' end,
            delivered_at = case when ${success} then clock_timestamp() end,
            next_attempt_at = case when ${success} or ${waitMs ?? null}::int is null then null
                                   else clock_timestamp() + ${waitMs ?? 0} * interval '1 millisecond' end,
            wake_seq = wake_seq + 1, lease_until = null,
            last_status = ${status}, last_error = ${error}, updated_at = clock_timestamp()
          where id = ${deliveryId} and attempts = ${attempt} and status = 'pending'
          returning endpoint_id, status, wake_seq, next_attempt_at`,
    );
    if (!row) return { kind: 'skipped' };
    if (success) {
      await tx.execute(
        sql`update webhook_endpoints set failing_since = null where id = ${row.endpoint_id} and failing_since is not null`,
      );
      return { kind: 'delivered', status };
    }
    // Written only when it changes (the first failure, or the one that disables it): every
    // delivery to the endpoint would otherwise queue on its row.
    const [changed] = await rows<{ id: string; enabled: boolean }>(
      tx,
      sql`update webhook_endpoints set
            failing_since = coalesce(failing_since, clock_timestamp()),
            enabled = enabled and (failing_since is null
                                   or failing_since > clock_timestamp() - ${config.disableAfterMs} * interval '1 millisecond'),
            disabled_reason = case when failing_since <= clock_timestamp() - ${config.disableAfterMs} * interval '1 millisecond'
                                   then 'failing' else disabled_reason end,
            updated_at = clock_timestamp()
          where id = ${row.endpoint_id} and enabled
            and (failing_since is null
                 or failing_since <= clock_timestamp() - ${config.disableAfterMs} * interval '1 millisecond')
          returning id, enabled`,
    );
    if (changed && !changed.enabled) {
      deps.logger.warn({ endpointId: row.endpoint_id }, 'webhook endpoint disabled: its deliveries kept failing');
    }
    if (row.status === 'failed' || !row.next_attempt_at) return { kind: 'given_up', status };
    return {
      kind: 'retrying',
      status,
      next: { deliveryId, wakeSeq: row.wake_seq, runAt: row.next_attempt_at },
    };
  });
}

/**
 * Deliveries whose wake-up was lost (Redis flushed or restarted empty, a worker killed mid-attempt,
 * a queue add that failed): pending to an enabled endpoint, overdue by more than `graceMs` and not
 * held by a live attempt. Each gets a fresh wake-up id, so a wake-up that was merely late does
 * nothing, and is due now: the next pass looks at it again only once it is overdue again, which
 * leaves its new wake-up time to run.
 */
export async function restoreDeliveries(db: Db, graceMs: number, limit = 1_000): Promise<DeliveryWakeup[]> {
  return rows<DeliveryWakeup>(
    db,
    sql`update webhook_deliveries d set wake_seq = d.wake_seq + 1, next_attempt_at = clock_timestamp(),
          updated_at = clock_timestamp()
        where d.id in (select d2.id from webhook_deliveries d2
                       join webhook_endpoints w on w.id = d2.endpoint_id and w.enabled
                       where d2.status = 'pending'
                         and d2.next_attempt_at < clock_timestamp() - ${graceMs} * interval '1 millisecond'
                         and (d2.lease_until is null or d2.lease_until < clock_timestamp())
                       order by d2.next_attempt_at limit ${limit}
                       for update of d2 skip locked)
        returning d.id as "deliveryId", d.wake_seq as "wakeSeq", d.next_attempt_at as "runAt"`,
  );
}

/**
 * Sends a delivery again now, under its own `webhook-id`: one more attempt, whatever became of the
 * others. An attempt in progress keeps its lease (the resend waits for it rather than posting
 * twice at once). To a disabled endpoint it goes out once the endpoint is enabled again.
 * Undefined when the endpoint has no such delivery.
 */
export async function resendDelivery(
  db: Db,
  endpointId: string,
  deliveryId: string,
): Promise<{ wakeup: DeliveryWakeup; endpointEnabled: boolean } | undefined> {
  const [row] = await rows<DeliveryWakeup & { enabled: boolean }>(
    db,
    sql`update webhook_deliveries d set status = 'pending', next_attempt_at = clock_timestamp(),
          wake_seq = d.wake_seq + 1, updated_at = clock_timestamp()
        from webhook_endpoints w
        where d.id = ${deliveryId} and d.endpoint_id = ${endpointId} and d.status <> 'cancelled'
          and w.id = d.endpoint_id
        returning d.id as "deliveryId", d.wake_seq as "wakeSeq", d.next_attempt_at as "runAt", w.enabled`,
  );
  if (!row) return undefined;
  return {
    wakeup: { deliveryId: row.deliveryId, wakeSeq: row.wakeSeq, runAt: row.runAt },
    endpointEnabled: row.enabled,
  };
}
