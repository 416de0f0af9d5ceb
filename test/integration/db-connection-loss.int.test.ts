import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
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
});
