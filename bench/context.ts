import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { BenchOptions } from './options.js';
import type { SeedCadence } from './seed.js';
import type { WorkerProcess } from './worker-process.js';

/** What every phase of the benchmark shares. */
export interface BenchContext {
  options: BenchOptions;
  databaseUrl: string;
  /** The bench's own pool on the bench database: seeding and size queries, never the measured path. */
  pool: pg.Pool;
  redis: Redis;
  /** Base key prefix; each phase appends a letter so that its queue starts empty. */
  prefix: string;
  cadence: SeedCadence;
  /** A zone where it is early afternoon now, so that quiet hours never defer a benchmark message. */
  timezone: string;
  /** The one worker process (a recoup worker, or bare BullMQ for the baseline). */
  worker: WorkerProcess;
  /** Set once the dispatch phase measured it: steady load and burst expectations derive from it. */
  dispatchPerS?: number;
  /** Seeding + queueing throughput seen so far (recoveries/s), to schedule "due at T" far enough ahead. */
  seedPerS?: number;
}

/** application_name of the children's Postgres connections, to find their backends. */
export const workerAppName = 'recoup-bench-worker';
export const intakeAppName = 'recoup-bench-intake';

export function withAppName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', name);
  return parsed.toString();
}

export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Etc/GMT zone where the local time is about 13:00 now (Etc/GMT-3 is UTC+3). */
export function afternoonZone(now = new Date()): string {
  const offset = ((13 - now.getUTCHours() + 36) % 24) - 12;
  if (offset === 0) return 'UTC';
  return offset > 0 ? `Etc/GMT-${offset}` : `Etc/GMT+${-offset}`;
}

export function round(value: number, digits = 0): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
