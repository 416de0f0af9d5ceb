import { z } from 'zod';
import { documented, duration, optionalDuration, optionalText, whole, type EnvOf } from '../platform/config-fields.js';

const group = 'Database';

/** Postgres: where it is, how many connections, and the bounds on every wait. */
export const databaseEnv = {
  DATABASE_URL: optionalText({
    group,
    secret: true,
    description: 'Postgres connection string.',
    default: 'an embedded Postgres (PGlite) in `DATA_DIR/pglite`',
  }),
  DATABASE_POOL_SIZE: documented(whole(z.coerce.number().int().min(1).max(1000).optional()), {
    group,
    description:
      'Postgres connections per process, so that every running step job has one while the reconciler, circuits and HTTP requests get theirs.',
    default: 'WORKER_CONCURRENCY + 4, at least 10',
  }),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: optionalDuration({
    group,
    description:
      "Postgres ends a session that sits this long inside a transaction without a statement, and with it the transaction's locks: a frozen or cut-off process's locks on orders, which would hold those orders' payments. Sends hold no transaction across provider calls, but a payment attempt asks its gateway under the order's lock, so this must exceed the send lease (start window + PROVIDER_TIMEOUT + 1 s, src/recoveries/send-lease.ts).",
    default: 'the send lease + 4 s (`20s` with the default settings)',
  }),
  DATABASE_LOCK_TIMEOUT: duration(
    '5s',
    {
      group,
      description:
        'A statement waiting this long for a lock fails; payment transactions retry it a few times (src/db/tx.ts), other requests answer 503. Must be shorter than DATABASE_STATEMENT_TIMEOUT.',
    },
    '100ms',
  ),
  DATABASE_STATEMENT_TIMEOUT: duration(
    '30s',
    {
      group,
      description: 'A statement running this long is cancelled (report rollups and migrations lift it).',
    },
    '100ms',
  ),
  DATABASE_CONNECT_TIMEOUT: duration(
    '5s',
    {
      group,
      description: 'Waiting this long for a free pool connection (or a new one to open) fails with 503.',
    },
    '100ms',
  ),
  DATABASE_STARTUP_WAIT: duration('15s', {
    group,
    description:
      'How long `start` and `worker` keep trying while Postgres refuses or drops their first connections (a restart, a failover, a stack starting together) before giving up.',
  }),
  DATABASE_KEEPALIVE_DELAY: duration(
    '10s',
    {
      group,
      description: 'TCP keepalive probes on Postgres connections start after this long without traffic.',
    },
    '1s',
  ),
};

export function checkDatabaseEnv(env: EnvOf<typeof databaseEnv>, ctx: z.RefinementCtx): void {
  // Either may have failed its own check (reported already): compare only two durations.
  if (
    typeof env.DATABASE_LOCK_TIMEOUT === 'number' &&
    typeof env.DATABASE_STATEMENT_TIMEOUT === 'number' &&
    env.DATABASE_LOCK_TIMEOUT >= env.DATABASE_STATEMENT_TIMEOUT
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['DATABASE_LOCK_TIMEOUT'],
      message: 'must be shorter than DATABASE_STATEMENT_TIMEOUT (a lock wait is cut by whichever comes first)',
    });
  }
}
