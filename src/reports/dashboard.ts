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

export const dashboardLocales = ['en', 'zh-CN'] as const;
export type DashboardLocale = (typeof dashboardLocales)[number];

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

/** The dashboard's words. Charts get theirs through the page's data attribute. */
export const dashboardStrings: Record<DashboardLocale, Record<string, string>> = {
  en: {
    title: 'Recovered revenue',
    period: 'Period',
    from: 'From',
    to: 'To',
    currency: 'Currency',
    timezone: 'Timezone',
    show: 'Show',
    csv: 'Download CSV',
    language: '中文',
    revenueByDay: 'Recovered revenue per day, by channel',
    funnel: 'Recovery funnel',
    entered: 'Entered',
    messaged: 'Messaged',
    clicked: 'Clicked',
    recovered: 'Paid',
    rateByStep: 'Recovery rate by cadence step',
    rateByCategory: 'Recovery rate by failure category',
    rateByMethod: 'Recovery rate by payment method',
    holdout: 'Treated vs holdout',
    treated: 'Treated',
    control: 'Holdout',
    noHoldout: 'No holdout orders in this period: set HOLDOUT_PERCENT or a cadence’s holdout_percent.',
    lift: 'Difference in recovery rate',
    interval: '95 % interval',
    incremental: 'Incremental recovered revenue',
    significant: 'significant',
    notSignificant: 'not significant yet',
    table: 'By day',
    day: 'Day',
    ordersEntered: 'Orders',
    recoveredCount: 'Recovered',
    rate: 'Rate',
    recoveredAmount: 'Recovered',
    refunded: 'Refunded',
    incentives: 'Incentives',
    net: 'Net',
    organic: 'Organic',
    messages: 'Messages',
    cost: 'Cost',
    median: 'Median min.',
    empty: 'No recoveries in this period.',
    step: 'Step',
    rateAxis: 'Recovery rate (%)',
  },
  'zh-CN': {
    title: '挽回收入',
    period: '期间',
    from: '开始',
    to: '结束',
    currency: '币种',
    timezone: '时区',
    show: '查看',
    csv: '下载 CSV',
    language: 'English',
    revenueByDay: '每日挽回收入（按渠道）',
    funnel: '挽回漏斗',
    entered: '进入挽回',
    messaged: '已发送提醒',
    clicked: '已点击链接',
    recovered: '已付款',
    rateByStep: '各步骤挽回率',
    rateByCategory: '各失败原因挽回率',
    rateByMethod: '各支付方式挽回率',
    holdout: '实验组与对照组',
    treated: '实验组',
    control: '对照组',
    noHoldout: '本期间没有对照组订单：请设置 HOLDOUT_PERCENT 或流程的 holdout_percent。',
    lift: '挽回率差异',
    interval: '95% 置信区间',
    incremental: '增量挽回收入',
    significant: '显著',
    notSignificant: '尚不显著',
    table: '按日明细',
    day: '日期',
    ordersEntered: '订单',
    recoveredCount: '已挽回',
    rate: '挽回率',
    recoveredAmount: '挽回金额',
    refunded: '退款',
    incentives: '优惠',
    net: '净额',
    organic: '自然付款',
    messages: '消息',
    cost: '成本',
    median: '中位分钟',
    empty: '本期间没有挽回记录。',
    step: '步骤',
    rateAxis: '挽回率 (%)',
  },
};
