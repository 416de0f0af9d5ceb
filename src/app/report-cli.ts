import { parseArgs } from 'node:util';
import type { Config } from '../config.js';
import { isRecoupError, RecoupError, validationError } from '../platform/errors.js';
import { openDatabase } from '../db/client.js';
import { holdoutReport } from '../reports/holdout-report.js';
import { presentRow, recoveryReport, reportCsv } from '../reports/recovery-report.js';
import { parseReportQuery, type ParsedReportQuery } from '../reports/report-query.js';
import { outputWidth, reportTable } from './report-table.js';

export const reportUsage = `  report [--from DATE] [--to DATE] [--group-by day|week|month|cadence|step|channel|method|failure_category]
         [--currency CUR] [--tz ZONE] [--wide | --csv | --json] [--holdout]
                         the recovery report (default: the last 30 days by day, UTC) as a table that
                         fits the terminal (COLUMNS, else 100 characters); --wide for every column,
                         --csv for a spreadsheet, --json as the API answers, --holdout for treated vs control`;

/** The report's query parameters by the flags that set them: errors name what the person typed. */
const flagOf: Record<string, string> = {
  from: '--from',
  to: '--to',
  group_by: '--group-by',
  currency: '--currency',
  tz: '--tz',
};

/** `recoup report`: the same rows as GET /v1/reports/recovery, as a table, CSV or JSON on stdout. */
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
        json: { type: 'boolean' },
        wide: { type: 'boolean' },
        holdout: { type: 'boolean' },
      },
      strict: true,
    });
  } catch (err) {
    throw new RecoupError('validation', `report: ${(err as Error).message}`);
  }
  const { values } = parsed;
  if ([values.csv, values.json, values.wide].filter(Boolean).length > 1) {
    throw new RecoupError('validation', 'report: choose one of --wide, --csv and --json');
  }
  const query = reportQuery(
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
    const forPeople = !values.csv && !values.json;
    // The first report after a large import rebuilds the rollup; say so rather than look stuck.
    if (forPeople) process.stderr.write('recoup: bringing the report rollup up to date…\n');
    const rows = await recoveryReport(database.db, query, now);
    if (values.csv) {
      process.stdout.write(reportCsv(rows, query.groupBy));
      return 0;
    }
    if (values.json) {
      console.log(JSON.stringify({ rows: rows.map((row) => presentRow(row, query.groupBy)) }, null, 2));
      return 0;
    }
    console.log(`Recovery report ${query.from} – ${query.to} (${query.timezone}), amounts in minor units`);
    console.log(
      reportTable(rows, query.groupBy, { width: outputWidth(process.env, process.stdout), wide: values.wide }),
    );
    return 0;
  } finally {
    await database.close();
  }
}

/** parseReportQuery, its problems named by flag (`--group-by`) rather than by query parameter. */
function reportQuery(input: Record<string, string | undefined>, now: Date): ParsedReportQuery {
  try {
    return parseReportQuery(input, now);
  } catch (err) {
    if (!isRecoupError(err, 'validation')) throw err;
    throw validationError(
      err.issues.map((issue) => {
        const parameter = issue.path.replace(/^query\.?/, '');
        return { ...issue, path: flagOf[parameter] ?? (parameter || 'options') };
      }),
      'Invalid options for recoup report',
    );
  }
}
