import { RecoupError } from '../platform/errors.js';
import type { Db } from './client.js';

/** A transaction handle; query modules accept either this or the Db. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

/** SQLSTATEs after which the same transaction, run again, may well go through. */
const passingContention = new Set([
  '55P03', // lock_not_available: a lock wait outlasted lock_timeout
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

// pg-pool's errors once connectionTimeoutMillis passed: no connection became free, or none could be opened.
const poolTimeoutMessages = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
]);

/** Walks an error and its causes (drizzle wraps the driver's error in DrizzleQueryError). */
function* causes(err: unknown): Generator<unknown> {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth += 1) {
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

function isPassingContention(err: unknown): boolean {
  for (const e of causes(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && passingContention.has(code)) return true;
  }
  return false;
}

/**
 * The retryable `unavailable` error (503) for a database that is busy rather than broken: a lock
 * wait past lock_timeout, a serialization failure or deadlock, or no free pool connection within
 * the connect timeout. Undefined for any other error.
 */
export function busyDatabaseError(err: unknown): RecoupError | undefined {
  if (isPassingContention(err)) {
    return new RecoupError('unavailable', 'The database is busy with this record; try again shortly', { cause: err });
  }
  for (const e of causes(err)) {
    if (e instanceof Error && poolTimeoutMessages.has(e.message)) {
      return new RecoupError('unavailable', 'No database connection became free in time; try again shortly', {
        cause: err,
      });
    }
  }
  return undefined;
}

export interface RetryOptions {
  /** Runs in all, the first included. Default 4. */
  attempts?: number;
  /** Wait before the first retry, doubled for each next one and spread by ±50 %. Default 50 ms. */
  backoffMs?: number;
}

/**
 * Runs `work` in a transaction, and again when Postgres ended it for contention that passes: a
 * lock wait past lock_timeout, a serialization failure, a deadlock. Contention that outlasts the
 * attempts becomes the retryable `unavailable` error (503), never a 500. Only the database writes
 * of a failed run are undone, so anything else `work` does must be safe to repeat.
 *
 * The paths that settle an order's payment use it: they wait for the order's row lock, which a
 * sender holds across its provider call. With the default settings the attempts (4 × a 5 s
 * lock_timeout) outlast a frozen sender's transaction, which the server ends after 20 s idle.
 */
export async function retryingTransaction<T>(
  db: Db,
  work: (tx: Tx) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 4;
  const backoffMs = options.backoffMs ?? 50;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await db.transaction(work);
    } catch (err) {
      if (!isPassingContention(err)) throw err;
      if (attempt >= attempts) throw busyDatabaseError(err) ?? err;
      const wait = backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}
