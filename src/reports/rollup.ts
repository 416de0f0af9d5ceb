import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DbOrTx, Tx } from '../db/tx.js';

/**
 * The report rollup: additive measures per 15-minute bucket, order currency and dimension,
 * rebuilt from the base tables (recoveries, messages, clicks, payments, refunds) for the
 * buckets that changed since the last refresh. Reports read it instead of scanning millions
 * of messages. Every timezone's midnight falls on a quarter hour, so days in any zone are
 * whole sets of buckets.
 *
 * What lands in which bucket (and so in which day of a report):
 * - orders_entered: the recovery's start; messages_sent, cost, messaged: the provider's
 *   acceptance; clicked: the recovery's first click; recovered/organic amounts: the payment;
 *   refunds: the gateway's confirmation. Holdout (control) recoveries are left out: the
 *   holdout comparison reads them from `recoveries` (src/reports/holdout-report.ts).
 *
 * Changed buckets: everything since the last refresh (minus a margin for transactions that
 * committed late), payments recorded since then with an older `paid_at`, refunds confirmed
 * since then, and buckets marked dirty (a provider price arriving for an old message).
 */
export const bucketMinutes = 15;

/** Transactions commit a little after they read the clock; rows this much older than the last refresh are re-read. */
const lateCommitMarginMs = 10 * 60_000;

// Recoveries started before the currency was recorded on them take their order's.
const currencyOf = sql`coalesce(r.currency, (select o.currency from orders o where o.id = r.order_id))`;

const bucketOf = (column: SQL) => sql`date_bin('15 minutes', ${column}, timestamptz '2000-01-01 00:00:00+00')`;

/** Marks the bucket of `at` for rebuilding (a provider price changed an old message's cost). */
export async function markReportDirty(tx: DbOrTx, at: Date): Promise<void> {
  await tx.execute(
    sql`insert into report_dirty (bucket) values (${bucketOf(sql`${at}::timestamptz`)}) on conflict do nothing`,
  );
}

export interface RefreshResult {
  /** Whether everything was rebuilt (first refresh) or only the changed buckets. */
  full: boolean;
  /** Rollup rows written. */
  rows: number;
}

/**
 * Brings the rollup up to date with the base tables. Safe to call from any number of
 * processes at once (one at a time runs; the others wait and then find little to do).
 */
export async function refreshRollup(db: Db, now: Date): Promise<RefreshResult> {
  return db.transaction(async (tx) => {
    // The first build after an import or an upgrade takes minutes (117 s for a million recoveries),
    // and a refresh waits here for another one by design: neither is bounded like a request.
    await tx.execute(sql`select set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)`);
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('recoup:report_rollup'))`);
    const [state] = await rows<{ refreshed_at: Date | null }>(
      tx,
      sql`select refreshed_at from report_state where id = 1 for update`,
    );
    const dirty = await rows<{ bucket: Date }>(tx, sql`delete from report_dirty returning bucket`);
    let written: number;
    if (!state?.refreshed_at) {
      await tx.execute(sql`delete from report_rollup`);
      written = await rebuild(tx, undefined);
    } else {
      const since = new Date(state.refreshed_at.getTime() - lateCommitMarginMs);
      const [floor] = await rows<{ bucket: Date }>(tx, sql`select ${bucketOf(sql`${since}::timestamptz`)} as bucket`);
      const rangeStart = floor?.bucket ?? since;
      const late = await rows<{ bucket: Date }>(
        tx,
        sql`select distinct ${bucketOf(sql`paid_at`)} as bucket from payments
              where created_at >= ${since} and paid_at < ${rangeStart}
            union
            select distinct ${bucketOf(sql`succeeded_at`)} from refunds
              where updated_at >= ${since} and succeeded_at < ${rangeStart}`,
      );
      const scattered = [...dirty, ...late].map((d) => d.bucket.toISOString());
      const target = { rangeStart, scattered };
      await tx.execute(
        sql`delete from report_rollup
            where bucket >= ${rangeStart} or bucket = any(${`{${scattered.join(',')}}`}::timestamptz[])`,
      );
      written = await rebuild(tx, target);
    }
    await tx.execute(sql`update report_state set refreshed_at = ${now} where id = 1`);
    return { full: !state?.refreshed_at, rows: written };
  });
}

interface Target {
  /** Every bucket from here on. */
  rangeStart: Date;
  /** And these, anywhere in time (ISO strings). */
  scattered: string[];
}

/** Aggregates the facts of the target buckets (all buckets when undefined) into the rollup. */
async function rebuild(tx: Tx, target: Target | undefined): Promise<number> {
  // Plain ranges on the column, so each source is read through its time index (BitmapOr).
  const inTarget = (column: SQL) => {
    if (!target) return sql`true`;
    const ranges = [
      sql`${column} >= ${target.rangeStart}`,
      ...target.scattered.map((start) => {
        const end = new Date(Date.parse(start) + bucketMinutes * 60_000);
        return sql`(${column} >= ${start}::timestamptz and ${column} < ${end})`;
      }),
    ];
    return sql`(${sql.join(ranges, sql` or `)})`;
  };

  // Which sent message is a recovery's first (overall, and per channel) needs its earlier
  // messages too: number the messages of every recovery with a message in the target.
  // `= any(array(…))` keeps these on the messages' (recovery_id, step) and the clicks' (order_id)
  // indexes: a semi-join would tempt the planner into reading every message.
  const touched = target
    ? sql`and m.recovery_id = any(array(select distinct t.recovery_id from messages t
                                         where t.sent_at is not null and ${inTarget(sql`t.sent_at`)}))`
    : sql``;
  const touchedClicks = target
    ? sql`and c.order_id = any(array(select distinct t.order_id from clicks t where ${inTarget(sql`t.at`)}))`
    : sql``;

  const result = await rows<{ n: number }>(
    tx,
    sql`with numbered as (
          select m.recovery_id, m.step, m.channel, m.sent_at, m.cost_micros, m.cost_currency,
                 row_number() over (partition by m.recovery_id order by m.sent_at, m.id) as nth,
                 row_number() over (partition by m.recovery_id, m.channel order by m.sent_at, m.id) as nth_on_channel
            from messages m
           where m.sent_at is not null ${touched}
        ),
        first_clicks as (
          select c.recovery_id, c.at,
                 row_number() over (partition by c.recovery_id order by c.at, c.id) as nth
            from clicks c
           where true ${touchedClicks}
        ),
        facts as (
          select ${bucketOf(sql`r.started_at`)} as bucket, ${currencyOf} as currency, r.cadence_name as cadence, null::int as step,
                 null::text as channel, coalesce(r.failed_method, 'unknown') as method, r.failure_category as category,
                 '' as cost_currency, 1 as entered, 0 as step_entered, 0 as channel_entered, 0 as messaged, 0 as clicked,
                 0 as recovered_count, 0::bigint as recovered_amount, 0::bigint as refunded_amount,
                 0::bigint as organic_amount, 0::bigint as incentive_amount, 0 as messages_sent, 0::bigint as cost_micros
            from recoveries r
           where not r.holdout and ${inTarget(sql`r.started_at`)}
          union all
          select ${bucketOf(sql`m.sent_at`)}, ${currencyOf}, r.cadence_name, m.step, m.channel,
                 coalesce(r.failed_method, 'unknown'), r.failure_category, coalesce(m.cost_currency, ''),
                 0, (m.step is not null)::int, (m.nth_on_channel = 1)::int, (m.nth = 1)::int,
                 0, 0, 0, 0, 0, 0, 1, coalesce(m.cost_micros, 0)
            from numbered m join recoveries r on r.id = m.recovery_id
           where not r.holdout and ${inTarget(sql`m.sent_at`)}
          union all
          select ${bucketOf(sql`c.at`)}, ${currencyOf}, r.cadence_name, null, null,
                 coalesce(r.failed_method, 'unknown'), r.failure_category, '',
                 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0
            from first_clicks c join recoveries r on r.id = c.recovery_id
           where c.nth = 1 and not r.holdout and ${inTarget(sql`c.at`)}
          union all
          select ${bucketOf(sql`p.paid_at`)}, p.currency, r.cadence_name, p.step, p.channel,
                 coalesce(r.failed_method, 'unknown'), r.failure_category, '',
                 0, 0, 0, 0, 0,
                 (p.attribution in ('clicked', 'influenced') and not p.duplicate)::int,
                 case when p.attribution in ('clicked', 'influenced') then p.amount + p.incentive_amount else 0 end,
                 0,
                 case when p.attribution = 'organic' then p.amount else 0 end,
                 case when p.attribution in ('clicked', 'influenced') then p.incentive_amount else 0 end,
                 0, 0
            from payments p join recoveries r on r.id = p.recovery_id
           where not r.holdout and p.attribution in ('clicked', 'influenced', 'organic') and ${inTarget(sql`p.paid_at`)}
          union all
          select ${bucketOf(sql`f.succeeded_at`)}, f.currency, r.cadence_name, p.step, p.channel,
                 coalesce(r.failed_method, 'unknown'), r.failure_category, '',
                 0, 0, 0, 0, 0, 0, 0, f.amount, 0, 0, 0, 0
            from refunds f join payments p on p.id = f.payment_id join recoveries r on r.id = p.recovery_id
           where f.succeeded_at is not null and not r.holdout and p.attribution in ('clicked', 'influenced')
             and ${inTarget(sql`f.succeeded_at`)}
        ),
        inserted as (
          insert into report_rollup (bucket, currency, dim, value, cost_currency, orders_entered, messaged, clicked,
                                     recovered_count, recovered_amount, refunded_amount, organic_amount,
                                     incentive_amount, messages_sent, cost_micros)
          select f.bucket, f.currency, d.dim, d.value, f.cost_currency,
                 sum(case d.dim when 'step' then f.step_entered when 'channel' then f.channel_entered else f.entered end),
                 sum(f.messaged), sum(f.clicked), sum(f.recovered_count), sum(f.recovered_amount),
                 sum(f.refunded_amount), sum(f.organic_amount), sum(f.incentive_amount), sum(f.messages_sent),
                 sum(f.cost_micros)
            from facts f
           cross join lateral (values ('', ''), ('cadence', f.cadence), ('method', f.method),
                                      ('failure_category', f.category), ('step', (f.step + 1)::text),
                                      ('channel', f.channel)) as d(dim, value)
           where d.value is not null
           group by f.bucket, f.currency, d.dim, d.value, f.cost_currency
           -- Written in the order reports read them (one dimension, a range of buckets), so a
           -- report reads few pages; after a full build the table is laid out by dimension.
           order by d.dim, f.bucket
          returning 1
        )
        select count(*)::int as n from inserted`,
  );
  return result[0]?.n ?? 0;
}
