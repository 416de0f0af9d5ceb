import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import { EmbeddedLock } from './embedded-lock.js';
import { TransactionSafePool } from './pool.js';
import { rows } from './rows.js';
import * as schema from './schema.js';

export type Schema = typeof schema;
/** The database handle every query module takes: node-postgres or embedded PGlite behind one type. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** Runs pending migrations from migrations/ (safe with several processes starting at once). */
  migrate(): Promise<void>;
  /** True when every migration in migrations/ has been applied. */
  isMigrated(): Promise<boolean>;
  /** The embedded database's lock on DATA_DIR (src/db/embedded-lock.ts); undefined for Postgres. */
  lock: EmbeddedLock | undefined;
  close(): Promise<void>;
}

export const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

// Any constant works; it only has to be the same in every recoup process.
const migrationLockId = 7_302_114;

/**
 * Bounds on the waits of every Postgres connection, so that one frozen or partitioned process
 * cannot stall the others. Sent as startup parameters: no extra round trip per connection.
 * src/config.ts documents each and its default.
 */
export interface ConnectionLimits {
  /**
   * The server ends a session that sits inside a transaction this long without a statement, and
   * with it the transaction's locks (a frozen worker's share locks on the orders it was sending for).
   */
  idleInTransactionTimeoutMs: number;
  /** A statement waiting this long for a lock fails with SQLSTATE 55P03. */
  lockTimeoutMs: number;
  /** A statement running this long is cancelled; long jobs raise it with `set local`. */
  statementTimeoutMs: number;
  /** Waiting this long for a free pool connection, or for a new one to open, fails. */
  connectTimeoutMs: number;
  /** TCP keepalive probes start once a connection has been quiet this long. */
  keepAliveDelayMs: number;
}

export interface OpenDatabaseOptions {
  /** Postgres URL; undefined opens an embedded PGlite database under `dataDir`. */
  url: string | undefined;
  dataDir: string;
  /** Pool size for Postgres. Default 10. */
  poolSize?: number;
  /** Postgres only (PGlite has one in-process session). Unset: no bounds beyond the server's own settings. */
  limits?: ConnectionLimits;
  onError?: (err: Error) => void;
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.url) return openPostgres(options.url, options.poolSize ?? 10, options.limits, options.onError);
  return openPglite(options.dataDir);
}

function openPostgres(
  url: string,
  poolSize: number,
  limits: ConnectionLimits | undefined,
  onError?: (err: Error) => void,
): Database {
  const pool = new TransactionSafePool({
    connectionString: url,
    max: poolSize,
    ...(limits
      ? {
          idle_in_transaction_session_timeout: limits.idleInTransactionTimeoutMs,
          lock_timeout: limits.lockTimeoutMs,
          statement_timeout: limits.statementTimeoutMs,
          connectionTimeoutMillis: limits.connectTimeoutMs,
          keepAlive: true,
          keepAliveInitialDelayMillis: limits.keepAliveDelayMs,
        }
      : {}),
  });
  // An idle client dying (server restart, pg_terminate_backend) must not crash the process.
  pool.on('error', (err) => onError?.(err));
  // Nor one that is checked out but between queries (a transaction waiting on a provider call, ended
  // by the server's idle-in-transaction timeout, say): pg emits 'error' on the client itself then,
  // and the pool only listens while it is idle. The next query on it fails, the transaction rolls
  // back, and the pool discards the client.
  pool.on('connect', (client) => client.on('error', (err) => onError?.(err)));
  const db = drizzlePg(pool, { schema }) as unknown as Db;
  return {
    db,
    kind: 'postgres',
    async migrate() {
      const client = await pool.connect();
      try {
        // A migration may rewrite a large table, and a process starting beside another one waits
        // here until that one's migrations are done: neither is bounded by the request limits.
        await client.query('set statement_timeout = 0; set lock_timeout = 0');
        await client.query('select pg_advisory_lock($1)', [migrationLockId]);
        await migratePg(drizzlePg(client, { schema }), { migrationsFolder });
      } finally {
        await client.query('select pg_advisory_unlock($1)', [migrationLockId]).catch(() => undefined);
        // Its session settings were changed: it does not go back into the pool.
        client.release(true);
      }
    },
    isMigrated: () => isMigrated(db),
    lock: undefined,
    close: () => pool.end(),
  };
}

async function openPglite(dataDir: string): Promise<Database> {
  const lock = EmbeddedLock.acquire(dataDir);
  try {
    const dir = path.join(dataDir, 'pglite');
    fs.mkdirSync(dir, { recursive: true });
    const { PGlite } = await import('@electric-sql/pglite');
    const { drizzle } = await import('drizzle-orm/pglite');
    const { migrate } = await import('drizzle-orm/pglite/migrator');
    const client = await PGlite.create(dir);
    const pglite = drizzle(client, { schema });
    const db = pglite as unknown as Db;
    return {
      db,
      kind: 'pglite',
      migrate: () => migrate(pglite, { migrationsFolder }),
      isMigrated: () => isMigrated(db),
      lock,
      close: async () => {
        try {
          await client.close();
        } finally {
          lock.release();
        }
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function isMigrated(db: Db): Promise<boolean> {
  const journal = JSON.parse(fs.readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as {
    entries: unknown[];
  };
  try {
    const [row] = await rows<{ count: string }>(
      db,
      sql`select count(*)::text as count from drizzle.__drizzle_migrations`,
    );
    return Number(row?.count ?? 0) >= journal.entries.length;
  } catch {
    return false;
  }
}
