import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { holdoutReport } from './holdout-report.js';
import { presentRow, recoveryReport, reportCsv } from './recovery-report.js';
import { parseReportQuery } from './report-query.js';
import { requireScope, type KeyResolver } from '../access/auth.js';

export interface ReportRouteDeps {
  db: Db;
  clock: Clock;
  keys: KeyResolver;
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
