import { Worker, type ConnectionOptions } from 'bullmq';
import type { Logger } from '../platform/logger.js';
import { Batcher } from '../platform/batcher.js';
import { stepQueueName, type StepJobData, type StepQueue, type Wakeup } from './queues.js';

/** What processing one wake-up gave: the job's return value, and the wake-ups to add next. */
export interface StepOutcome {
  action: string;
  /** Wake-ups to add now that the state they follow from is committed. */
  wakeups: Wakeup[];
}

export interface StepWorkerOptions<R extends StepOutcome> {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  /**
   * At most `max` jobs start per `durationMs` across every worker of the queue (BullMQ's limiter
   * keeps its window in Redis). A limited job stays waiting; it is not failed nor retried.
   */
  rateLimit?: { max: number; durationMs: number } | undefined;
  /** Job lock; a dead worker's jobs return to the queue after about this long. */
  lockDurationMs: number;
  queue: StepQueue;
  /** Processes the wake-ups a worker holds at once, one result per job in the same order. */
  process: (jobs: StepJobData[]) => Promise<R[]>;
  /** The time the next wake-ups are added at. */
  now: () => Date;
  logger: Logger;
  /** Called after each job; metrics and tests hook in here. */
  onResult?: (result: R) => void;
}

/**
 * Runs step wake-ups. The processor never trusts the job: it re-checks everything in
 * Postgres. The jobs a worker holds at once are processed in batches (up to four at a
 * time, each up to half the concurrency) so they share their statements; under load, two at a
 * time, so that they grow (src/platform/batcher.ts). Wake-ups they produce
 * are added after the state committed; if Redis refuses them, the reconciler restores them from
 * Postgres.
 */
export function startStepWorker<R extends StepOutcome>(options: StepWorkerOptions<R>): Worker<StepJobData> {
  const { logger, queue } = options;
  const batcher = new Batcher<StepJobData, R>(
    async (jobs) => {
      const results = await options.process(jobs);
      try {
        await queue.add(
          results.flatMap((result) => result.wakeups),
          options.now(),
        );
      } catch (err) {
        logger.warn({ err, jobs: jobs.length }, 'could not queue the next wake-ups; the reconciler will');
      }
      return results;
    },
    { maxBatch: Math.max(1, Math.ceil(options.concurrency / 2)), maxRunning: 4, minRunning: 2 },
  );
  const worker = new Worker<StepJobData>(
    stepQueueName,
    async (job) => {
      const result = await batcher.submit(job.data);
      options.onResult?.(result);
      return result.action;
    },
    {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      ...(options.rateLimit ? { limiter: { max: options.rateLimit.max, duration: options.rateLimit.durationMs } } : {}),
      // A job runs at most one provider call (bounded by its timeout), well inside the lock.
      lockDuration: options.lockDurationMs,
      stalledInterval: options.lockDurationMs,
      maxStalledCount: 2,
    },
  );
  worker.on('error', (err) => logger.error({ err }, 'step worker error'));
  worker.on('failed', (job, err) =>
    logger.warn({ err, jobId: job?.id, attempts: job?.attemptsMade }, 'step job failed; will retry or be reconciled'),
  );
  return worker;
}
