import type { FastifyInstance } from 'fastify';
import { localeFromAcceptLanguage } from '../http/pages/page-strings.js';
import { dashboardData } from '../reports/dashboard.js';
import { parseReportQuery } from '../reports/report-query.js';
import type { ConsoleContext } from './console-context.js';
import { consoleLocales, type ConsoleLocale } from './console-strings.js';
import { dashboardView } from './dashboard-view.js';

/** The recovery dashboard (`/dashboard`), in English or Chinese, for finance and ops. */
export function dashboardRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, readers, frame, page } = ctx;

  app.get<{ Querystring: Record<string, string | undefined> }>('/dashboard', readers, async (request, reply) => {
    const { lang, ...rest } = request.query;
    // `?lang=` (the language link) wins; otherwise the browser's language.
    // The console speaks English and Simplified Chinese: any Chinese reader gets the Chinese one.
    const browser = localeFromAcceptLanguage(request.headers['accept-language']);
    const locale: ConsoleLocale = consoleLocales.find((l) => l === lang) ?? (browser.startsWith('zh') ? 'zh-CN' : 'en');
    const now = deps.clock.now();
    const query = parseReportQuery({ ...rest, group_by: undefined, format: undefined }, now);
    const data = await dashboardData(deps.db, query, now);
    const view = dashboardView(data, locale);
    const params = (extra: Record<string, string>) =>
      new URLSearchParams({
        from: query.from,
        to: query.to,
        tz: query.timezone,
        ...(data.currency ? { currency: data.currency } : {}),
        ...extra,
      }).toString();
    const otherLang = locale === 'en' ? 'zh-CN' : 'en';
    return page(
      reply,
      200,
      'dashboard',
      { ...frame(request, 'dashboard', view.t.title), lang: locale },
      {
        t: view.t,
        query: { from: query.from, to: query.to, timezone: query.timezone },
        currencies: data.currencies.map((c) => ({ code: c, selected: c === data.currency })),
        currency: data.currency,
        csvHref: `/v1/reports/recovery?${params({ format: 'csv', group_by: 'day' })}`,
        otherLanguageHref: `/dashboard?${params({ lang: otherLang })}`,
        lang: locale,
        otherLang,
        days: view.days,
        holdout: view.holdout,
        // Charts read this (an attribute, so the browser decodes it; no inline script under the CSP).
        chartData: JSON.stringify(view.charts),
      },
    );
  });
}
