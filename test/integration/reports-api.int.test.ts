import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { rows } from '../../src/db/rows.js';
import { startTestService, makeEvent, testApiKey, type TestService } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2d
steps:
  - { after: 1h, channel: sms, template: nudge }
`;

/** The report over HTTP: who may read it, JSON and CSV, and clear errors for bad queries. */
describe('GET /v1/reports/recovery', () => {
  let svc: TestService;
  let financeKey: string;
  let ingestKey: string;

  beforeAll(async () => {
    svc = await startTestService({ cadences: cadence, roles: { http: true, worker: false } });
    const ctx = { actor: 'test', at: new Date() };
    financeKey = (await createApiKey(svc.database.db, { name: 'finance', scopes: ['finance'] }, ctx)).key;
    ingestKey = (await createApiKey(svc.database.db, { name: 'shop', scopes: ['ingest'] }, ctx)).key;
    for (const [currency, amount] of [
      ['CNY', 12_900],
      ['CNY', 5_000],
      ['USD', 2_500],
    ] as const) {
      expect((await svc.post(makeEvent({}, { currency, amount }))).status).toBe(202);
    }
  });
  afterAll(async () => {
    await svc?.close();
  });

  const get = (query: string, key: string | null = financeKey, headers: Record<string, string> = {}) =>
    fetch(`${svc.url}/v1/reports/recovery${query}`, {
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    });

  it('answers finance with one row per day and currency', async () => {
    const response = await get('');
    expect(response.status).toBe(200);
    const body = (await response.json()) as { group_by: string; rows: Array<Record<string, unknown>> };
    expect(body.group_by).toBe('day');
    const today = new Date().toISOString().slice(0, 10);
    expect(body.rows.map((r) => [r.day, r.currency, r.orders_entered])).toEqual([
      [today, 'CNY', 2],
      [today, 'USD', 1],
    ]);
  });

  it('refuses requests without a key or with a key of another scope', async () => {
    expect((await get('', null)).status).toBe(401);
    const forbidden = await get('', ingestKey);
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get('content-type')).toMatch(/application\/problem\+json/);
  });

  it('sends CSV for Accept: text/csv and for format=csv', async () => {
    for (const response of [
      await get('?currency=usd', financeKey, { accept: 'text/csv' }),
      await get('?format=csv&currency=USD'),
    ]) {
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/csv/);
      expect(response.headers.get('content-disposition')).toMatch(
        /attachment; filename="recoup-recovery-day-.*-USD\.csv"/,
      );
      const lines = (await response.text()).trimEnd().split('\r\n');
      expect(lines[0]?.startsWith('day,currency,orders_entered,')).toBe(true);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toMatch(/^\d{4}-\d{2}-\d{2},USD,1,/);
    }
  });

  it('names every bad parameter in one problem, and writes nothing', async () => {
    const count = async () => rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from report_rollup`);
    const before = await count();
    const response = await get('?from=2026-13-01&group_by=year&tz=Mars/Olympus&currency=euro&extra=1', testApiKey);
    expect(response.status).toBe(400);
    const problem = (await response.json()) as { errors: Array<{ path: string }> };
    expect(problem.errors.map((i) => i.path).sort()).toEqual([
      'query.currency',
      'query.extra',
      'query.from',
      'query.group_by',
      'query.tz',
    ]);
    expect(await count()).toEqual(before);
    const reversed = await get('?from=2026-11-05&to=2026-11-01');
    expect(reversed.status).toBe(400);
  });

  it('serves the holdout comparison to finance', async () => {
    const response = await fetch(`${svc.url}/v1/reports/holdout`, {
      headers: { authorization: `Bearer ${financeKey}` },
    });
    expect(response.status).toBe(200);
    // No holdout configured: nothing to compare.
    expect(((await response.json()) as { rows: unknown[] }).rows).toEqual([]);
  });
});
