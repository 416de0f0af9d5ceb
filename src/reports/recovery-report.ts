import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { minorUnitDigits } from '../platform/format-amount.js';
import { refreshRollup } from './rollup.js';

export const reportGroupings = [
  'day',
  'week',
  'month',
  'cadence',
  'step',
  'channel',
  'method',
  'failure_category',
] as const;
export type ReportGrouping = (typeof reportGroupings)[number];

export interface ReportQuery {
  /** First local day of the period, `YYYY-MM-DD`. */
  from: string;
  /** Last local day of the period (inclusive), `YYYY-MM-DD`. */
  to: string;
  groupBy: ReportGrouping;
  /** Only this order currency; all when undefined. */
  currency?: string | undefined;
  /** IANA zone of the day boundaries. */
  timezone: string;
}

/**
 * One group and order currency. Amounts are integer minor units of `currency`; costs are in
 * `cost_currency` (what the providers charge in), never converted.
 */
export interface ReportRow {
  /** The group: a local date (`2026-11-24`), ISO week (`2026-W48`), month (`2026-11`), cadence name, step index (0 = the first step, as in order views), channel, method or failure category. */
  key: string;
  currency: string;
  orders_entered: number;
  messaged: number;
  /** Recoveries whose retry link a person first clicked (the page's script or form, never a bare GET). */
  clicked: number;
  recovered_count: number;
  /** recovered_count / orders_entered, 4 decimals; null without entries. */
  recovery_rate: number | null;
  /** Order value won back: paid plus incentives granted, clicked + influenced payments. */
  recovered_amount: number;
  refunded_amount: number;
  /** recovered − refunded − incentives: the money kept. */
  net_recovered_amount: number;
  /** Paid before any reminder went out: beside recovered revenue, never in it. */
  organic_amount: number;
  incentive_amount: number;
  messages_sent: number;
  /** Minor units of cost_currency, rounded half up from the exact sum; null when no message was priced. */
  cost_amount: number | null;
  cost_currency: string | null;
  /** Costs in further currencies, when providers charged in more than one. */
  other_costs: Array<{ amount: number; currency: string }>;
  median_minutes_to_recovery: number | null;
}

const dimensionOf: Record<ReportGrouping, string> = {
  day: '',
  week: '',
  month: '',
  cadence: 'cadence',
  step: 'step',
  channel: 'channel',
  method: 'method',
  failure_category: 'failure_category',
};

/** The group key of an instant column, in the report's timezone. */
function timeKey(groupBy: 'day' | 'week' | 'month', column: SQL, timezone: string): SQL {
  const local = sql`(${column} at time zone ${timezone})`;
  if (groupBy === 'day') return sql`to_char(${local}, 'YYYY-MM-DD')`;
  if (groupBy === 'week') return sql`to_char(${local}, 'IYYY-"W"IW')`;
  return sql`to_char(${local}, 'YYYY-MM')`;
}

/** The period as instants: local midnight of `from` up to local midnight after `to`. */
export function periodBounds(query: Pick<ReportQuery, 'from' | 'to' | 'timezone'>): { start: SQL; end: SQL } {
  return {
    start: sql`((${query.from}::date)::timestamp at time zone ${query.timezone})`,
    end: sql`(((${query.to}::date) + 1)::timestamp at time zone ${query.timezone})`,
  };
}

/**
 * The recovery report: refreshes the rollup, then reads it (and, for the medians, the
 * recovered recoveries of the period). Rows are ordered by key, then currency.
 */
export async function recoveryReport(db: Db, query: ReportQuery, now: Date): Promise<ReportRow[]> {
  await refreshRollup(db, now);
  return readRecoveryReport(db, query);
}

/** The report from the rollup as it stands: for callers that refreshed it just before (the dashboard). */
export async function readRecoveryReport(db: Db, query: ReportQuery): Promise<ReportRow[]> {
  const { start, end } = periodBounds(query);
  const currencyFilter = query.currency ? sql`and currency = ${query.currency}` : sql``;
  const key =
    query.groupBy === 'day' || query.groupBy === 'week' || query.groupBy === 'month'
      ? timeKey(query.groupBy, sql`bucket`, query.timezone)
      : query.groupBy === 'step'
        ? // The rollup counts steps from 1; reports name a step by its index, as orders and the console do.
          sql`(value::int - 1)::text`
        : sql`value`;

  const sums = await rows<{
    key: string;
    currency: string;
    cost_currency: string;
    orders_entered: string;
    messaged: string;
    clicked: string;
    recovered_count: string;
    recovered_amount: string;
    refunded_amount: string;
    organic_amount: string;
    incentive_amount: string;
    messages_sent: string;
    cost_micros: string;
  }>(
    db,
    sql`select ${key} as key, currency, cost_currency,
               sum(orders_entered)::text as orders_entered, sum(messaged)::text as messaged,
               sum(clicked)::text as clicked, sum(recovered_count)::text as recovered_count,
               sum(recovered_amount)::text as recovered_amount, sum(refunded_amount)::text as refunded_amount,
               sum(organic_amount)::text as organic_amount, sum(incentive_amount)::text as incentive_amount,
               sum(messages_sent)::text as messages_sent, sum(cost_micros)::text as cost_micros
          from report_rollup
         where dim = ${dimensionOf[query.groupBy]} and bucket >= ${start} and bucket < ${end} ${currencyFilter}
         group by 1, 2, 3`,
  );

  const medians = await medianMinutes(db, query, start, end);
  const byGroup = new Map<string, ReportRow>();
  for (const s of sums) {
    const id = `${s.key}\u0000${s.currency}`;
    let row = byGroup.get(id);
    if (!row) {
      row = emptyRow(s.key, s.currency);
      row.median_minutes_to_recovery = medians.get(id) ?? null;
      byGroup.set(id, row);
    }
    row.orders_entered += Number(s.orders_entered);
    row.messaged += Number(s.messaged);
    row.clicked += Number(s.clicked);
    row.recovered_count += Number(s.recovered_count);
    row.recovered_amount += Number(s.recovered_amount);
    row.refunded_amount += Number(s.refunded_amount);
    row.organic_amount += Number(s.organic_amount);
    row.incentive_amount += Number(s.incentive_amount);
    row.messages_sent += Number(s.messages_sent);
    const micros = Number(s.cost_micros);
    if (s.cost_currency !== '' && micros > 0) {
      row.other_costs.push({ amount: microsToMinor(micros, s.cost_currency), currency: s.cost_currency });
    }
  }
  const result = [...byGroup.values()];
  for (const row of result) {
    row.recovery_rate = row.orders_entered > 0 ? round(row.recovered_count / row.orders_entered, 4) : null;
    row.net_recovered_amount = row.recovered_amount - row.refunded_amount - row.incentive_amount;
    // The biggest cost currency is the row's; any others stay beside it, unconverted.
    row.other_costs.sort((a, b) => b.amount - a.amount || a.currency.localeCompare(b.currency));
    const main = row.other_costs.shift();
    row.cost_amount = main?.amount ?? null;
    row.cost_currency = main?.currency ?? null;
  }
  return result.sort((a, b) => compareKeys(a.key, b.key, query.groupBy) || a.currency.localeCompare(b.currency));
}

async function medianMinutes(db: Db, query: ReportQuery, start: SQL, end: SQL): Promise<Map<string, number>> {
  const grouping = query.groupBy;
  const key =
    grouping === 'day' || grouping === 'week' || grouping === 'month'
      ? timeKey(grouping, sql`recovered_at`, query.timezone)
      : {
          cadence: sql`cadence_name`,
          step: sql`recovered_step::text`,
          channel: sql`recovered_channel`,
          method: sql`coalesce(failed_method, 'unknown')`,
          failure_category: sql`failure_category`,
        }[grouping];
  const currencyFilter = query.currency ? sql`and currency = ${query.currency}` : sql``;
  const found = await rows<{ key: string | null; currency: string; median: string }>(
    db,
    sql`select ${key} as key, currency,
               (percentile_cont(0.5) within group (order by extract(epoch from recovered_at - started_at) / 60))::text
                 as median
          from recoveries
         where recovered_at >= ${start} and recovered_at < ${end} and not holdout
           and recovered_attribution in ('clicked', 'influenced') ${currencyFilter}
         group by 1, 2`,
  );
  return new Map(
    found.filter((f) => f.key !== null).map((f) => [`${f.key}\u0000${f.currency}`, round(Number(f.median), 1)]),
  );
}

function emptyRow(key: string, currency: string): ReportRow {
  return {
    key,
    currency,
    orders_entered: 0,
    messaged: 0,
    clicked: 0,
    recovered_count: 0,
    recovery_rate: null,
    recovered_amount: 0,
    refunded_amount: 0,
    net_recovered_amount: 0,
    organic_amount: 0,
    incentive_amount: 0,
    messages_sent: 0,
    cost_amount: null,
    cost_currency: null,
    other_costs: [],
    median_minutes_to_recovery: null,
  };
}

/** Micros of a major unit to minor units, half up (the sum is exact; only the total is rounded). */
export function microsToMinor(micros: number, currency: string): number {
  const per = 10 ** (6 - minorUnitDigits(currency));
  return Math.floor((micros + per / 2) / per);
}

function round(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}

function compareKeys(a: string, b: string, groupBy: ReportGrouping): number {
  if (groupBy === 'step') return Number(a) - Number(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The CSV columns, in order: the group column is named after the grouping. */
export function reportColumns(groupBy: ReportGrouping): string[] {
  return [
    groupBy,
    'currency',
    'orders_entered',
    'messaged',
    'clicked',
    'recovered_count',
    'recovery_rate',
    'recovered_amount',
    'refunded_amount',
    'net_recovered_amount',
    'organic_amount',
    'incentive_amount',
    'messages_sent',
    'cost_amount',
    'cost_currency',
    'other_costs',
    'median_minutes_to_recovery',
  ];
}

/** A row as the API shows it: the key under the grouping's name (`{ "day": "2026-11-24", … }`). */
export function presentRow(row: ReportRow, groupBy: ReportGrouping): Record<string, unknown> {
  const { key, ...rest } = row;
  return { [groupBy]: key, ...rest };
}

/** RFC 4180 CSV with a header row; cells that a spreadsheet would run as formulas are quoted with a leading '. */
export function reportCsv(result: ReportRow[], groupBy: ReportGrouping): string {
  const columns = reportColumns(groupBy);
  const lines = [columns.join(',')];
  for (const row of result) {
    const presented = presentRow(row, groupBy);
    lines.push(
      columns
        .map((column) => {
          const value = presented[column];
          if (column === 'other_costs')
            return csvCell(row.other_costs.map((c) => `${c.amount} ${c.currency}`).join('; '));
          return csvCell(value === null || value === undefined ? '' : String(value));
        })
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * Spreadsheets run a cell that starts with = + - @ TAB or CR as a formula, also behind leading
 * spaces and also when it starts like a number (`-1+HYPERLINK(…)`). Such a cell gets a leading '
 * (OWASP's CSV injection advice) unless it is a whole number, like a negative amount.
 */
const formulaStart = /^\s*[=+\-@\t\r]/;
const wholeNumber = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;

function csvCell(text: string): string {
  const safe = formulaStart.test(text) && !wholeNumber.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
