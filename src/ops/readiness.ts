import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';

/** One dependency probe: resolves true when the dependency is usable; false or a throw means not. */
export type ReadinessCheck = () => Promise<boolean>;

/** What a check came to. `timeout`: it did not answer within the deadline (a hung connection). */
export type CheckOutcome = 'ok' | 'failed' | 'timeout';

export interface ReadinessReport {
  status: 'ready' | 'not_ready';
  checks: Record<string, CheckOutcome>;
  /** Why each failing check failed, for the logs only: messages can name hosts. */
  errors: Record<string, string>;
}

/**
 * Runs every check at once, each bounded by `timeoutMs` (default 2 s, well inside a load
 * balancer's probe timeout), and reports ready only when all of them are ok.
 */
export async function checkReadiness(
  checks: Record<string, ReadinessCheck>,
  timeoutMs = 2_000,
): Promise<ReadinessReport> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => [name, await runCheck(check, timeoutMs)] as const),
  );
  const report: ReadinessReport = { status: 'ready', checks: {}, errors: {} };
  for (const [name, { outcome, error }] of entries) {
    report.checks[name] = outcome;
    if (outcome !== 'ok') report.status = 'not_ready';
    if (error !== undefined) report.errors[name] = error;
  }
  return report;
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<{ outcome: CheckOutcome; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const result = await Promise.race([check(), deadline]);
    if (result === 'timeout') return { outcome: 'timeout', error: `no answer within ${timeoutMs} ms` };
    return result ? { outcome: 'ok' } : { outcome: 'failed', error: 'check answered false' };
  } catch (err) {
    return { outcome: 'failed', error: err instanceof Error ? err.message : String(err) };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Postgres answers a query. */
export function postgresCheck(db: Db): ReadinessCheck {
  return async () => {
    await db.execute(sql`select 1`);
    return true;
  };
}

/** The narrow slice of a Redis client this probe uses. */
export interface Pingable {
  ping(): Promise<string>;
}

/**
 * Redis answers PING. Give it the producer connection: it has no offline queue, so a lost
 * connection fails at once instead of waiting for a reconnect.
 */
export function redisCheck(redis: Pingable): ReadinessCheck {
  return async () => (await redis.ping()) === 'PONG';
}

/** Every migration in migrations/ has been applied (a process ahead of its database is not ready). */
export function migrationsCheck(isMigrated: () => Promise<boolean>): ReadinessCheck {
  return isMigrated;
}
