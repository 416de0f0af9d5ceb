import { Worker, type ConnectionOptions } from 'bullmq';
import type { Logger } from '../logger.js';
import { dispatchSteps, type DispatchDeps, type DispatchResult } from '../recoveries/dispatch-step.js';
import { Batcher } from '../batcher.js';
import { stepQueueName, type StepJobData, type StepQueue } from './queues.js';

export interface StepWorkerOptions {
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
  dispatch: DispatchDeps;
  logger: Logger;
  /** Called after each job; metrics and tests hook in here. */
  onResult?: (result: DispatchResult) => void;
}

/**
 * Runs step wake-ups. The processor never trusts the job: dispatchSteps re-checks
 * everything in Postgres. The jobs a worker holds at once are dispatched in batches (four at a
 * time, each up to half the concurrency) so they share their statements. Wake-ups they produce
 * are added after the state committed; if Redis refuses them, the reconciler restores them from
 * Postgres.
 */
export function startStepWorker(options: StepWorkerOptions): Worker<StepJobData> {
  const { logger, queue } = options;
  const batcher = new Batcher<StepJobData, DispatchResult>(
    async (jobs) => {
      const results = await dispatchSteps(options.dispatch, jobs);
      try {
        await queue.add(
          results.flatMap((result) => result.wakeups),
          options.dispatch.clock.now(),
        );
      } catch (err) {
        logger.warn({ err, jobs: jobs.length }, 'could not queue the next wake-ups; the reconciler will');
      }
      return results;
    },
    { maxBatch: Math.max(1, Math.ceil(options.concurrency / 2)), maxRunning: 4 },
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
