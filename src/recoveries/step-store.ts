import { sql, type SQL } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import { linkGateways, readCircuits, restoredTemplate, type CircuitHold } from '../circuits/circuit-hold.js';
import { findSuppressions, normaliseAddress } from '../compliance/suppressions.js';
import type { Db } from '../db/client.js';
import type { OrderItem } from '../db/schema.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { Channel, OrderStatus } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import { chargeBasisOf, type ChargeBasis, type ChargeRow } from '../pricing/charge.js';
import type { Wakeup } from '../queue/queues.js';
import {
  decideHead,
  type CustomerRow,
  type NextRun,
  type OrderRow,
  type RecoveryRow,
  type StepDecision,
  type StepMessageRow,
  type StepSnapshot,
} from './step-decision.js';

/**
 * The statements behind a step's dispatch (src/recoveries/dispatch-step.ts): the unlocked snapshot
 * and the claims of the fast path, the reads under the order's row lock and the writes that carry out
 * a decision (src/recoveries/step-decision.ts), and the recording of a provider's answer. The
 * PL/pgSQL functions it calls (migrations/0004_perf.sql, 0006_send_clock.sql, 0007_caps_by_address.sql)
 * are statements too.
 */

/** The daily cap's look-back: two days cover any local calendar day. */
export const capLookBackMs = 2 * 86_400_000;

/** One row of `recoup_step_snapshot`: the recovery, its order, customer and step message, read without locks. */
interface SnapshotRow extends RecoveryRow {
  customer_id: string;
  order_status: OrderStatus;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
  customer_name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
  /** The customer's addresses as SQL normalised them; compared with normaliseAddress before use. */
  sms_normalised: string | null;
  email_normalised: string | null;
  suppressions: Array<{ channel: Channel; reason: string }> | null;
  message_id: string | null;
  message_status: string | null;
  message_template: string | null;
  message_updated_at: Date | null;
  /** Epoch ms of the customer's sends in the daily cap's look-back, ascending, comma-separated. */
  recent_sends: string | null;
  /** The same for the sends to the customer's phone / email under other customer ids. */
  sms_address_sends: string | null;
  email_address_sends: string | null;
  open_gateways: string[] | null;
  /** Read beside the snapshot function, from the order's row in the same statement. */
  items: OrderItem[] | null;
  last_failure_code: string | null;
  coupon_discount_amount: string | null;
  coupon_expires_at: Date | null;
  /** The order's incentive, from the same statement. */
  incentive_amount: string | null;
  incentive_granted_at: Date | null;
}

/** What a read found: the decision's input, and what a claim needs besides it. */
export interface StepRead {
  snapshot: StepSnapshot;
  customerName: string | null | undefined;
  /** The order's cart lines, for the message (the decision does not look at them). */
  items: OrderItem[] | null;
  /** The code of the order's last failed payment, for the message's wording. */
  lastFailureCode: string | null;
  /** What the step's link will charge is computed from (the message quotes it); null when not read. */
  chargeBasis: ChargeBasis | null;
  /** The step message's last change as read (fast path only): recoup_claim_step checks it is unchanged. */
  messageUpdatedAt?: Date | null;
}

/**
 * The fast path's unlocked read of a batch of wake-ups in one statement (recoup_step_snapshot).
 * Undefined for a job whose recovery does not exist.
 */
export async function readSnapshots(
  db: Db,
  cadences: CadenceBook,
  jobs: ReadonlyArray<{ recoveryId: string; wakeSeq: number }>,
  capSince: Date,
): Promise<Array<StepRead | undefined>> {
  const found = await rows<SnapshotRow & { i: number }>(
    db,
    sql`select j.i, s.*, o.items, o.last_failure_code, o.coupon_discount_amount::text as coupon_discount_amount,
               o.coupon_expires_at, i.amount::text as incentive_amount, i.granted_at as incentive_granted_at
        from jsonb_to_recordset(${JSON.stringify(jobs.map((job, i) => ({ i, id: job.recoveryId })))}::jsonb)
          as j(i integer, id text)
        -- One row and one index probe per job: the function's row estimate (1,000 per call) would
        -- otherwise have the planner hash the whole orders table for every batch, or estimate it
        -- past jit_above_cost and JIT-compile every batch.
        cross join lateral (select * from recoup_step_snapshot(j.id, ${capSince}::timestamptz) limit 1) s
        left join lateral (select items, last_failure_code, coupon_discount_amount, coupon_expires_at from orders
                           where id = s.order_id limit 1) o on true
        left join lateral (select amount, granted_at from incentives where order_id = s.order_id limit 1) i on true`,
  );
  return Promise.all(
    jobs.map(async (job, i) => {
      const row = found.find((r) => r.i === i);
      return row ? snapshotOf(db, cadences, row, job.wakeSeq) : undefined;
    }),
  );
}

async function snapshotOf(db: Db, cadences: CadenceBook, row: SnapshotRow, wakeSeq: number): Promise<StepRead> {
  const recovery: RecoveryRow = {
    id: row.id,
    order_id: row.order_id,
    cadence_name: row.cadence_name,
    cadence_version: row.cadence_version,
    failure_category: row.failure_category,
    state: row.state,
    step_index: row.step_index,
    next_run_at: row.next_run_at,
    wake_seq: row.wake_seq,
    started_at: row.started_at,
    expires_at: row.expires_at,
  };
  const order: OrderRow = {
    id: row.order_id,
    customer_id: row.customer_id,
    status: row.order_status,
    amount: row.amount,
    currency: row.currency,
    description: row.description,
    coupon_code: row.coupon_code,
  };
  // SQL's trim and lower case are not JavaScript's for every character: only identical forms are trusted.
  const sameForms =
    (!row.phone || normaliseAddress('sms', row.phone) === row.sms_normalised) &&
    (!row.email || normaliseAddress('email', row.email) === row.email_normalised);
  const suppressions = sameForms
    ? new Map((row.suppressions ?? []).reverse().map((s) => [s.channel, s.reason] as const))
    : await findSuppressions(db, { sms: row.phone, email: row.email });
  return {
    snapshot: {
      wakeSeq,
      recovery,
      order,
      cadence: (await cadences.version(row.cadence_name, row.cadence_version))?.cadence,
      message: row.message_id
        ? {
            id: row.message_id,
            status: row.message_status ?? 'scheduled',
            template: row.message_template ?? '',
            // A claim's age is not in the snapshot: any claim in flight is left to the locked path.
            stale_in_ms: null,
          }
        : undefined,
      customer: {
        email: row.email,
        phone: row.phone,
        email_bad_reason: row.email_bad_reason,
        phone_bad_reason: row.phone_bad_reason,
        timezone: row.timezone,
        locale: row.locale,
      },
      suppressions,
      recentSends: epochList(row.recent_sends),
      addressSends: new Map([
        ['sms', epochList(row.sms_address_sends)],
        ['email', epochList(row.email_address_sends)],
      ]),
      // Only the open circuits, without their closing times: enough to tell a link is not held.
      circuits: (row.open_gateways ?? []).map((gateway) => ({ gateway, state: 'open', closed_at: null })),
    },
    customerName: row.customer_name,
    items: row.items,
    lastFailureCode: row.last_failure_code,
    chargeBasis: chargeBasisOf(row),
    messageUpdatedAt: row.message_updated_at,
  };
}

function epochList(list: string | null): Date[] {
  return list ? list.split(',').map((ms) => new Date(Number(ms))) : [];
}

/** Whether a read step message was held by a circuit (its release needs the closing times). */
export function wasHeld(read: StepRead): boolean {
  return read.snapshot.message?.template === restoredTemplate;
}

/** recoup_claim_step's arguments. */
export interface ClaimParams {
  recovery_id: string;
  wake_seq: number;
  step: number;
  message_id: string;
  seen_message_updated_at: Date | null;
  channel: Channel;
  to_address: string;
  template: string;
  locale: string;
  link_token: string;
  link_expires_at: Date;
  claim_id: string;
  now: Date;
  cap_since: Date | null;
  cap_seen: number[];
}

/**
 * Claims a batch in one statement: `recoup_claim_step` (migrations/0007_caps_by_address.sql) per job, which
 * takes each order's row lock, re-checks that the recovery, its step message, the chosen address and
 * the sends the daily cap counts in its window (the customer's, and those to the chosen address under
 * other customer ids) are as read, and records the message as `sending`.
 * Its rows: attempts per claimed job (by `i`); null where something changed. It fails as a whole
 * (nothing claimed) or not at all. The caller sends it with the send-time read (guarded-send.ts
 * claimThenRead).
 */
export function claimStepsStatement(claims: Array<ClaimParams & { i: number }>): SQL {
  return sql`select j.i, recoup_claim_step(
          p_recovery_id => j.recovery_id, p_wake_seq => j.wake_seq, p_step => j.step,
          p_message_id => j.message_id, p_seen_message_updated_at => j.seen_message_updated_at,
          p_channel => j.channel, p_to => j.to_address, p_template => j.template, p_locale => j.locale,
          p_link_token => j.link_token, p_link_expires_at => j.link_expires_at, p_claim_id => j.claim_id,
          p_now => j.now, p_cap_since => j.cap_since, p_cap_seen => j.cap_seen) as attempts
        from jsonb_to_recordset(${JSON.stringify(claims)}::jsonb)
          as j(i integer, recovery_id text, wake_seq integer, step integer, message_id text,
               seen_message_updated_at timestamptz, channel text, to_address text, template text, locale text,
               link_token text, link_expires_at timestamptz, claim_id text, now timestamptz,
               cap_since timestamptz, cap_seen bigint[])`;
}

/**
 * The locked path's read of one wake-up, inside its transaction: the order's row lock first (the
 * lock the payment path takes), then the recovery, its cadence, the step message (locked), the
 * customer and their suppressions, the daily cap's locks (per customer and per address) with the
 * sends it counts, and the circuits of the step's link. Stops after the recovery when that already
 * decides the wake-up.
 */
export async function readLocked(
  tx: Tx,
  opts: {
    cadences: CadenceBook;
    circuits: CircuitHold | undefined;
    /** A `sending` claim older than this belongs to a dead worker. */
    claimStaleAfterMs: number;
    now: Date;
  },
  job: { recoveryId: string; wakeSeq: number },
): Promise<StepRead> {
  const [order] = await rows<OrderRow & ChargeRow & { items: OrderItem[] | null; last_failure_code: string | null }>(
    tx,
    sql`select o.id, o.customer_id, o.status, o.amount::text as amount, o.currency, o.description, o.coupon_code,
               o.items, o.last_failure_code, o.coupon_discount_amount::text as coupon_discount_amount,
               o.coupon_expires_at, i.amount::text as incentive_amount, i.granted_at as incentive_granted_at
        from orders o left join incentives i on i.order_id = o.id
        where o.id = (select order_id from recoveries where id = ${job.recoveryId})
        for update of o`,
  );
  const [recovery] = await rows<RecoveryRow>(tx, sql`select * from recoveries where id = ${job.recoveryId}`);
  const snapshot: StepSnapshot = {
    wakeSeq: job.wakeSeq,
    recovery,
    order,
    cadence: undefined,
    message: undefined,
    customer: undefined,
    suppressions: new Map(),
    recentSends: [],
    addressSends: new Map(),
    circuits: [],
  };
  if (!recovery || !order || decideHead(snapshot)) {
    return { snapshot, customerName: undefined, items: null, lastFailureCode: null, chargeBasis: null };
  }

  snapshot.cadence = (await opts.cadences.version(recovery.cadence_name, recovery.cadence_version, tx))?.cadence;
  // A claim's age on Postgres's clock, the clock it was written with.
  [snapshot.message] = await rows<StepMessageRow>(
    tx,
    sql`select id, status, template,
               greatest(0, ${opts.claimStaleAfterMs}
                           - extract(epoch from clock_timestamp() - lease_started_at) * 1000)::float8 as stale_in_ms
        from messages
        where recovery_id = ${recovery.id} and step = ${recovery.step_index} for update`,
  );
  const [customer] = await rows<CustomerRow>(tx, sql`select * from customers where id = ${order.customer_id}`);
  snapshot.customer = customer;
  // Suppressions match hashed addresses too: a forgotten customer's opt-out outlives their address.
  snapshot.suppressions = await findSuppressions(tx, { sms: customer?.phone, email: customer?.email });

  const sends = await readCapSends(tx, {
    customerId: order.customer_id,
    customer,
    now: opts.now,
    lock: snapshot.cadence?.maxMessagesPerDay !== undefined,
  });
  snapshot.recentSends = sends.recentSends;
  snapshot.addressSends = sends.addressSends;

  const step = snapshot.cadence?.steps[recovery.step_index];
  if (opts.circuits && step) {
    snapshot.circuits = await readCircuits(tx, linkGateways(opts.circuits, step.offerMethods, order.currency));
  }
  return {
    snapshot,
    customerName: customer?.name,
    items: order.items,
    lastFailureCode: order.last_failure_code,
    chargeBasis: chargeBasisOf(order),
  };
}

/** The sends a daily cap counts (src/cadences/step-rules.ts `capCounted`), read for one customer. */
export interface CapSends {
  /** The customer's sends (sent or in flight) in the cap's look-back. */
  recentSends: Date[];
  /** Per channel, the look-back's sends to the customer's current address there under other customer ids. */
  addressSends: Map<Channel, Date[]>;
}

/**
 * Reads the sends a daily cap counts for a customer, inside a transaction that holds the order's row
 * lock. With `lock`, first takes the advisory locks that make count-then-claim safe: two recoveries
 * of one customer hold different order locks, so without them both could count today's sends before
 * either records its claim, and both would go out past the cap. One per address does the same for two
 * customers with one address (guest checkouts). Always customer, then SMS, then email address, as
 * recoup_claim_step takes them; every path that sends within a cap (steps, fresh links) reads here.
 */
export async function readCapSends(
  tx: Tx,
  c: {
    customerId: string;
    customer: Pick<CustomerRow, 'phone' | 'email'> | undefined;
    now: Date;
    lock: boolean;
  },
): Promise<CapSends> {
  const addresses = (['sms', 'email'] as const).flatMap((channel) => {
    const address = channel === 'sms' ? c.customer?.phone : c.customer?.email;
    return address ? [{ channel, address }] : [];
  });
  if (c.lock) {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`recoup:customer:${c.customerId}`}))`);
    for (const { channel, address } of addresses) {
      await tx.execute(
        sql`select pg_advisory_xact_lock(
              hashtext('recoup:address:' || ${channel}::text || ':' || recoup_normalise_address(${channel}, ${address})))`,
      );
    }
  }
  const since = new Date(c.now.getTime() - capLookBackMs);
  const recent = await rows<{ at: Date }>(
    tx,
    sql`select coalesce(sent_at, claimed_at) as at from messages
        where customer_id = ${c.customerId} and status in ('sending', 'sent', 'delivered', 'unknown')
          and coalesce(sent_at, claimed_at) > ${since}`,
  );
  const toAddresses =
    addresses.length === 0
      ? []
      : await rows<{ channel: Channel; at: Date }>(
          tx,
          sql.join(
            addresses.map(
              ({ channel, address }) =>
                sql`(select channel, coalesce(sent_at, claimed_at) as at from messages
                     where channel = ${channel} and to_normalised = recoup_normalise_address(${channel}, ${address})
                       and status in ('sending', 'sent', 'delivered', 'unknown')
                       and coalesce(sent_at, claimed_at) > ${since} and customer_id <> ${c.customerId})`,
            ),
            sql` union all `,
          ),
        );
  return {
    recentSends: recent.map((r) => r.at),
    addressSends: new Map(
      addresses.map(({ channel }) => [channel, toAddresses.filter((r) => r.channel === channel).map((r) => r.at)]),
    ),
  };
}

/** The locked path's claim: the step message recorded as `sending` with this claim's id. Returns its attempts. */
export async function claimLocked(
  tx: Tx,
  c: {
    messageId: string;
    recoveryId: string;
    orderId: string;
    customerId: string;
    step: number;
    channel: Channel;
    template: string;
    locale: string;
    to: string;
    token: string;
    linkExpiresAt: Date;
    claimId: string;
    plannedAt: Date;
    now: Date;
  },
): Promise<number> {
  const [claimed] = await rows<{ attempts: number }>(
    tx,
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, locale, status,
                              to_address, link_token, link_expires_at, attempts, claim_id, planned_at, claimed_at,
                              lease_started_at, created_at, updated_at)
        values (${c.messageId}, ${c.recoveryId}, ${c.orderId}, ${c.customerId}, ${c.step}, ${c.channel},
                ${c.template}, ${c.locale}, 'sending', ${c.to}, ${c.token}, ${c.linkExpiresAt}, 1, ${c.claimId},
                ${c.plannedAt}, ${c.now}, clock_timestamp(), ${c.now}, ${c.now})
        on conflict (recovery_id, step) do update set
          channel = excluded.channel, template = excluded.template, locale = excluded.locale,
          status = 'sending', reason = null,
          to_address = excluded.to_address, link_token = excluded.link_token, link_expires_at = excluded.link_expires_at,
          attempts = messages.attempts + 1, claim_id = excluded.claim_id, claimed_at = excluded.claimed_at,
          lease_started_at = excluded.lease_started_at, updated_at = excluded.updated_at
        returning attempts`,
  );
  return claimed?.attempts ?? 1;
}

/** Moves the recovery to `next` (its next step, or the same one later) under a fresh wake-up id. */
export async function moveRecovery(tx: Tx, recovery: RecoveryRow, next: NextRun): Promise<Wakeup> {
  const [row] = await rows<{ wake_seq: number }>(
    tx,
    sql`update recoveries set step_index = ${next.index}, next_run_at = ${next.runAt}, wake_seq = wake_seq + 1
        where id = ${recovery.id} returning wake_seq`,
  );
  return { recoveryId: recovery.id, wakeSeq: row?.wake_seq ?? recovery.wake_seq + 1, runAt: next.runAt };
}

export async function endRecovery(tx: Tx, recoveryId: string, state: string, reason: string, now: Date) {
  await tx.execute(
    sql`update recoveries set state = ${state}, ended_reason = ${reason}, ended_at = ${now}, next_run_at = null
        where id = ${recoveryId} and state = 'active'`,
  );
}

export async function setMessageStatus(tx: Tx, messageId: string, status: string, reason: string | null, now: Date) {
  await tx.execute(
    sql`update messages set status = ${status}, reason = ${reason}, claim_id = null, updated_at = ${now}
        where id = ${messageId}`,
  );
}

/** The step's message for a decision that does not send it: suppressed, skipped, deferred or held. */
export async function recordStepMessage(
  tx: Tx,
  recovery: RecoveryRow,
  order: OrderRow,
  decision: Extract<StepDecision, { kind: 'suppress' | 'skip' | 'defer' | 'hold' }>,
  now: Date,
): Promise<string> {
  const base = {
    id: decision.messageId,
    recoveryId: recovery.id,
    orderId: order.id,
    customerId: order.customer_id,
    step: recovery.step_index,
    channel: decision.channel,
    now,
  };
  switch (decision.kind) {
    case 'suppress':
      return upsertMessage(tx, {
        ...base,
        template: decision.template,
        status: 'suppressed',
        reason: decision.suppression,
        to: decision.to,
      });
    case 'skip':
      return upsertMessage(tx, {
        ...base,
        template: decision.template,
        status: 'skipped',
        reason: decision.reason,
        to: null,
      });
    case 'defer':
      return upsertMessage(tx, {
        ...base,
        template: decision.template,
        status: 'scheduled',
        reason: decision.reason,
        to: decision.to,
        plannedAt: decision.until,
      });
    case 'hold':
      return recordHold(tx, { ...base, to: decision.to, reason: decision.reason, until: decision.until });
  }
}

async function upsertMessage(
  tx: Tx,
  m: {
    id: string | undefined;
    recoveryId: string;
    orderId: string;
    customerId: string;
    step: number;
    channel: Channel;
    template: string;
    status: string;
    reason: string | null;
    to: string | null;
    plannedAt?: Date;
    now: Date;
  },
): Promise<string> {
  const id = m.id ?? newId('msg');
  await tx.execute(
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, reason,
                              to_address, planned_at, created_at, updated_at)
        values (${id}, ${m.recoveryId}, ${m.orderId}, ${m.customerId}, ${m.step}, ${m.channel}, ${m.template},
                ${m.status}, ${m.reason}, ${m.to}, ${m.plannedAt ?? m.now}, ${m.now}, ${m.now})
        on conflict (recovery_id, step) do update set
          channel = excluded.channel, status = excluded.status, reason = excluded.reason,
          to_address = excluded.to_address, planned_at = excluded.planned_at, updated_at = excluded.updated_at`,
  );
  return id;
}

/**
 * Records a held step: the message `scheduled` with the hold's reason and the restored template,
 * and the recovery's expiry moved by the wait. The caller reschedules the wake-up to `until`.
 */
async function recordHold(
  tx: Tx,
  m: {
    id: string | undefined;
    recoveryId: string;
    orderId: string;
    customerId: string;
    step: number;
    channel: Channel;
    to: string;
    reason: string;
    until: Date;
    now: Date;
  },
): Promise<string> {
  const id = m.id ?? newId('msg');
  await tx.execute(
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, reason,
                              to_address, planned_at, created_at, updated_at)
        values (${id}, ${m.recoveryId}, ${m.orderId}, ${m.customerId}, ${m.step}, ${m.channel}, ${restoredTemplate},
                'scheduled', ${m.reason}, ${m.to}, ${m.until}, ${m.now}, ${m.now})
        on conflict (recovery_id, step) do update set
          channel = excluded.channel, template = excluded.template, status = excluded.status,
          reason = excluded.reason, to_address = excluded.to_address, planned_at = excluded.planned_at,
          claim_id = null, updated_at = excluded.updated_at`,
  );
  const waitMs = Math.max(0, m.until.getTime() - m.now.getTime());
  await tx.execute(
    sql`update recoveries set expires_at = expires_at + ${waitMs}::float8 * interval '1 millisecond'
        where id = ${m.recoveryId} and state = 'active'`,
  );
  return id;
}
