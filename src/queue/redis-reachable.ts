import { RecoupError } from '../platform/errors.js';
import { connectRedis, type RedisTarget } from './queues.js';

/**
 * Returns once Redis answers a PING. Retries for `waitMs` (a Redis restarting or failing over as
 * the process starts), then fails with one line that says what to do.
 */
export async function assertRedisReachable(
  target: RedisTarget,
  options: { waitMs?: number; onWaiting?: (reason: string) => void } = {},
): Promise<void> {
  const giveUpAt = Date.now() + (options.waitMs ?? 0);
  for (let attempt = 0; ; attempt += 1) {
    const failure = await pingRedis(target);
    if (failure === undefined) return;
    if (Date.now() + redisRetryMs > giveUpAt) throw failure;
    if (attempt === 0) options.onWaiting?.(failure.message);
    await new Promise((resolve) => setTimeout(resolve, redisRetryMs));
  }
}

const redisRetryMs = 500;

async function pingRedis(target: RedisTarget): Promise<RecoupError | undefined> {
  const where =
    typeof target === 'string'
      ? redactUrl(target)
      : target.clusterNodes
        ? `the cluster nodes ${target.clusterNodes.map((n) => `${n.host}:${n.port}`).join(',')}`
        : redactUrl(target.url);
  const probe = connectRedis(target, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    // A cluster needs its offline queue while it discovers the slots; a single Redis fails fast without it.
    enableOfflineQueue: typeof target !== 'string' && target.clusterNodes !== undefined,
    connectTimeout: 3_000,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (err) {
    return new RecoupError(
      'unavailable',
      `cannot reach Redis at ${where} (${(err as Error).message}). ` +
        'Start one (e.g. `docker compose up -d redis`) or set REDIS_URL (or REDIS_CLUSTER_NODES).',
    );
  } finally {
    probe.disconnect();
  }
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
