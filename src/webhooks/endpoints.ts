import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { OutboundEventType } from '../outbound/event-types.js';
import { RecoupError } from '../platform/errors.js';
import { randomHex } from '../platform/random.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';

/** An endpoint as the API shows it; its secret only when it was just made. */
export interface EndpointView {
  id: string;
  url: string;
  description: string | null;
  events: string[];
  /** A connector's write-back (src/connectors/): delivered to that platform's admin API. */
  platform: string | null;
  enabled: boolean;
  /** `ops` (turned off by a person) or `failing` (deliveries failed for WEBHOOK_DISABLE_AFTER). */
  disabled_reason: string | null;
  failing_since: Date | null;
  /** Until when the secret before the last rotation still signs. */
  previous_secret_until: Date | null;
  created_at: Date;
  updated_at: Date;
  secret?: string;
}

const columns = sql`id, url, description, events, platform, enabled, disabled_reason, failing_since,
  case when previous_secret_until > clock_timestamp() then previous_secret_until end as previous_secret_until,
  created_at, updated_at`;

/** A Standard Webhooks secret: `whsec_` and 24 random bytes in base64. */
export function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function textArray(values: readonly string[]) {
  return sql`array(select jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`;
}

function managed(platform: string): RecoupError {
  return new RecoupError(
    'conflict',
    `This endpoint is the ${platform} connector's write-back: its configuration decides where it goes and what it takes. It can be disabled and enabled.`,
  );
}

function notFound(id: string): RecoupError {
  return new RecoupError('not_found', `No webhook endpoint ${id}`);
}

export async function createEndpoint(
  db: Db,
  input: { url: string; events: OutboundEventType[]; description: string | null },
): Promise<EndpointView> {
  const secret = newSecret();
  const [row] = await rows<EndpointView>(
    db,
    sql`insert into webhook_endpoints (id, url, description, events, secret, created_at, updated_at)
        values (${`ep_${randomHex(12)}`}, ${input.url}, ${input.description},
                ${textArray(input.events)}, ${secret},
                clock_timestamp(), clock_timestamp())
        returning ${columns}`,
  );
  return { ...row!, secret };
}

export async function listEndpoints(db: Db): Promise<EndpointView[]> {
  return rows<EndpointView>(db, sql`select ${columns} from webhook_endpoints order by created_at, id`);
}

export async function getEndpoint(db: Db, id: string): Promise<EndpointView> {
  const [row] = await rows<EndpointView>(db, sql`select ${columns} from webhook_endpoints where id = ${id}`);
  if (!row) throw notFound(id);
  return row;
}

/**
 * Changes an endpoint. Enabling one (again) clears its failure and wakes its deliveries still
 * pending, now: returned for the caller to queue once this committed.
 */
export async function updateEndpoint(
  db: Db,
  id: string,
  change: { url?: string; events?: OutboundEventType[]; description?: string | null; enabled?: boolean },
): Promise<{ endpoint: EndpointView; wakeups: DeliveryWakeup[] }> {
  return db.transaction(async (tx) => {
    const [before] = await rows<{ enabled: boolean; platform: string | null }>(
      tx,
      sql`select enabled, platform from webhook_endpoints where id = ${id} for update`,
    );
    if (!before) throw notFound(id);
    if (before.platform && (change.url !== undefined || change.events !== undefined)) throw managed(before.platform);
    const events = change.events === undefined ? sql`events` : textArray(change.events);
    const enabling = change.enabled === true && !before.enabled;
    const [updated] = await rows<EndpointView>(
      tx,
      sql`update webhook_endpoints set
            url = coalesce(${change.url ?? null}::text, url),
            events = ${events},
            description = ${change.description === undefined ? sql`description` : sql`${change.description}`},
            enabled = coalesce(${change.enabled ?? null}::boolean, enabled),
            disabled_reason = case when ${change.enabled ?? null}::boolean is null then disabled_reason
                                   when ${change.enabled ?? null}::boolean then null else 'ops' end,
            failing_since = case when ${enabling} then null else failing_since end,
            updated_at = clock_timestamp()
          where id = ${id}
          returning ${columns}`,
    );
    const wakeups = enabling
      ? await rows<DeliveryWakeup>(
          tx,
          sql`update webhook_deliveries set wake_seq = wake_seq + 1, next_attempt_at = clock_timestamp(),
                lease_until = null, updated_at = clock_timestamp()
              where endpoint_id = ${id} and status = 'pending'
              returning id as "deliveryId", wake_seq as "wakeSeq", next_attempt_at as "runAt"`,
        )
      : [];
    return { endpoint: updated!, wakeups };
  });
}

/** Deletes an endpoint; its pending deliveries are cancelled, its log kept. */
export async function deleteEndpoint(db: Db, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [endpoint] = await rows<{ platform: string | null }>(
      tx,
      sql`select platform from webhook_endpoints where id = ${id} for update`,
    );
    if (!endpoint) throw notFound(id);
    if (endpoint.platform) throw managed(endpoint.platform);
    await tx.execute(sql`delete from webhook_endpoints where id = ${id}`);
    await tx.execute(
      sql`update webhook_deliveries set status = 'cancelled', next_attempt_at = null, updated_at = clock_timestamp()
          where endpoint_id = ${id} and status = 'pending'`,
    );
  });
}

/** A new secret; the old one keeps signing beside it for `overlapMs`, so the shop can switch without losing a delivery. */
export async function rotateSecret(db: Db, id: string, overlapMs: number): Promise<EndpointView> {
  const secret = newSecret();
  const [row] = await rows<EndpointView>(
    db,
    sql`update webhook_endpoints set previous_secret = secret, secret = ${secret},
          previous_secret_until = clock_timestamp() + ${overlapMs} * interval '1 millisecond',
          updated_at = clock_timestamp()
        where id = ${id}
        returning ${columns}`,
  );
  if (!row) throw notFound(id);
  return { ...row, secret };
}

/** The endpoint of a connector's write-back: one per platform. */
export function writeBackEndpointId(platform: string): string {
  return `ep_${platform}`;
}

/**
 * The endpoints of the connectors' write-backs, as the configuration has them: one per platform
 * (url `connector:<platform>`), taking the event types its write-back acts on. A platform no longer
 * configured keeps its endpoint, disabled (`not_configured`), with its log; configured again, it is
 * enabled again. Every worker runs this as it starts: the statements are idempotent.
 */
export async function syncWriteBackEndpoints(
  db: Db,
  writeBacks: ReadonlyArray<{ platform: string; events: readonly string[] }>,
): Promise<void> {
  for (const { platform, events } of writeBacks) {
    await db.execute(
      sql`insert into webhook_endpoints (id, url, description, events, secret, platform, created_at, updated_at)
          values (${writeBackEndpointId(platform)}, ${`connector:${platform}`}, ${`The ${platform} connector's write-back`},
                  ${textArray(events)}, ${newSecret()}, ${platform}, clock_timestamp(), clock_timestamp())
          on conflict (platform) where platform is not null do update set
            events = excluded.events,
            enabled = webhook_endpoints.enabled or webhook_endpoints.disabled_reason = 'not_configured',
            disabled_reason = case when webhook_endpoints.disabled_reason = 'not_configured' then null
                                   else webhook_endpoints.disabled_reason end,
            updated_at = clock_timestamp()
          where webhook_endpoints.events is distinct from excluded.events
             or webhook_endpoints.disabled_reason = 'not_configured'`,
    );
  }
  await db.execute(
    sql`update webhook_endpoints set enabled = false, disabled_reason = 'not_configured', updated_at = clock_timestamp()
        where platform is not null and enabled
          and platform <> all (${textArray(writeBacks.map((w) => w.platform))})`,
  );
}
