import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { reportCsv, type ReportRow } from '../../src/reports/recovery-report.js';

/**
 * CSV reports open in spreadsheets, and their group keys (payment methods, cadence names, failure
 * categories) come from shops' events: a cell a spreadsheet would run as a formula is written with
 * a leading ' (OWASP's CSV injection advice), while numbers stay numbers.
 */
function row(key: string, overrides: Partial<ReportRow> = {}): ReportRow {
  return {
    key,
    currency: 'USD',
    orders_entered: 1,
    messaged: 1,
    clicked: 0,
    recovered_count: 0,
    recovery_rate: 0,
    recovered_amount: 0,
    refunded_amount: 0,
    net_recovered_amount: 0,
    organic_amount: 0,
    incentive_amount: 0,
    messages_sent: 1,
    cost_amount: null,
    cost_currency: null,
    other_costs: [],
    median_minutes_to_recovery: null,
    ...overrides,
  };
}

/** The method cell of a one-row report grouped by method, as written (quoted if it must be). */
const methodCell = (key: string) => {
  const csv = reportCsv([row(key)], 'method');
  // After the header, before the rest of the row: a quoted cell may hold line breaks itself.
  const line = csv.slice(csv.indexOf('\r\n') + 2);
  return line.slice(0, line.length - ',USD,1,1,0,0,0,0,0,0,0,0,1,,,,\r\n'.length);
};

describe('report CSV cells', () => {
  it.each([
    ['=1+1', "'=1+1"],
    ['+1+1', "'+1+1"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['\tcard', "'\tcard"],
    ['\r=1', `"'\r=1"`],
    ['-1+HYPERLINK("http://evil.example","x")', `"'-1+HYPERLINK(""http://evil.example"",""x"")"`],
    ["-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"],
    [' =1+1', "' =1+1"],
    ['\u00a0\t+1', "'\u00a0\t+1"],
    ['-', "'-"],
    ['- 5', "'- 5"],
  ])('prefixes %j, a formula to a spreadsheet', (key, cell) => {
    expect(methodCell(key)).toBe(cell);
  });

  it.each([['card'], ['alipay'], ['a=b'], ['1+1'], [''], ['-12.50'], ['-3'], ['-1e-7'], ['0.75']])(
    'leaves %j as it is',
    (key) => {
      expect(methodCell(key)).toBe(key);
    },
  );

  it('leaves negative amounts numbers', () => {
    const line = reportCsv([row('card', { net_recovered_amount: -17_000, recovery_rate: 0.75 })], 'method').split(
      '\r\n',
    )[1];
    expect(line).toBe('card,USD,1,1,0,0,0.75,0,0,-17000,0,0,1,,,,');
  });

  it('any cell a spreadsheet would run comes out prefixed, whatever follows', () => {
    const number = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;
    fc.assert(
      fc.property(
        fc.stringMatching(/^\s*$/),
        fc.constantFrom('=', '+', '-', '@', '\t', '\r'),
        fc.string(),
        (space, trigger, rest) => {
          const key = `${space}${trigger}${rest}`;
          fc.pre(!number.test(key));
          const cell = methodCell(key);
          const unquoted = cell.startsWith('"') ? cell.slice(1, -1).replace(/""/g, '"') : cell;
          expect(unquoted).toBe(`'${key}`);
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
