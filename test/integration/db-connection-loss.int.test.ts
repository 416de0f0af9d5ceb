import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drizzle } from 'drizzle-orm/node-postgres';
import { openDatabase } from '../../src/db/client.js';
import { TransactionSafePool } from '../../src/db/pool.js';
import { rows } from '../../src/db/rows.js';
import { adminUrl, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { waitFor } from '../helpers/service.js';

/**
 * `pg_terminate_backend` (or a Postgres failover) while a transaction holds its connection
 * between two queries, as a send does while it waits on the provider: the transaction fails,
 * the process lives on and the pool hands out a fresh connection. pg emits the loss as an
 * 'error' event on the checked-out client; unhandled, it killed the worker process.
 */
describe('a Postgres connection terminated mid-transaction', () => {
  let template: TestDatabase;
  const admin = new pg.Client({ connectionString: adminUrl() });
  beforeAll(async () => {
    template = await createTestDatabase();
    await admin.connect();
  });
  afterAll(async () => {
    await admin.end();
    await template.drop();
  });

  it('fails that transaction only; the next query runs on a new connection', async () => {
    const errors: Error[] = [];
    const database = await openDatabase({
      url: template.url,
      dataDir: '.data/test',
      poolSize: 2,
      onError: (err) => errors.push(err),
    });
    try {
      const attempt = database.db.transaction(async (tx) => {
        const [me] = await rows<{ pid: number }>(tx, sql`select pg_backend_pid() as pid`);
        await admin.query('select pg_terminate_backend($1)', [me?.pid]);
        // Idle inside the transaction, like a send waiting for the provider's answer.
        await waitFor(() => (errors.length > 0 ? true : undefined), { what: 'the connection loss to be reported' });
        await tx.execute(sql`select 1`);
      });
      await expect(attempt).rejects.toThrow();
      expect(errors[0]?.message).toMatch(/terminat/i);
      const [after] = await rows<{ one: number }>(database.db, sql`select 1 as one`);
      expect(after).toEqual({ one: 1 });
    } finally {
      await database.close();
    }
  });

  it('gives the pool its connection back when the connection dies before the transaction begins', async () => {
    // One connection, cut right after it is checked out: drizzle's `begin` fails before the code that
    // would release it, and a plain pg.Pool then never gets that connection back.
    const pool = new TransactionSafePool({ connectionString: template.url, max: 1, connectionTimeoutMillis: 3_000 });
    pool.on('connect', (client) => client.on('error', () => undefined));
    let cutNext = true;
    pool.on('acquire', (client) => {
      if (!cutNext) return;
      cutNext = false;
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    });
    const db = drizzle(pool);
    try {
      await expect(db.transaction(async (tx) => tx.execute(sql`select 1`))).rejects.toThrow();
      const after = await db.transaction(async (tx) => rows<{ one: number }>(tx, sql`select 1 as one`));
      expect(after).toEqual([{ one: 1 }]);
      expect(pool.totalCount).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
