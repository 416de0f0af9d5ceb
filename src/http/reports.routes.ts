import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DateTime } from 'luxon';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { isValidTimezone } from '../config.js';
import type { Db } from '../db/client.js';
import { validationError } from '../errors.js';
import { zodIssues } from '../orders/event-schema.js';
import { holdoutReport } from '../reports/holdout-report.js';
import {
  presentRow,
  recoveryReport,
  reportCsv,
  reportGroupings,
  type ReportQuery,
} from '../reports/recovery-report.js';
import { requireScope, type KeyResolver } from './auth.js';

export interface ReportRouteDeps {
  db: Db;
  clock: Clock;
  keys: KeyResolver;
}

/** The longest period one report may span. */
const maxDays = 3_660;

const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date YYYY-MM-DD');

const reportQuerySchema = z
  .strictObject({
    from: date.optional(),
    to: date.optional(),
    group_by: z.enum(reportGroupings).default('day'),
    currency: z
      .string()
      .regex(/^[A-Za-z]{3}$/, 'must be a 3-letter ISO 4217 code')
      .transform((c) => c.toUpperCase())
      .optional(),
    tz: z.string().default('UTC').refine(isValidTimezone, 'must be an IANA timezone, e.g. Asia/Shanghai'),
    format: z.enum(['json', 'csv']).optional(),
  })
  .superRefine((q, ctx) => {
    for (const key of ['from', 'to'] as const) {
      const value = q[key];
      if (value !== undefined && !DateTime.fromISO(value, { zone: 'UTC' }).isValid) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'is not a calendar date' });
      }
    }
  });

export type ParsedReportQuery = ReportQuery & { format: 'json' | 'csv' | undefined };

/**
 * Validates a report's query string. The period defaults to the 30 local days ending today;
 * `to` is inclusive.
 */
export function parseReportQuery(input: unknown, now: Date): ParsedReportQuery {
  const parsed = reportQuerySchema.safeParse(input ?? {});
  if (!parsed.success) throw validationError(zodIssues(parsed.error).map(inQuery));
  const q = parsed.data;
  const today = DateTime.fromJSDate(now, { zone: q.tz });
  const to = q.to ?? today.toISODate() ?? '';
  const from = q.from ?? DateTime.fromISO(to, { zone: q.tz }).minus({ days: 29 }).toISODate() ?? '';
  const days = DateTime.fromISO(to).diff(DateTime.fromISO(from), 'days').days;
  if (days < 0) throw validationError([{ path: 'query.to', message: 'must not be before from' }]);
  if (days >= maxDays) throw validationError([{ path: 'query.to', message: `a report spans at most ${maxDays} days` }]);
  return { from, to, groupBy: q.group_by, currency: q.currency, timezone: q.tz, format: q.format };
}

function inQuery(issue: { path: string; message: string }): { path: string; message: string } {
  return { ...issue, path: issue.path ? `query.${issue.path}` : 'query' };
}

function wantsCsv(request: FastifyRequest, format: 'json' | 'csv' | undefined): boolean {
  if (format) return format === 'csv';
  return /\btext\/csv\b/.test(request.headers.accept ?? '');
}

/**
 * Finance reports (scope `finance` or `ops`; console sessions too, for the dashboard's CSV button):
 * - `GET /v1/reports/recovery?from=&to=&group_by=&currency=&tz=` → `{ rows }`, or CSV with
 *   `Accept: text/csv` / `format=csv`;
 * - `GET /v1/reports/holdout?from=&to=&currency=&tz=` → treated vs control per currency.
 */
export async function reportRoutes(app: FastifyInstance, deps: ReportRouteDeps): Promise<void> {
  const readers = { onRequest: requireScope(deps.keys, 'finance', 'ops') };

  app.get('/v1/reports/recovery', readers, async (request, reply) => {
    const query = parseReportQuery(request.query, deps.clock.now());
    const rows = await recoveryReport(deps.db, query, deps.clock.now());
    reply.header('cache-control', 'no-store');
    if (wantsCsv(request, query.format)) {
      const name = `recoup-recovery-${query.groupBy}-${query.from}-${query.to}${query.currency ? `-${query.currency}` : ''}.csv`;
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${name}"`)
        .send(reportCsv(rows, query.groupBy));
    }
    return {
      from: query.from,
      to: query.to,
      timezone: query.timezone,
      group_by: query.groupBy,
      rows: rows.map((row) => presentRow(row, query.groupBy)),
    };
  });

  app.get('/v1/reports/holdout', readers, async (request, reply) => {
    const query = parseReportQuery({ ...(request.query as object), group_by: undefined }, deps.clock.now());
    reply.header('cache-control', 'no-store');
    return {
      from: query.from,
      to: query.to,
      timezone: query.timezone,
      rows: await holdoutReport(deps.db, query),
    };
  });
}
