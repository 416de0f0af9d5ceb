import { parseArgs } from 'node:util';
import type { Config } from '../config.js';
import { RecoupError } from '../platform/errors.js';
import { openDatabase } from '../db/client.js';
import { holdoutReport } from '../reports/holdout-report.js';
import {
  presentRow,
  recoveryReport,
  reportColumns,
  reportCsv,
  type ReportGrouping,
  type ReportRow,
} from '../reports/recovery-report.js';
import { parseReportQuery } from '../reports/report-query.js';

export const reportUsage = `  report [--from DATE] [--to DATE] [--group-by day|week|month|cadence|step|channel|method|failure_category]
         [--currency CUR] [--tz ZONE] [--csv] [--holdout]
                         the recovery report (default: the last 30 days by day, UTC); --csv for a
                         spreadsheet, --holdout for treated vs control`;

/** `recoup report`: the same rows as GET /v1/reports/recovery, as a table or CSV on stdout. */
export async function reportCommand(args: string[], config: Config, now: Date): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        from: { type: 'string' },
        to: { type: 'string' },
        'group-by': { type: 'string' },
        currency: { type: 'string' },
        tz: { type: 'string' },
        csv: { type: 'boolean' },
        holdout: { type: 'boolean' },
      },
      strict: true,
    });
  } catch (err) {
    throw new RecoupError('validation', `recoup report: ${(err as Error).message}`);
  }
  const { values } = parsed;
  const query = parseReportQuery(
    { from: values.from, to: values.to, group_by: values['group-by'], currency: values.currency, tz: values.tz },
    now,
  );
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    limits: config.databaseLimits,
  });
  try {
    if (values.holdout) {
      console.log(JSON.stringify(await holdoutReport(database.db, query), null, 2));
      return 0;
    }
    // The first report after a large import rebuilds the rollup; say so rather than look stuck.
    if (!values.csv) process.stderr.write('recoup: bringing the report rollup up to date…\n');
    const rows = await recoveryReport(database.db, query, now);
    if (values.csv) {
      process.stdout.write(reportCsv(rows, query.groupBy));
      return 0;
    }
    console.log(`Recovery report ${query.from} – ${query.to} (${query.timezone}), amounts in minor units`);
    console.log(table(rows, query.groupBy));
    return 0;
  } finally {
    await database.close();
  }
}

/** A fixed-width table of the report columns (other_costs folded into cost). */
function table(rows: ReportRow[], groupBy: ReportGrouping): string {
  const columns = reportColumns(groupBy).filter((c) => c !== 'other_costs');
  const cells = rows.map((row) => {
    const presented = presentRow(row, groupBy);
    return columns.map((c) => {
      const value = presented[c];
      return value === null || value === undefined ? '–' : String(value);
    });
  });
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (values: string[]) =>
    values.map((v, i) => (i < 2 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  return [line(columns), ...cells.map(line), rows.length === 0 ? '(no activity in this period)' : '']
    .join('\n')
    .trimEnd();
}
