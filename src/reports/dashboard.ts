import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { holdoutReport, type HoldoutRow } from './holdout-report.js';
import {
  periodBounds,
  readRecoveryReport,
  recoveryReport,
  type ReportQuery,
  type ReportRow,
} from './recovery-report.js';

/** Everything the dashboard's charts and table show, for one currency (amounts never mix currencies). */
export interface DashboardData {
  currency: string | null;
  /** Order currencies with activity in the period, most orders first: the currency selector. */
  currencies: string[];
  days: ReportRow[];
  /** Recovered amount per local day and channel (the stacked revenue chart). */
  revenueByChannel: Array<{ day: string; channel: string; amount: number }>;
  funnel: { entered: number; messaged: number; clicked: number; recovered: number };
  byStep: ReportRow[];
  byCategory: ReportRow[];
  byMethod: ReportRow[];
  holdout: HoldoutRow | null;
}

export async function dashboardData(
  db: Db,
  query: Pick<ReportQuery, 'from' | 'to' | 'timezone' | 'currency'>,
  now: Date,
): Promise<DashboardData> {
  const { start, end } = periodBounds(query);
  // One refresh, then every chart reads the same state of the rollup.
  const all = await recoveryReport(db, { ...query, currency: undefined, groupBy: 'month' }, now);
  const entered = new Map<string, number>();
  for (const row of all) entered.set(row.currency, (entered.get(row.currency) ?? 0) + row.orders_entered);
  const currencies = [...entered.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([c]) => c);
  const currency = query.currency && currencies.includes(query.currency) ? query.currency : (currencies[0] ?? null);
  if (!currency) {
    return {
      currency: null,
      currencies,
      days: [],
      revenueByChannel: [],
      funnel: { entered: 0, messaged: 0, clicked: 0, recovered: 0 },
      byStep: [],
      byCategory: [],
      byMethod: [],
      holdout: null,
    };
  }

  const scoped = { ...query, currency };
  const report = (groupBy: ReportQuery['groupBy']) => readRecoveryReport(db, { ...scoped, groupBy });
  const days = await report('day');
  const byStep = await report('step');
  const byCategory = await report('failure_category');
  const byMethod = await report('method');
  const revenue = await rows<{ day: string; channel: string; amount: string }>(
    db,
    sql`select to_char(bucket at time zone ${query.timezone}, 'YYYY-MM-DD') as day, value as channel,
               sum(recovered_amount)::text as amount
          from report_rollup
         where dim = 'channel' and currency = ${currency} and bucket >= ${start} and bucket < ${end}
         group by 1, 2 having sum(recovered_amount) <> 0
         order by 1, 2`,
  );
  const [holdout] = await holdoutReport(db, scoped);
  const sum = (pick: (row: ReportRow) => number) => days.reduce((total, row) => total + pick(row), 0);
  return {
    currency,
    currencies,
    days,
    revenueByChannel: revenue.map((r) => ({ day: r.day, channel: r.channel, amount: Number(r.amount) })),
    funnel: {
      entered: sum((r) => r.orders_entered),
      messaged: sum((r) => r.messaged),
      clicked: sum((r) => r.clicked),
      recovered: sum((r) => r.recovered_count),
    },
    byStep,
    byCategory,
    byMethod,
    holdout: holdout ?? null,
  };
}
