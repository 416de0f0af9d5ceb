import { presentRow, reportColumns, type ReportGrouping, type ReportRow } from '../reports/recovery-report.js';

/**
 * `recoup report` on a terminal: the report rows as a table that fits `width` characters. Every
 * column of the CSV is 250-odd characters wide, so by default the table keeps the figures people
 * read first under short headers and leaves out the rest (saying so); when even those do not fit
 * (a phone's SSH session), each row is printed as a block of `column value` lines instead.
 * `wide` prints every column under its CSV name, however wide.
 */

export interface ReportTableOptions {
  /** Characters per line. */
  width: number;
  /** Every column under its CSV name, whatever the width. */
  wide?: boolean;
}

/** The narrow table's columns: header and cell. */
interface Column {
  header: string;
  cell: (row: ReportRow) => string;
}

const dash = '–';
const text = (value: number | null) => (value === null ? dash : String(value));

/** In the order the narrow table shows them; `keep` ranks what stays when space runs out (1 first). */
const narrowColumns: Array<Column & { id: string; keep: number }> = [
  { id: 'currency', keep: 1, header: 'currency', cell: (r) => r.currency },
  { id: 'orders_entered', keep: 1, header: 'entered', cell: (r) => text(r.orders_entered) },
  { id: 'messaged', keep: 3, header: 'messaged', cell: (r) => text(r.messaged) },
  { id: 'clicked', keep: 4, header: 'clicked', cell: (r) => text(r.clicked) },
  { id: 'recovered_count', keep: 1, header: 'recovered', cell: (r) => text(r.recovered_count) },
  {
    id: 'recovery_rate',
    keep: 1,
    header: 'rate',
    cell: (r) => (r.recovery_rate === null ? dash : `${(r.recovery_rate * 100).toFixed(1)}%`),
  },
  { id: 'recovered_amount', keep: 1, header: 'recovered_amt', cell: (r) => text(r.recovered_amount) },
  { id: 'refunded_amount', keep: 7, header: 'refunded_amt', cell: (r) => text(r.refunded_amount) },
  { id: 'net_recovered_amount', keep: 2, header: 'net_amt', cell: (r) => text(r.net_recovered_amount) },
  { id: 'organic_amount', keep: 10, header: 'organic_amt', cell: (r) => text(r.organic_amount) },
  { id: 'incentive_amount', keep: 9, header: 'incentive_amt', cell: (r) => text(r.incentive_amount) },
  { id: 'messages_sent', keep: 5, header: 'sent', cell: (r) => text(r.messages_sent) },
  {
    id: 'cost',
    keep: 6,
    header: 'cost',
    cell: (r) =>
      r.cost_amount === null
        ? dash
        : `${r.cost_amount} ${r.cost_currency ?? ''}${r.other_costs.length ? ` +${r.other_costs.length}` : ''}`,
  },
  { id: 'median', keep: 8, header: 'median_min', cell: (r) => text(r.median_minutes_to_recovery) },
];

const gap = '  ';
const noActivity = '(no activity in this period)';

export function reportTable(rows: ReportRow[], groupBy: ReportGrouping, options: ReportTableOptions): string {
  if (options.wide) return wideTable(rows, groupBy);
  if (rows.length === 0) return noActivity;
  const keyColumn: Column = { header: groupBy, cell: (r) => r.key };
  const measured = narrowColumns.map((column) => ({ ...column, width: widthOf(column, rows) }));
  const chosen = new Set<string>();
  let total = widthOf(keyColumn, rows);
  for (const rank of [...new Set(measured.map((c) => c.keep))].sort((a, b) => a - b)) {
    const group = measured.filter((c) => c.keep === rank);
    const needed = group.reduce((sum, c) => sum + gap.length + c.width, 0);
    if (total + needed > options.width) {
      // Without the figures of the first rank there is no table worth reading: one block per row.
      if (rank === 1) return vertical(rows, groupBy);
      break;
    }
    total += needed;
    for (const c of group) chosen.add(c.id);
  }
  const columns = [keyColumn, ...measured.filter((c) => chosen.has(c.id))];
  const left = narrowColumns.length - chosen.size;
  const table = aligned(
    columns.map((c) => c.header),
    rows.map((row) => columns.map((c) => c.cell(row))),
    2,
  );
  return left > 0 ? `${table}\n(${left} more columns with --wide, --csv or --json)` : table;
}

/** Every CSV column under its own name (other_costs folded into cost), as wide as it takes. */
function wideTable(rows: ReportRow[], groupBy: ReportGrouping): string {
  const columns = reportColumns(groupBy).filter((c) => c !== 'other_costs');
  const cells = rows.map((row) => {
    const presented = presentRow(row, groupBy);
    return columns.map((c) => {
      const value = presented[c];
      return value === null || value === undefined ? dash : String(value);
    });
  });
  const table = aligned(columns, cells, 2);
  return rows.length === 0 ? `${table}\n${noActivity}` : table;
}

/** One block per row: `column  value` lines under the row's group, every column of the CSV. */
function vertical(rows: ReportRow[], groupBy: ReportGrouping): string {
  const columns = reportColumns(groupBy).filter((c) => c !== groupBy && c !== 'currency');
  const nameWidth = Math.max(...columns.map((c) => c.length));
  return rows
    .map((row) => {
      const presented = presentRow(row, groupBy);
      const lines = columns.map((c) => {
        const value =
          c === 'other_costs' ? row.other_costs.map((o) => `${o.amount} ${o.currency}`).join(', ') : presented[c];
        return `  ${c.padEnd(nameWidth)}  ${value === null || value === undefined || value === '' ? dash : String(value)}`;
      });
      return [`${groupBy} ${row.key} (${row.currency})`, ...lines].join('\n');
    })
    .join('\n\n');
}

function widthOf(column: Column, rows: ReportRow[]): number {
  return Math.max(column.header.length, ...rows.map((r) => column.cell(r).length));
}

/** Columns padded to their widest cell: the first `textColumns` to the left, numbers to the right. */
function aligned(headers: string[], cells: string[][], textColumns: number): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i < textColumns ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0)))
      .join(gap)
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

/**
 * The width to fit: `COLUMNS` when set (scripts, `COLUMNS=80 recoup report`), else the terminal's,
 * else 100 (output to a file or a pipe).
 */
export function outputWidth(env: NodeJS.ProcessEnv, stdout: { isTTY?: boolean; columns?: number }): number {
  const fromEnv = Number(env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  if (stdout.isTTY && stdout.columns && stdout.columns > 0) return stdout.columns;
  return 100;
}
