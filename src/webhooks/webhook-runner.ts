import type { ConnectionOptions } from 'bullmq';
import type { ShopWriteBack } from './write-back.js';
import type { Db } from '../db/client.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { startLoop } from '../platform/loop.js';
import { startWebhookWorker, WebhookQueue, type DeliveryWakeup } from '../queue/webhook-queue.js';
import { syncWriteBackEndpoints } from './endpoints.js';
import { attemptDelivery, restoreDeliveries, type DeliveryDeps, type DeliveryOutcome } from './delivery.js';
import { numberEvents } from './sequencer.js';
import type { WebhooksConfig } from './webhooks-config.js';

export interface WebhookRunnerOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  config: WebhooksConfig;
  /** For adding wake-ups (fails fast when Redis is down). */
  producer: ConnectionOptions;
  /** For the worker's blocking reads. */
  workerConnection: ConnectionOptions;
  prefix: string;
  lockDurationMs: number;
  /** How often lost wake-ups are looked for, and how overdue a delivery must be to count as lost. */
  restoreIntervalMs: number;
  restoreGraceMs: number;
  /** The configured connectors' write-backs, by platform: each gets an endpoint (src/webhooks/endpoints.ts). */
  writeBacks?: ReadonlyMap<string, ShopWriteBack>;
  /** Test seam: called with each attempt's outcome. */
  onOutcome?: (outcome: DeliveryOutcome) => void;
  post?: DeliveryDeps['post'];
}

/**
 * A worker process's part in webhooks: it numbers committed events and creates their deliveries
 * (every WEBHOOK_POLL_INTERVAL), makes delivery attempts as their wake-ups come due, and restores
 * lost wake-ups (every RECONCILE_INTERVAL). Every process does all three; Postgres decides who
 * does each piece of work.
 */
export function startWebhookRunner(options: WebhookRunnerOptions): { close(): Promise<void> } {
  const { db, clock, logger } = options;
  const queue = new WebhookQueue(options.producer, options.prefix);
  const enqueue = async (wakeups: DeliveryWakeup[]) => {
    try {
      await queue.add(wakeups, clock.now());
    } catch (err) {
      logger.warn({ err, deliveries: wakeups.length }, 'could not queue webhook deliveries; the restore pass will');
    }
  };
  const writeBacks = options.writeBacks ?? new Map<string, ShopWriteBack>();
  const deps: DeliveryDeps = {
    db,
    logger,
    config: options.config,
    writeBacks,
    ...(options.post ? { post: options.post } : {}),
  };
  const worker = startWebhookWorker({
    connection: options.workerConnection,
    prefix: options.prefix,
    concurrency: options.config.concurrency,
    lockDurationMs: options.lockDurationMs,
    logger,
    process: async (job) => {
      const outcome = await attemptDelivery(deps, job);
      if ('next' in outcome && outcome.next) await enqueue([outcome.next]);
      options.onOutcome?.(outcome);
      return outcome.kind;
    },
  });

  let endpointsSynced = false;
  const number = async () => {
    // The write-backs' endpoints are there before the first events are numbered for them.
    if (!endpointsSynced) {
      await syncWriteBackEndpoints(
        db,
        [...writeBacks].map(([platform, writeBack]) => ({ platform, events: writeBack.events })),
      );
      endpointsSynced = true;
    }
    // A backlog (after an outage) is numbered a page at a time, without waiting between pages.
    for (;;) {
      const { numbered, wakeups } = await numberEvents(db);
      await enqueue(wakeups);
      if (numbered < 1_000) return;
    }
  };
  const restore = async () => enqueue(await restoreDeliveries(db, options.restoreGraceMs));
  const loops = [
    startLoop(options.config.pollIntervalMs, number, logger, 'numbering events for the shop'),
    startLoop(options.restoreIntervalMs, restore, logger, 'restoring webhook wake-ups'),
  ];
  return {
    async close() {
      for (const loop of loops) await loop.stop();
      await worker.close();
      await queue.close();
    },
  };
}
