import { formatAmount, minorUnitDigits } from '../platform/format-amount.js';
import type { DashboardData } from '../reports/dashboard.js';
import type { ReportRow } from '../reports/recovery-report.js';
import { consoleStrings, labelOf, type ConsoleLocale, type DashboardStrings } from './console-strings.js';

/** One chart as Chart.js draws it: labels in the page's language, one number per label. */
export interface ChartSeries {
  labels: string[];
  data: number[];
}

/**
 * What templates/console/assets/dashboard.js draws, every label already in the page's language
 * (the script translates nothing): amounts in major units of `currency`, rates in percent.
 */
export interface DashboardCharts {
  lang: ConsoleLocale;
  currency: string;
  rateAxis: string;
  revenue: { labels: string[]; series: Array<{ label: string; data: number[] }> };
  funnel: ChartSeries;
  byStep: ChartSeries;
  byCategory: ChartSeries;
  byMethod: ChartSeries;
  holdout: ChartSeries | null;
}

/** The dashboard's charts, table and holdout line for `data`, in `locale`. */
export function dashboardView(data: DashboardData, locale: ConsoleLocale) {
  const t = consoleStrings[locale].dashboard;
  const currency = data.currency;
  const money = (amount: number, code: string | null) => (code ? formatAmount(amount, code, locale) : '–');
  const holdout = data.holdout;
  return {
    t,
    days: data.days.map((d) => ({
      ...d,
      money: Object.fromEntries(
        (
          ['recovered_amount', 'refunded_amount', 'incentive_amount', 'net_recovered_amount', 'organic_amount'] as const
        ).map((k) => [k, money(d[k], d.currency)]),
      ),
      ratePercent: d.recovery_rate === null ? '–' : `${(d.recovery_rate * 100).toFixed(1)}%`,
      costText: d.cost_amount === null ? '–' : money(d.cost_amount, d.cost_currency),
      medianText: d.median_minutes_to_recovery ?? '–',
    })),
    holdout:
      holdout && holdout.control.orders > 0 && currency
        ? {
            ...holdout,
            differenceText: percentagePoints(holdout.rate_difference, t),
            intervalText: holdout.ci95
              ? `[${percentagePoints(holdout.ci95[0], t)}, ${percentagePoints(holdout.ci95[1], t)}]`
              : '–',
            incrementalText: holdout.incremental_amount === null ? '–' : money(holdout.incremental_amount, currency),
          }
        : null,
    charts: currency ? dashboardCharts(data, currency, locale) : null,
  };
}

export function dashboardCharts(data: DashboardData, currency: string, locale: ConsoleLocale): DashboardCharts {
  const t = consoleStrings[locale].dashboard;
  const major = (minor: number) => minor / 10 ** minorUnitDigits(currency);
  const days = data.days.map((d) => d.key);
  const channels = [...new Set(data.revenueByChannel.map((r) => r.channel))];
  const amounts = new Map(data.revenueByChannel.map((r) => [`${r.day}\u0000${r.channel}`, r.amount]));
  const f = data.funnel;
  const h = data.holdout;
  return {
    lang: locale,
    currency,
    rateAxis: t.rateAxis,
    revenue: {
      labels: days,
      series: channels.map((channel) => ({
        label: labelOf(t.channels, channel),
        data: days.map((day) => major(amounts.get(`${day}\u0000${channel}`) ?? 0)),
      })),
    },
    funnel: {
      labels: [t.entered, t.messaged, t.clicked, t.recovered],
      data: [f.entered, f.messaged, f.clicked, f.recovered],
    },
    byStep: rates(data.byStep, (key) => stepLabel(key, t)),
    byCategory: rates(data.byCategory, (key) => labelOf(t.failureCategories, key)),
    byMethod: rates(data.byMethod, (key) => labelOf(t.methods, key)),
    holdout:
      h && h.control.orders > 0
        ? {
            labels: [`${t.treated} (${h.treated.orders})`, `${t.control} (${h.control.orders})`],
            data: [percent(h.treated.rate), percent(h.control.rate)],
          }
        : null,
  };
}

/** `Step 0`, `步骤 0`: the report's step key is the step's index, as the order timeline shows it. */
export function stepLabel(key: string, t: DashboardStrings): string {
  return t.step.replace('{n}', key);
}

function rates(rows: ReportRow[], label: (key: string) => string): ChartSeries {
  return { labels: rows.map((r) => label(r.key)), data: rows.map((r) => percent(r.recovery_rate)) };
}

/** A rate as a percentage with one decimal; no rate (nothing entered) draws as 0. */
function percent(rate: number | null): number {
  return rate === null ? 0 : Math.round(rate * 1000) / 10;
}

/** A rate difference as signed percentage points: `+12.5 pp`, `+12.5 个百分点`. */
function percentagePoints(value: number | null, t: DashboardStrings): string {
  if (value === null) return '–';
  return t.points.replace('{n}', `${value > 0 ? '+' : ''}${(value * 100).toFixed(1)}`);
}
