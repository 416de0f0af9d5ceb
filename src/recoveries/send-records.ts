import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';
import { acceptedAfterClose, flagRemindersAfterPayment, type ReminderAfterPayment } from '../messages/after-payment.js';
import type { NextRun } from './step-decision.js';

/**
 * What a sender records once its provider answered: the accepted messages of a batch in one
 * statement, a refusal in one short transaction. Both hold only while the claim is still the
 * sender's, and move the recovery only from where the claim found it.
 */

/** One accepted message to record. */
export interface SentEntry {
  i: number;
  messageId: string;
  claimId: string;
  providerId: string;
  sentAt: Date;
  segments: number | null;
  cost: { micros: number; currency: string } | undefined;
  recoveryId: string;
  step: number;
  next: NextRun;
}

/**
 * Every accepted message's result and its recovery's next step, in one statement. The message is
 * recorded `sent` while the claim is still this sender's, or when it was given up as `unknown`
 * meanwhile (the answer settles that); the recovery moves on only from where the claim found it,
 * so a payment, an ops action or a cadence migration in between is not undone.
 *
 * A message accepted after its order was paid or cancelled is left out of that statement and
 * recorded in a transaction of its own, together with its flag and the shop's event
 * (src/messages/after-payment.ts): should the process die in between, the message is still
 * `sending`, is given up as `unknown`, and the callback or lookup that settles it flags it then.
 */
export async function recordSent(
  db: Db,
  at: Date,
  entries: SentEntry[],
): Promise<{
  recorded: Array<{ i: number; planned_at: Date | null; wake_seq: number | null }>;
  afterPayment: ReminderAfterPayment[];
}> {
  const onTime = await recordSentRows(db, at, entries, 'on_time');
  const late = entries.filter((e) => onTime.find((r) => r.i === e.i)?.late);
  if (late.length === 0) return { recorded: onTime, afterPayment: [] };
  return db.transaction(async (tx) => {
    const lateRows = await recordSentRows(tx, at, late, 'late');
    const afterPayment = await flagRemindersAfterPayment(
      tx,
      late.map((e) => e.messageId),
      at,
    );
    const recorded = onTime.map((row) => (row.late ? (lateRows.find((r) => r.i === row.i) ?? row) : row));
    return { recorded, afterPayment };
  });
}

/** `on_time`: records the messages accepted before their order closed, and says which were not. */
function recordSentRows(
  db: Db | Tx,
  at: Date,
  entries: SentEntry[],
  which: 'on_time' | 'late',
): Promise<Array<{ i: number; planned_at: Date | null; wake_seq: number | null; late: boolean }>> {
  const acceptedLate = acceptedAfterClose(sql`j.sent_at`, sql`o`);
  return rows<{ i: number; planned_at: Date | null; wake_seq: number | null; late: boolean }>(
    db,
    // `id = any(array(…))` gives the planner the handful of ids up front: it looks them up by index
    // instead of hashing a whole table against the recordset it cannot estimate. Status and state are
    // tested inside a CASE so that the planner cannot AND in the partial indexes on them
    // (messages_sending_idx, recoveries_due_idx): a bitmap scan of those reads every entry churned
    // through them since the last vacuum, 30 ms a statement behind a 10,000-recovery backlog.
    sql`with j as (
          select * from jsonb_to_recordset(${JSON.stringify(
            entries.map((e) => ({
              i: e.i,
              message_id: e.messageId,
              claim_id: e.claimId,
              provider_id: e.providerId,
              sent_at: e.sentAt,
              segments: e.segments,
              cost_micros: e.cost?.micros ?? null,
              cost_currency: e.cost?.currency ?? null,
              cost_source: e.cost ? 'estimate' : null,
              recovery_id: e.recoveryId,
              step: e.step,
              next_step: e.next.index,
              next_run_at: e.next.runAt,
            })),
          )}::jsonb) as j(i integer, message_id text, claim_id text, provider_id text, sent_at timestamptz,
                         segments integer, cost_micros bigint, cost_currency text, cost_source text,
                         recovery_id text, step integer, next_step integer, next_run_at timestamptz)
        ), closed as (
          -- One index probe each (the limits keep the planner from hashing whole tables, as above).
          select j.i from j
          cross join lateral (select order_id from messages where id = j.message_id limit 1) mo
          cross join lateral (select status, paid_at, cancelled_at from orders where id = mo.order_id limit 1) o
          where ${which === 'on_time' ? acceptedLate : sql`false`}
        ), sent as (
          update messages m set status = 'sent', provider_id = j.provider_id, sent_at = j.sent_at, reason = null,
                                claim_id = null, updated_at = ${at}, segments = j.segments,
                                cost_micros = j.cost_micros, cost_currency = j.cost_currency,
                                cost_source = j.cost_source
          from j where m.id = j.message_id and m.id = any(array(select message_id from j))
            and case m.status when 'sending' then m.claim_id = j.claim_id when 'unknown' then true else false end
            and j.i not in (select i from closed)
          returning j.i, m.planned_at
        ), moved as (
          update recoveries r set step_index = j.next_step, next_run_at = j.next_run_at, wake_seq = r.wake_seq + 1
          from j where r.id = j.recovery_id and r.id = any(array(select recovery_id from j))
            and case r.state when 'active' then r.step_index = j.step else false end
            and j.i not in (select i from closed)
          returning j.i, r.wake_seq
        )
        select j.i, sent.planned_at, moved.wake_seq, j.i in (select i from closed) as late from j
        left join sent on sent.i = j.i left join moved on moved.i = j.i`,
  );
}

/** A refusal (or a send that never started) to record against its claim. */
export interface FailureEntry {
  messageId: string;
  claimId: string;
  orderId: string;
  recoveryId: string;
  step: number;
  channel: Channel;
  to: string;
  /** `scheduled` for a retry, else `unknown` or `failed`. */
  status: 'scheduled' | 'unknown' | 'failed';
  reason: string;
  retryAt: Date | undefined;
  next: NextRun;
  /** The provider said the address is bad: recorded on the customer when the message failed. */
  badAddress: string | undefined;
  now: Date;
}

/**
 * Records a refusal while the claim is still this sender's, in one short transaction. The recovery
 * moves only from where the claim found it. Undefined when the claim was no longer this sender's.
 */
export async function recordFailure(
  db: Db,
  f: FailureEntry,
): Promise<{ recorded: string; wakeSeq: number | undefined } | undefined> {
  return db.transaction(async (tx) => {
    const [mine] = await rows<{ id: string }>(
      tx,
      sql`select id from messages where id = ${f.messageId} and claim_id = ${f.claimId} and status = 'sending'
          for update`,
    );
    if (!mine) return undefined;
    const [recovery] = await rows<{ wake_seq: number }>(
      tx,
      sql`update recoveries set step_index = ${f.next.index}, next_run_at = ${f.next.runAt}, wake_seq = wake_seq + 1
          where id = ${f.recoveryId} and state = 'active' and step_index = ${f.step}
          returning wake_seq`,
    );
    // A retry needs its recovery: one that ended or moved on meanwhile (paid, say) has none.
    const [recorded, reason] =
      f.status === 'scheduled' && !recovery ? ['skipped', 'recovery_moved_on'] : [f.status, f.reason];
    await tx.execute(
      sql`update messages set status = ${recorded}, reason = ${reason}, claim_id = null,
                              planned_at = coalesce(${f.retryAt ?? null}::timestamptz, planned_at), updated_at = ${f.now}
          where id = ${f.messageId}`,
    );
    if (recorded === 'failed' && f.badAddress) {
      // Later steps switch to the other channel (where the cadence allows) because this address is now bad.
      const column = f.channel === 'sms' ? sql`phone_bad_reason` : sql`email_bad_reason`;
      const addressColumn = f.channel === 'sms' ? sql`phone` : sql`email`;
      await tx.execute(
        sql`update customers set ${column} = ${f.badAddress}
            where id = (select customer_id from orders where id = ${f.orderId}) and ${addressColumn} = ${f.to}`,
      );
    }
    return { recorded, wakeSeq: recovery?.wake_seq };
  });
}
