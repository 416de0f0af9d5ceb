import type { FastifyInstance } from 'fastify';
import { formatAmount } from '../platform/format-amount.js';
import { dashboardData, dashboardStrings, type DashboardLocale } from '../reports/dashboard.js';
import { parseReportQuery } from '../reports/report-query.js';
import type { ConsoleContext } from './console-context.js';

/** The recovery dashboard (`/dashboard`), in English or Chinese, for finance and ops. */
export function dashboardRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, readers, frame, page } = ctx;

  app.get<{ Querystring: Record<string, string | undefined> }>('/dashboard', readers, async (request, reply) => {
    const { lang, ...rest } = request.query;
    const locale: DashboardLocale =
      lang === 'zh-CN' || (!lang && /^zh\b/i.test(request.headers['accept-language'] ?? '')) ? 'zh-CN' : 'en';
    const now = deps.clock.now();
    const query = parseReportQuery({ ...rest, group_by: undefined, format: undefined }, now);
    const data = await dashboardData(deps.db, query, now);
    const t = dashboardStrings[locale];
    const params = (extra: Record<string, string>) =>
      new URLSearchParams({
        from: query.from,
        to: query.to,
        tz: query.timezone,
        ...(data.currency ? { currency: data.currency } : {}),
        ...extra,
      }).toString();
    const f = { ...frame(request, 'dashboard', t.title ?? 'Dashboard'), lang: locale };
    return page(reply, 200, 'dashboard', f, {
      t,
      query: { from: query.from, to: query.to, timezone: query.timezone },
      currencies: data.currencies.map((c) => ({ code: c, selected: c === data.currency })),
      currency: data.currency,
      csvHref: `/v1/reports/recovery?${params({ format: 'csv', group_by: 'day' })}`,
      otherLanguageHref: `/dashboard?${params({ lang: locale === 'en' ? 'zh-CN' : 'en' })}`,
      lang: locale,
      otherLang: locale === 'en' ? 'zh-CN' : 'en',
      days: data.days.map((d) => ({
        ...d,
        money: Object.fromEntries(
          (
            [
              'recovered_amount',
              'refunded_amount',
              'incentive_amount',
              'net_recovered_amount',
              'organic_amount',
            ] as const
          ).map((k) => [k, formatAmount(d[k], d.currency, locale)]),
        ),
        ratePercent: d.recovery_rate === null ? '–' : `${(d.recovery_rate * 100).toFixed(1)}%`,
        costText:
          d.cost_amount === null || !d.cost_currency ? '–' : formatAmount(d.cost_amount, d.cost_currency, locale),
        medianText: d.median_minutes_to_recovery ?? '–',
      })),
      holdout:
        data.holdout && data.holdout.control.orders > 0 && data.currency
          ? {
              ...data.holdout,
              differenceText: percentagePoints(data.holdout.rate_difference),
              intervalText: data.holdout.ci95
                ? `[${percentagePoints(data.holdout.ci95[0])}, ${percentagePoints(data.holdout.ci95[1])}]`
                : '–',
              incrementalText:
                data.holdout.incremental_amount === null
                  ? '–'
                  : formatAmount(data.holdout.incremental_amount, data.currency, locale),
            }
          : null,
      // Charts read this (an attribute, so the browser decodes it; no inline script under the CSP).
      chartData: JSON.stringify({ ...data, strings: t, lang: locale }),
    });
  });
}

/** A rate difference as signed percentage points: `+12.5 pp`. */
function percentagePoints(value: number | null): string {
  if (value === null) return '–';
  return `${value > 0 ? '+' : ''}${(value * 100).toFixed(1)} pp`;
}
