import { sql } from 'drizzle-orm';
import { audit } from '../access/audit.js';
import { storedCadenceVersion } from '../cadences/cadence-versions.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import { RecoupError } from '../platform/errors.js';
import type { Wakeup } from '../queue/queues.js';
import { opsLinkChannel } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import { newRetryToken, retryUrl, revokeRetryLinks } from '../retry-links/retry-token.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';

/**
 * What ops may do to one order's recovery by hand: stop it (nothing more goes out, its links stop
 * working), restart a stopped one, and issue a retry link to hand to the customer. Each takes the
 * order's row lock first, the lock the payment path and the dispatcher take, so none races a payment
 * or a send in flight. Each is audited under `order:<id>` in the same transaction.
 */

/** The `ended_reason` of a recovery ops stopped. */
export const stoppedByOps = 'stopped_by_ops';
/** The reason a deferred message gets while its recovery is stopped by ops. */
const skippedReason = stoppedByOps;

/** Who acts and when. */
export interface OpsChange {
  /** Audit actor, e.g. `key:key_…` (see principalActor). */
  actor: string;
  at: Date;
}

export interface StopResult {
  recoveryId: string;
  /** The wake-up that was pending; removing its job is an optimisation (it would find the recovery stopped). */
  pendingWakeup: { recoveryId: string; wakeSeq: number } | null;
  /** Retry links revoked. */
  revokedLinks: number;
}

export interface RestartResult {
  recoveryId: string;
  step: number;
  /** Queue it once committed; the reconciler re-creates it if that fails. */
  wakeup: Wakeup;
  /** Links the stop had revoked that work again. */
  restoredLinks: number;
}

interface RecoveryRow {
  id: string;
  state: string;
  step_index: number;
  next_run_at: Date | null;
  wake_seq: number;
  cadence_name: string;
  cadence_version: number;
  started_at: Date;
  expires_at: Date;
  ended_at: Date | null;
  ended_reason: string | null;
}

/** The audit subject of changes to an order and its recovery. */
export function orderSubject(orderId: string): string {
  return `order:${orderId}`;
}

/**
 * Stops the order's active recovery: state `stopped`, ended_reason `stopped_by_ops`, no next run,
 * a deferred message of the current step `skipped`, every retry link revoked (a customer who opens
 * one sees that it no longer works). A send already claimed finds the recovery stopped and is
 * skipped. Audited as `recovery.stopped`.
 *
 * Throws `not_found` (no such order or no recovery) or `conflict` (the recovery is not active).
 */
export async function stopRecovery(
  db: Db,
  orderId: string,
  change: OpsChange,
  inFlightWait?: InFlightWait,
): Promise<StopResult> {
  const result = await stop(db, orderId, change);
  // A reminder of the order already on its way: answer once its provider answered it.
  await settleInFlightSends(db, { orderId }, inFlightWait);
  return result;
}

async function stop(db: Db, orderId: string, change: OpsChange): Promise<StopResult> {
  return db.transaction(async (tx) => {
    const recovery = await lockRecovery(tx, orderId);
    if (recovery.state !== 'active') {
      throw new RecoupError('conflict', `The recovery of ${orderId} is ${describeState(recovery)}, not active`);
    }
    const now = change.at;
    await tx.execute(
      sql`update recoveries
          set state = 'stopped', ended_reason = ${stoppedByOps}, ended_at = ${now}, next_run_at = null,
              wake_seq = wake_seq + 1
          where id = ${recovery.id}`,
    );
    await tx.execute(
      sql`update messages set status = 'skipped', reason = ${skippedReason}, claim_id = null, updated_at = ${now}
          where recovery_id = ${recovery.id} and status = 'scheduled'`,
    );
    const [links] = await rows<{ count: number }>(
      tx,
      sql`select count(*)::int as count from messages
          where recovery_id = ${recovery.id} and link_token is not null and link_revoked_at is null`,
    );
    await revokeRetryLinks(tx, recovery.id, now);
    await audit(tx, {
      actor: change.actor,
      action: 'recovery.stopped',
      subject: orderSubject(orderId),
      before: {
        recovery_id: recovery.id,
        state: recovery.state,
        step: recovery.step_index,
        next_run_at: recovery.next_run_at,
      },
      after: {
        recovery_id: recovery.id,
        state: 'stopped',
        ended_reason: stoppedByOps,
        revoked_links: links?.count ?? 0,
      },
      at: now,
    });
    return {
      recoveryId: recovery.id,
      pendingWakeup: recovery.next_run_at ? { recoveryId: recovery.id, wakeSeq: recovery.wake_seq } : null,
      revokedLinks: links?.count ?? 0,
    };
  });
}

/**
 * Makes a stopped recovery active again from its current step, if the order is still unpaid: the
 * step is due at start + `after` (now, if that passed), with a fresh wake sequence. A message the
 * stop skipped is `scheduled` again, so the dispatcher decides it afresh (quiet hours, caps,
 * suppressions and circuits all apply), and the links the stop revoked work again. Audited as
 * `recovery.restarted`.
 *
 * Refused (`conflict`) when the order is paid or cancelled, the recovery is not `stopped`, its
 * customer was forgotten, its expiry has passed, or every step already ran: each would end it again
 * at once or message somebody who must not be messaged.
 */
export async function restartRecovery(db: Db, orderId: string, change: OpsChange): Promise<RestartResult> {
  return db.transaction(async (tx) => {
    const recovery = await lockRecovery(tx, orderId);
    const [order] = await rows<{ status: string; forgotten_at: Date | null }>(
      tx,
      sql`select o.status, c.forgotten_at from orders o left join customers c on c.id = o.customer_id
          where o.id = ${orderId}`,
    );
    const now = change.at;
    const refuse = (why: string) => new RecoupError('conflict', `Cannot restart the recovery of ${orderId}: ${why}`);
    if (order?.status !== 'pending') throw refuse(`the order is ${order?.status ?? 'missing'}`);
    if (recovery.state !== 'stopped') throw refuse(`it is ${describeState(recovery)}, not stopped`);
    if (recovery.ended_reason === 'customer_forgotten' || order.forgotten_at) {
      throw refuse('its customer was forgotten');
    }
    if (recovery.expires_at <= now) throw refuse(`it expired at ${recovery.expires_at.toISOString()}`);
    const version = await storedCadenceVersion(tx, recovery.cadence_name, recovery.cadence_version);
    if (!version) throw refuse(`cadence ${recovery.cadence_name} v${recovery.cadence_version} no longer exists`);
    const step = version.cadence.steps[recovery.step_index];
    if (!step) throw refuse('every step of its cadence already ran');

    const planned = new Date(recovery.started_at.getTime() + step.afterMs);
    const runAt = planned < now ? now : planned;
    const [updated] = await rows<{ wake_seq: number }>(
      tx,
      sql`update recoveries
          set state = 'active', ended_reason = null, ended_at = null, next_run_at = ${runAt}, wake_seq = wake_seq + 1
          where id = ${recovery.id}
          returning wake_seq`,
    );
    if (!updated) throw new RecoupError('internal', 'recovery update returned no row');
    await tx.execute(
      sql`update messages set status = 'scheduled', reason = null, updated_at = ${now}
          where recovery_id = ${recovery.id} and step = ${recovery.step_index}
            and status = 'skipped' and reason = ${skippedReason}`,
    );
    // Only the links this recovery's stop revoked (same instant), and only those not expired meanwhile.
    const restored =
      recovery.ended_reason === stoppedByOps && recovery.ended_at
        ? await rows<{ id: string }>(
            tx,
            sql`update messages set link_revoked_at = null
                where recovery_id = ${recovery.id} and link_revoked_at = ${recovery.ended_at}
                  and link_expires_at > ${now}
                returning id`,
          )
        : [];
    await audit(tx, {
      actor: change.actor,
      action: 'recovery.restarted',
      subject: orderSubject(orderId),
      before: { recovery_id: recovery.id, state: recovery.state, ended_reason: recovery.ended_reason },
      after: {
        recovery_id: recovery.id,
        state: 'active',
        step: recovery.step_index,
        next_run_at: runAt,
        restored_links: restored.length,
      },
      at: now,
    });
    return {
      recoveryId: recovery.id,
      step: recovery.step_index,
      wakeup: { recoveryId: recovery.id, wakeSeq: updated.wake_seq, runAt },
      restoredLinks: restored.length,
    };
  });
}

export interface IssuedLink {
  messageId: string;
  recoveryId: string;
  /** The link itself: a bearer credential for the customer's page. Shown once, never stored elsewhere or logged. */
  url: string;
  expiresAt: Date;
}

/** Where issued links lead and how long they work. */
export interface LinkSettings {
  publicUrl: string;
  /** RETRY_LINK_TTL. */
  ttlMs: number;
}

/**
 * Issues a new retry link for the order's active recovery, for ops to hand to the customer (on a
 * support call, say). Nothing is sent: the link is recorded as a message outside the cadence (step
 * NULL) on channel `ops` with status `issued`, which no cap counts. What is done through it is
 * attributed to it: its clicks, attempts and payment, and contact changes, audited with the link as
 * actor rather than as the customer's own. Audited as `retry_link.issued` with the actor and
 * `reason`; the entry names the link's message, never its token.
 *
 * Refused (`conflict`) when the order is paid or cancelled, has no recovery or none that is active
 * (a stopped recovery's links were revoked on purpose), or its customer was forgotten. `not_found`
 * for an unknown order.
 */
export async function issueRetryLink(
  db: Db,
  orderId: string,
  change: OpsChange & { reason: string },
  settings: LinkSettings,
): Promise<IssuedLink> {
  return db.transaction(async (tx) => {
    const [order] = await rows<{
      status: string;
      customer_id: string;
      locale: string | null;
      forgotten_at: Date | null;
    }>(
      tx,
      sql`select o.status, o.customer_id, c.locale, c.forgotten_at
          from orders o left join customers c on c.id = o.customer_id
          where o.id = ${orderId} for update of o`,
    );
    if (!order) throw new RecoupError('not_found', `No order ${orderId}`);
    const refuse = (why: string) => new RecoupError('conflict', `Cannot issue a retry link for ${orderId}: ${why}`);
    if (order.status !== 'pending') throw refuse(`the order is ${order.status}`);
    if (order.forgotten_at) throw refuse('its customer was forgotten');
    const [recovery] = await rows<{ id: string; state: string; ended_reason: string | null }>(
      tx,
      sql`select id, state, ended_reason from recoveries where order_id = ${orderId} for update`,
    );
    if (!recovery) throw refuse('it has no recovery');
    if (recovery.state !== 'active') throw refuse(`its recovery is ${describeState(recovery)}, not active`);

    const now = change.at;
    const id = newId('msg');
    const token = newRetryToken();
    const expiresAt = new Date(now.getTime() + settings.ttlMs);
    await tx.execute(
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, locale, status,
                                link_token, link_expires_at, created_at, updated_at)
          values (${id}, ${recovery.id}, ${orderId}, ${order.customer_id}, null, ${opsLinkChannel}, 'none',
                  ${order.locale}, 'issued', ${token}, ${expiresAt}, ${now}, ${now})`,
    );
    await audit(tx, {
      actor: change.actor,
      action: 'retry_link.issued',
      subject: orderSubject(orderId),
      after: { recovery_id: recovery.id, message_id: id, expires_at: expiresAt, reason: change.reason },
      at: now,
    });
    return { messageId: id, recoveryId: recovery.id, url: retryUrl(settings.publicUrl, token), expiresAt };
  });
}

/** Locks the order row (the lock every writer of a recovery takes first), then its recovery. */
async function lockRecovery(tx: Tx, orderId: string): Promise<RecoveryRow> {
  const [order] = await rows<{ id: string }>(tx, sql`select id from orders where id = ${orderId} for update`);
  if (!order) throw new RecoupError('not_found', `No order ${orderId}`);
  const [recovery] = await rows<RecoveryRow>(
    tx,
    sql`select id, state, step_index, next_run_at, wake_seq, cadence_name, cadence_version, started_at, expires_at,
               ended_at, ended_reason
        from recoveries where order_id = ${orderId} for update`,
  );
  if (!recovery) throw new RecoupError('not_found', `Order ${orderId} has no recovery`);
  return recovery;
}

function describeState(recovery: Pick<RecoveryRow, 'state' | 'ended_reason'>): string {
  return recovery.ended_reason ? `${recovery.state} (${recovery.ended_reason})` : recovery.state;
}
