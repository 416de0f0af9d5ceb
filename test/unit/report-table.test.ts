import { describe, expect, it } from 'vitest';
import { outputWidth, reportTable } from '../../src/app/report-table.js';
import type { ReportRow } from '../../src/reports/recovery-report.js';

function row(key: string, overrides: Partial<ReportRow> = {}): ReportRow {
  return {
    key,
    currency: 'CNY',
    orders_entered: 12_345,
    messaged: 11_000,
    clicked: 4_321,
    recovered_count: 2_345,
    recovery_rate: 0.19,
    recovered_amount: 123_456_789,
    refunded_amount: 1_234_500,
    net_recovered_amount: 122_000_000,
    organic_amount: 9_876_500,
    incentive_amount: 222_289,
    messages_sent: 20_000,
    cost_amount: 1_234_567,
    cost_currency: 'USD',
    other_costs: [{ amount: 1_000, currency: 'EUR' }],
    median_minutes_to_recovery: 1_234.5,
    ...overrides,
  };
}

const rows = [row('2026-11-01'), row('2026-11-02', { recovery_rate: null, cost_amount: null, cost_currency: null })];
const longest = (text: string) => Math.max(...text.split('\n').map((line) => line.length));

describe('recoup report’s table', () => {
  it('fits 100 columns with the figures read first, and says what it left out', () => {
    const table = reportTable(rows, 'day', { width: 100 });
    expect(longest(table)).toBeLessThanOrEqual(100);
    const [header = '', first = ''] = table.split('\n');
    expect(header.split(/\s+/).slice(0, 7)).toEqual([
      'day',
      'currency',
      'entered',
      'messaged',
      'clicked',
      'recovered',
      'rate',
    ]);
    expect(header).toContain('recovered_amt');
    expect(header).toContain('net_amt');
    expect(first).toMatch(/^2026-11-01\s+CNY\s+12345\s+11000\s+4321\s+2345\s+19\.0%\s+123456789\s/);
    expect(table).toMatch(/\(\d+ more columns with --wide, --csv or --json\)$/);
  });

  it('drops more columns on a narrower terminal, and shows each row as a block when even the first do not fit', () => {
    const narrow = reportTable(rows, 'day', { width: 76 });
    expect(longest(narrow)).toBeLessThanOrEqual(76);
    expect(narrow.split('\n')[0]?.split(/\s+/)).toEqual([
      'day',
      'currency',
      'entered',
      'recovered',
      'rate',
      'recovered_amt',
      'net_amt',
    ]);

    const phone = reportTable(rows, 'failure_category', { width: 40 });
    expect(longest(phone)).toBeLessThanOrEqual(40);
    expect(phone.split('\n').slice(0, 3)).toEqual([
      'failure_category 2026-11-01 (CNY)',
      '  orders_entered              12345',
      '  messaged                    11000',
    ]);
    expect(phone).toContain('  other_costs                 1000 EUR');
    expect(phone).toContain('\n\nfailure_category 2026-11-02 (CNY)\n');
  });

  it('prints every column under its CSV name with --wide', () => {
    const wide = reportTable(rows, 'channel', { width: 100, wide: true });
    expect(wide.split('\n')[0]).toMatch(
      /^channel\s+currency\s+orders_entered\s+messaged\s.*median_minutes_to_recovery$/,
    );
    expect(longest(wide)).toBeGreaterThan(200);
    expect(wide).not.toContain('more columns');
  });

  it('says so when the period had no activity', () => {
    expect(reportTable([], 'day', { width: 100 })).toBe('(no activity in this period)');
    expect(reportTable([], 'day', { width: 100, wide: true })).toMatch(
      /^day\s+currency\s+orders_entered\s.*\n\(no activity in this period\)$/,
    );
  });

  it('fits COLUMNS, else the terminal, else 100 characters', () => {
    expect(outputWidth({ COLUMNS: '80' }, { isTTY: true, columns: 200 })).toBe(80);
    expect(outputWidth({}, { isTTY: true, columns: 132 })).toBe(132);
    expect(outputWidth({ COLUMNS: 'wide' }, { isTTY: false })).toBe(100);
    expect(outputWidth({}, {})).toBe(100);
  });
});
