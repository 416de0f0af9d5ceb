import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { Batcher } from '../platform/batcher.js';
import type { RedisNode } from './queue-config.js';

/** The one BullMQ queue: each job wakes one recovery up for its next step (or expiry). */
export const stepQueueName = 'steps';
export const stepJobName = 'step';

/** A wake-up carries ids only: Postgres holds the state, so Redis holds little and loses nothing that matters. */
export interface StepJobData {
  recoveryId: string;
  wakeSeq: number;
}

/**
 * Deterministic, BullMQ-legal job id (no `:`, never all digits). The wake sequence
 * is bumped on every reschedule, so each wake-up has a fresh id while re-adding the
 * same wake-up (reconciler, retries) is a no-op.
 */
export function stepJobId(recoveryId: string, wakeSeq: number): string {
  return `${recoveryId}-${wakeSeq}`;
}

export interface Wakeup {
  recoveryId: string;
  wakeSeq: number;
  runAt: Date;
}

/** Bounded retention: completed jobs vanish, failed ones are kept a day for inspection. */
export const stepJobDefaults: JobsOptions = {
  removeOnComplete: true,
  removeOnFail: { age: 86_400, count: 10_000 },
  // Retries cover unexpected errors (e.g. Postgres briefly down); provider retries are scheduled in Postgres.
  attempts: 5,
  backoff: { type: 'exponential', delay: 1_000 },
};

/** A single Redis (URL) or a Redis Cluster (seed nodes). */
export type RedisTarget = string | { url: string; clusterNodes?: RedisNode[] | undefined };

/** What recoup holds: a connection to one Redis or to a cluster; both speak the commands it uses. */
export type RedisClient = Redis | Cluster;

/** Opens a connection to `target` with these options (for a cluster: per node, and for the cluster). */
export function connectRedis(target: RedisTarget, options: RedisOptions): RedisClient {
  if (typeof target === 'string' || !target.clusterNodes) {
    return new Redis(typeof target === 'string' ? target : target.url, options);
  }
  const { enableOfflineQueue, maxRetriesPerRequest: _perNode, ...nodeOptions } = options;
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...nodeOptions, maxRetriesPerRequest: options.maxRetriesPerRequest },
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(options.lazyConnect === undefined ? {} : { lazyConnect: options.lazyConnect }),
  };
  return new Cluster(target.clusterNodes, clusterOptions);
}

/**
 * Connection for producers (HTTP server, reconciler): fails fast when Redis is down
 * instead of queueing commands in memory, so a request is never held hostage by Redis.
 */
export function producerConnection(target: RedisTarget, onError: (err: Error) => void): RedisClient {
  const redis = connectRedis(target, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000 });
  redis.on('error', onError);
  return redis;
}

/** Connection for workers: BullMQ requires maxRetriesPerRequest null for blocking commands. */
export function workerConnection(target: RedisTarget, onError: (err: Error) => void): RedisClient {
  const redis = connectRedis(target, { maxRetriesPerRequest: null, connectTimeout: 5_000 });
  redis.on('error', onError);
  return redis;
}

type StepJob = { name: string; data: StepJobData; opts: JobsOptions };

export interface StepQueueOptions {
  /**
   * Only wake-ups due within this long go to Redis; later ones stay in Postgres alone until the
   * reconciler's promotion pass queues them as they enter the horizon. Default: no horizon.
   */
  horizonMs?: number | undefined;
}

export class StepQueue {
  readonly queue: Queue<StepJobData>;
  readonly horizonMs: number;
  /**
   * Wake-ups added at the same moment (the events of one intake batch, each answered by its own
   * request) go to Redis together: one write and one MULTI/EXEC instead of a round trip each.
   */
  readonly #adds: Batcher<StepJob[], void>;

  constructor(connection: ConnectionOptions, prefix: string, options: StepQueueOptions = {}) {
    this.horizonMs = options.horizonMs ?? Number.POSITIVE_INFINITY;
    this.queue = new Queue<StepJobData>(stepQueueName, {
      connection,
      prefix,
      defaultJobOptions: stepJobDefaults,
      streams: { events: { maxLen: 1_000 } },
    });
    this.#adds = new Batcher<StepJob[], void>(
      async (lists) => {
        await this.#addJobs(lists.flat());
        return lists.map(() => undefined);
      },
      { maxBatch: 64, maxRunning: 4 },
    );
  }

  /**
   * Adds the wake-ups due within the horizon of `now`; returns how many. `now` must be read after
   * the state they follow from committed: a wake-up left out is then one the promotion pass finds.
   * Throws when Redis is unreachable; callers log it and rely on the reconciler.
   */
  async add(wakeups: Wakeup[], now: Date = new Date()): Promise<number> {
    const horizon = now.getTime() + this.horizonMs;
    const near = wakeups.filter((w) => w.runAt.getTime() <= horizon);
    if (near.length === 0) return 0;
    await this.#adds.submit(
      near.map((w) => ({
        name: stepJobName,
        data: { recoveryId: w.recoveryId, wakeSeq: w.wakeSeq },
        opts: { jobId: stepJobId(w.recoveryId, w.wakeSeq), delay: Math.max(0, w.runAt.getTime() - now.getTime()) },
      })),
    );
    return near.length;
  }

  async #addJobs(jobs: StepJob[]): Promise<void> {
    // A lone job skips addBulk's MULTI/EXEC pipeline: the same job, for half the client CPU
    // (bench: 0.11 vs 0.23 ms per job).
    const [only] = jobs;
    if (only && jobs.length === 1) await this.queue.add(only.name, only.data, only.opts);
    else await this.queue.addBulk(jobs);
  }

  /** Best effort: a removed wake-up is only an optimisation; fire-time checks are the guarantee. */
  async remove(recoveryId: string, wakeSeq: number): Promise<void> {
    await this.queue.remove(stepJobId(recoveryId, wakeSeq));
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
