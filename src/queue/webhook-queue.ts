import { Queue, Worker, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Logger } from '../platform/logger.js';

/** The queue that wakes webhook deliveries; Postgres holds the deliveries, a job holds only their ids. */
export const webhookQueueName = 'webhooks';
const webhookJobName = 'delivery';

export interface WebhookJobData {
  deliveryId: string;
  wakeSeq: number;
}

export interface DeliveryWakeup extends WebhookJobData {
  runAt: Date;
}

/** The delivery's id and wake sequence: re-adding the same wake-up is a no-op, a new one has a new id. */
export function webhookJobId(deliveryId: string, wakeSeq: number): string {
  return `${deliveryId}-${wakeSeq}`;
}

const webhookJobDefaults: JobsOptions = {
  removeOnComplete: true,
  removeOnFail: { age: 86_400, count: 10_000 },
  // Retries cover unexpected errors (Postgres briefly down); the endpoint's own failures are
  // scheduled in Postgres.
  attempts: 5,
  backoff: { type: 'exponential', delay: 1_000 },
};

export class WebhookQueue {
  readonly #queue: Queue<WebhookJobData>;

  constructor(connection: ConnectionOptions, prefix: string) {
    this.#queue = new Queue<WebhookJobData>(webhookQueueName, {
      connection,
      prefix,
      defaultJobOptions: webhookJobDefaults,
      streams: { events: { maxLen: 1_000 } },
    });
  }

  /** Throws when Redis is unreachable; deliveries it could not wake are woken by the next restore pass. */
  async add(wakeups: DeliveryWakeup[], now: Date): Promise<void> {
    if (wakeups.length === 0) return;
    await this.#queue.addBulk(
      wakeups.map((w) => ({
        name: webhookJobName,
        data: { deliveryId: w.deliveryId, wakeSeq: w.wakeSeq },
        opts: { jobId: webhookJobId(w.deliveryId, w.wakeSeq), delay: Math.max(0, w.runAt.getTime() - now.getTime()) },
      })),
    );
  }

  async close(): Promise<void> {
    await this.#queue.close();
  }
}

export interface WebhookWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  lockDurationMs: number;
  logger: Logger;
  /** Makes one attempt of the delivery if it is still due under this wake-up; the processor re-checks everything in Postgres. */
  process: (job: WebhookJobData) => Promise<string>;
}

export function startWebhookWorker(options: WebhookWorkerOptions): Worker<WebhookJobData> {
  const worker = new Worker<WebhookJobData>(webhookQueueName, (job) => options.process(job.data), {
    connection: options.connection,
    prefix: options.prefix,
    concurrency: options.concurrency,
    lockDuration: options.lockDurationMs,
    stalledInterval: options.lockDurationMs,
    maxStalledCount: 2,
  });
  worker.on('error', (err) => options.logger.error({ err }, 'webhook worker error'));
  worker.on('failed', (job, err) =>
    options.logger.warn({ err, jobId: job?.id }, 'webhook job failed; will retry or be restored'),
  );
  return worker;
}
