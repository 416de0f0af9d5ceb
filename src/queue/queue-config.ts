import { z } from 'zod';
import { documented, duration, optionalText, whole, type EnvOf } from '../platform/config-fields.js';

const group = 'Redis and queue';

/** Redis, the BullMQ queue on it, and the workers and reconciler that run its jobs. */
export const queueEnv = {
  REDIS_URL: documented(z.string().default('redis://127.0.0.1:6379'), {
    group,
    secret: true,
    description: 'Redis URL; a database index in the path (`redis://host:6379/3`) is honoured.',
    default: '`redis://127.0.0.1:6379`',
  }),
  REDIS_CLUSTER_NODES: optionalText({
    group,
    description:
      'Redis Cluster seed nodes, comma separated. Set: REDIS_URL is ignored and QUEUE_PREFIX must be hash-tagged.',
    default: 'none: a single Redis at REDIS_URL',
    example: '10.0.0.1:6379,10.0.0.2:6379',
  }),
  QUEUE_PREFIX: documented(
    z
      .string()
      .regex(/^[^:]+$/, 'must not contain ":"')
      .default('recoup'),
    {
      group,
      description: 'Key prefix of every BullMQ key. Wrap it in braces (`{recoup}`) on Redis Cluster.',
      default: '`recoup`',
    },
  ),
  REDIS_STARTUP_WAIT: duration('15s', {
    group,
    description: 'How long `start` and `worker` wait for Redis at startup (a restart, a failover) before giving up.',
  }),
  WORKER_CONCURRENCY: documented(whole(z.coerce.number().int().min(1).max(1000).default(16)), {
    group,
    description: 'Concurrent step jobs per worker process.',
    default: '`16`',
  }),
  JOB_LOCK_DURATION: duration('30s', {
    group,
    description:
      "How long a worker's lock on a running job lasts; a killed worker's job is handed to another worker after about this long.",
  }),
  RECONCILE_INTERVAL: duration('5s', {
    group,
    description:
      'How often the reconciler restores lost wake-ups and starts abandoned recoveries, and the payment sweeper (servers) looks for webhook events and payment attempts left unsettled.',
  }),
  WAKEUP_HORIZON: duration('15m', {
    group,
    description:
      'Only wake-ups due within this long are kept in Redis; later ones wait in Postgres and are queued as they come within it (each RECONCILE_INTERVAL). At least twice RECONCILE_INTERVAL.',
  }),
  RECONCILE_GRACE: duration('30s', {
    group,
    description: 'A wake-up overdue by more than this is considered lost and re-created.',
  }),
};

export function checkQueueEnv(env: EnvOf<typeof queueEnv>, ctx: z.RefinementCtx): void {
  // A wake-up entering the horizon must be queued before it is due: passes come every RECONCILE_INTERVAL.
  if (
    typeof env.WAKEUP_HORIZON === 'number' &&
    typeof env.RECONCILE_INTERVAL === 'number' &&
    env.WAKEUP_HORIZON < 2 * env.RECONCILE_INTERVAL
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['WAKEUP_HORIZON'],
      message: `must be at least twice RECONCILE_INTERVAL (${env.RECONCILE_INTERVAL} ms)`,
    });
  }
  if (env.REDIS_CLUSTER_NODES === undefined) return;
  if (parseClusterNodes(env.REDIS_CLUSTER_NODES) === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['REDIS_CLUSTER_NODES'],
      message: 'expected host:port pairs separated by commas, e.g. 10.0.0.1:6379,10.0.0.2:6379',
    });
  }
  // BullMQ's scripts touch several keys of a queue at once: on a cluster they must share a slot.
  if (typeof env.QUEUE_PREFIX === 'string' && !/^\{[^{}]+\}/.test(env.QUEUE_PREFIX)) {
    ctx.addIssue({
      code: 'custom',
      path: ['QUEUE_PREFIX'],
      message: 'must start with a hash tag such as {recoup} when REDIS_CLUSTER_NODES is set',
    });
  }
}

export interface RedisNode {
  host: string;
  port: number;
}

/** `host:port,host:port` (IPv6 as `[::1]:7000`); undefined when a part cannot be read. */
export function parseClusterNodes(text: string): RedisNode[] | undefined {
  const nodes: RedisNode[] = [];
  for (const part of text.split(',').map((p) => p.trim())) {
    const match = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(part);
    const port = Number(match?.[2]);
    if (!match?.[1] || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
    nodes.push({ host: match[1].replace(/^\[|\]$/g, ''), port });
  }
  return nodes.length > 0 ? nodes : undefined;
}
