import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type ConnectionLimits, type Database } from '../../src/db/client.js';
import { retryingTransaction } from '../../src/db/tx.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/** The payment paths' transactions: a lock wait past lock_timeout is retried a few times, then a retryable error. */
describe('retryingTransaction', () => {
  let testDatabase: TestDatabase;
  let database: Database;
  let holder: pg.Client;
  const limits: ConnectionLimits = {
    idleInTransactionTimeoutMs: 60_000,
    lockTimeoutMs: 200,
    statementTimeoutMs: 30_000,
    connectTimeoutMs: 5_000,
    keepAliveDelayMs: 10_000,
  };
  const lockId = 4_711;
  beforeAll(async () => {
    testDatabase = await createTestDatabase();
    database = await openDatabase({ url: testDatabase.url, dataDir: '.data/test', poolSize: 2, limits });
    holder = new pg.Client({ connectionString: testDatabase.url });
    await holder.connect();
  });
  afterAll(async () => {
    await holder.end();
    await database.close();
    await testDatabase.drop();
  });

  it('runs the transaction again after a lock timeout, and goes through once the lock is free', async () => {
    await holder.query('select pg_advisory_lock($1)', [lockId]);
    let runs = 0;
    const result = await retryingTransaction(database.db, async (tx) => {
      runs += 1;
      if (runs === 2) await holder.query('select pg_advisory_unlock($1)', [lockId]);
      await tx.execute(sql`select pg_advisory_xact_lock(${lockId})`);
      return 'done';
    });
    expect(result).toBe('done');
    expect(runs).toBe(2);
  });

  it('turns a lock wait that outlasts every attempt into the retryable unavailable error', async () => {
    await holder.query('select pg_advisory_lock($1)', [lockId]);
    let runs = 0;
    const attempt = retryingTransaction(database.db, async (tx) => {
      runs += 1;
      await tx.execute(sql`select pg_advisory_xact_lock(${lockId})`);
    });
    const failure = await attempt.then(
      () => undefined,
      (err: unknown) => err,
    );
    await holder.query('select pg_advisory_unlock($1)', [lockId]);
    expect(isRecoupError(failure, 'unavailable')).toBe(true);
    expect(runs).toBe(4);
  });
});
