import { DateTime } from 'luxon';
import { z } from 'zod';
import { isValidTimezone } from '../platform/timezones.js';
import { validationError, zodIssues } from '../platform/errors.js';
import { reportGroupings, type ReportQuery } from './recovery-report.js';

/** The longest period one report may span. */
const maxDays = 3_660;

const date = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, { message: 'must be a date YYYY-MM-DD', abort: true })
  .refine((text) => DateTime.fromISO(text, { zone: 'UTC' }).isValid, 'is not a calendar date');

const reportQuerySchema = z.strictObject({
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
});

export type ParsedReportQuery = ReportQuery & { format: 'json' | 'csv' | undefined };

/**
 * Validates a report's query string. The period defaults to the 30 local days ending today;
 * `to` is inclusive.
 */
export function parseReportQuery(input: unknown, now: Date): ParsedReportQuery {
  const parsed = reportQuerySchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw validationError(
      parsed.error.issues.flatMap((issue) =>
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((key) => ({ path: `query.${key}`, message: 'is not a report parameter' }))
          : zodIssues(new z.ZodError([issue])).map(inQuery),
      ),
    );
  }
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
