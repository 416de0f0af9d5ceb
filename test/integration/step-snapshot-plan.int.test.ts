import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { readSnapshots } from '../../src/recoveries/step-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// The plan, not the time: a statement that hashes the whole orders table per batch costs in
// proportion to the orders the shop has (the bench's million pending recoveries made it crawl).
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: database.url, max: 1 });
  try {
    await pool.query(
      `insert into orders (id, customer_id, amount, currency, description, status, state_at)
       select 'ord_plan' || g, 'cus_plan' || g, 12900, 'CNY', '2 items', 'pending', now()
         from generate_series(1, 50000) g`,
    );
    await pool.query('analyze orders');
  } finally {
    await pool.end();
  }
});

afterAll(async () => {
  await database?.drop();
});

describe('readSnapshots on an analysed orders table of 50,000 rows', () => {
  it('reads each order by its primary key, at a cost the planner does not JIT-compile', async () => {
    const statements: Array<{ text: string; values: unknown[] }> = [];
    const realQuery = pg.Client.prototype.query;
    const query = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
      this: pg.Client,
      ...args: unknown[]
    ) {
      const [first, second] = args as [{ text?: string; values?: unknown[] } | string, unknown[] | undefined];
      const text = typeof first === 'string' ? first : first.text;
      // node-postgres takes the values in the config or as the second argument.
      const values = typeof first === 'string' ? second : (first.values ?? second);
      if (text?.includes('recoup_step_snapshot')) statements.push({ text, values: values ?? [] });
      return (realQuery as (...a: unknown[]) => unknown).apply(this, args);
    } as never);
    try {
      const jobs = Array.from({ length: 16 }, (_, i) => ({ recoveryId: `rec_plan${i}`, wakeSeq: 0 }));
      await readSnapshots(database.db, new CadenceBook(database.db), jobs, new Date());
    } finally {
      query.mockRestore();
    }
    const [statement] = statements;
    expect(statement).toBeDefined();
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    try {
      const { rows } = await pool.query<{ 'QUERY PLAN': string }>(
        `explain ${statement?.text ?? ''}`,
        statement?.values,
      );
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(plan).not.toMatch(/Seq Scan on orders/);
      expect(plan).toMatch(/Index Scan using orders_pkey/);
      // Estimated past jit_above_cost, every batch would pay seconds of JIT compilation first.
      expect(plan).not.toMatch(/JIT/);
    } finally {
      await pool.end();
    }
  });
});
