import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adminUrl } from '../helpers/postgres.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-report-bench-'));

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

// That the finance report benchmark still runs end to end on a small dataset and reports what it
// seeded; its timings are for docs/benchmarks.md, never asserted.
describe('npm run bench:report (small)', () => {
  it('seeds, builds the rollup, reports, and writes its figures', { timeout: 180_000 }, async () => {
    const output = path.join(dir, 'report-results.json');
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/finance-report.ts'], {
      cwd: repoRoot,
      env: {
        ...process.env,
        BENCH_REPORT_RECOVERIES: '3000',
        BENCH_REPORT_OUTPUT: output,
        BENCH_DATABASE_URL: adminUrl(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    expect(code, log.slice(-4_000)).toBe(0);
    const results = JSON.parse(fs.readFileSync(output, 'utf8')) as Record<string, unknown>;
    expect(results).toMatchObject({ recoveries: 3_000, messages: 9_000 });
    // 90 days by day in UTC: a row per day and currency with activity (about 180 here).
    expect(results.report_90d_by_day_utc).toMatchObject({ rows: expect.any(Number) });
    const byDay = results.report_90d_by_day_utc as { rows: number; median_ms: number };
    expect(byDay.rows).toBeGreaterThanOrEqual(90);
    expect(Number.isFinite(byDay.median_ms)).toBe(true);
  });
});
