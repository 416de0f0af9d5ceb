/**
 * Child process hosting one BullMQ worker at a time on the `steps` queue of a given prefix:
 * - `noop`: bare BullMQ, a processor that returns at once (the queue baseline), or
 * - `dispatch`: recoup's worker role as `recoup worker` starts it (startService: step worker →
 *   dispatchStep, reconciler, metrics) with in-process fake providers.
 * Both use the same connection, concurrency and lock settings and count a job when BullMQ emits
 * `completed`, so their rates compare like for like. `start` replaces the running worker, which
 * saves a process start per phase. It counts the Postgres statements and Redis commands this
 * process sends (driver-counters.ts), its CPU time, and reports its peak RSS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/platform/logger.js';
import { stepQueueName, workerConnection } from '../src/queue/queues.js';
import { startService } from '../src/app/service.js';
import { childArgs, sendToParent, serveParent, type ChildMessage } from './child-process.js';
import { countDriverCalls } from './driver-counters.js';
import { FakeEmailSender, FakeSmsSender } from './fake-providers.js';

export interface WorkerHostArgs {
  databaseUrl: string;
  redisUrl: string;
  concurrency: number;
  providerLatencyMs: number;
}

export type WorkerMode = 'noop' | 'dispatch';

/** What the worker did since the last `reset`. */
export interface WorkerCounters {
  completed: number;
  failed: number;
  /** Wall-clock ms of the first and last completion (0 when none). */
  firstAt: number;
  lastAt: number;
  actions: Record<string, number>;
  pgStatements: number;
  redisCommands: number;
  /** CPU time (user + system) of this process. */
  cpuMs: number;
  rssMb: number;
  /** The process's RSS high-water mark since it started. */
  peakRssMb: number;
}

const args = childArgs<WorkerHostArgs>();
const calls = countDriverCalls();
const cpuMs = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

const counters = { completed: 0, failed: 0, firstAt: 0, lastAt: 0, actions: {} as Record<string, number> };
const since = { pgStatements: 0, redisCommands: 0, cpuMs: 0 };

function snapshot(): WorkerCounters {
  return {
    ...counters,
    actions: { ...counters.actions },
    pgStatements: calls.pgStatements() - since.pgStatements,
    redisCommands: calls.redisCommands() - since.redisCommands,
    cpuMs: cpuMs() - since.cpuMs,
    rssMb: process.memoryUsage.rss() / 1_048_576,
    // maxRSS is in kilobytes.
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

function reset() {
  Object.assign(counters, { completed: 0, failed: 0, firstAt: 0, lastAt: 0, actions: {} });
  Object.assign(since, { pgStatements: calls.pgStatements(), redisCommands: calls.redisCommands(), cpuMs: cpuMs() });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-bench-worker-'));
const configFor = (prefix: string): Config =>
  loadConfig({
    DATABASE_URL: args.databaseUrl,
    REDIS_URL: args.redisUrl,
    QUEUE_PREFIX: prefix,
    PUBLIC_URL: 'https://pay.bench.example',
    RECOUP_SECRET: 'bench-secret-0123456789abcdef0123456789',
    RECOUP_API_KEYS: 'bench-key-0123456789abcdef',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    WORKER_CONCURRENCY: String(args.concurrency),
  });
const logger = createLogger('warn', 'bench-worker');
/** Closes the running worker and its connections. */
let closeCurrent: () => Promise<void> = async () => undefined;

async function start(mode: WorkerMode, prefix: string): Promise<void> {
  await closeCurrent();
  const config = configFor(prefix);
  let worker: Worker;
  if (mode === 'noop') {
    const connection = workerConnection(config.redisUrl, (err) => logger.warn({ err: err.message }, 'redis worker'));
    // The options startStepWorker passes; only the processor differs.
    worker = new Worker(stepQueueName, async () => 'noop', {
      connection,
      prefix: config.queuePrefix,
      concurrency: config.workerConcurrency,
      lockDuration: config.jobLockDurationMs,
      stalledInterval: config.jobLockDurationMs,
      maxStalledCount: 2,
    });
    closeCurrent = async () => {
      await worker.close();
      connection.disconnect();
    };
  } else {
    await markQueueStatePresent(config);
    // The worker role exactly as `recoup worker` runs it (step worker, reconciler, metrics, circuits),
    // with the fake providers in place of the configured ones.
    const service = await startService(config, { http: false, worker: true }, logger, {
      sms: new FakeSmsSender(args.providerLatencyMs),
      email: new FakeEmailSender(args.providerLatencyMs),
      onResult: (result) => {
        counters.actions[result.action] = (counters.actions[result.action] ?? 0) + 1;
      },
    });
    if (!service.worker) throw new Error('the service started no worker');
    worker = service.worker;
    closeCurrent = () => service.close();
  }
  worker.on('completed', () => {
    const now = Date.now();
    if (counters.completed === 0) counters.firstAt = now;
    counters.completed += 1;
    counters.lastAt = now;
  });
  worker.on('failed', () => {
    counters.failed += 1;
  });
  await worker.waitUntilReady();
}

/**
 * A fresh prefix (no promotion cursor) looks to the reconciler like a Redis that lost its state, and
 * its first pass would queue every active recovery due within the horizon (other phases' too). Each
 * phase queues its own wake-ups: the cursor says that everything due within the horizon from now is
 * queued, as on a running installation, and later passes promote from there.
 */
async function markQueueStatePresent(config: Config): Promise<void> {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await redis.set(`${config.queuePrefix}:recoup:promoted`, `bench:${Date.now() + config.wakeupHorizonMs}`, 'NX');
  } finally {
    redis.disconnect();
  }
}

let lastSent = -1;
const progress = setInterval(() => {
  if (counters.completed === lastSent) return;
  lastSent = counters.completed;
  sendToParent({ type: 'progress', completed: counters.completed, failed: counters.failed });
}, 100);

serveParent(
  async (message: ChildMessage) => {
    switch (message.type) {
      case 'start':
        await start(message.mode as WorkerMode, String(message.prefix));
        reset();
        lastSent = -1;
        return { counters: snapshot() };
      case 'snapshot':
        return { counters: snapshot() };
      case 'reset': {
        const before = snapshot();
        reset();
        lastSent = -1;
        return { counters: before };
      }
      default:
        throw new Error(`unknown command ${message.type}`);
    }
  },
  async () => {
    clearInterval(progress);
    await closeCurrent().catch(() => undefined);
    fs.rmSync(dataDir, { recursive: true, force: true });
  },
);
sendToParent({ type: 'ready', pid: process.pid });
