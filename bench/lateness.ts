import type pg from 'pg';
import { StepQueue } from '../src/queue/queues.js';
import { progress, round, type BenchContext } from './context.js';
import { queueWakeups, seedRecoveries } from './seed.js';

export interface Lateness {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  count: number;
}

export interface LatenessResult {
  steadyRatePerS: number;
  steady: Lateness;
  burstSize: number;
  burstDrainS: number;
  /** N / measured dispatch capacity: how long the burst would take at the dispatch rate. */
  burstExpectedS: number;
  burst: Lateness;
}

/** Lateness of the messages of one seeded batch: provider accept time − the step's planned time. */
async function latenessOf(pool: pg.Pool, tag: string): Promise<Lateness> {
  const { rows } = await pool.query<{ p50: number; p99: number; max: number; count: string }>(
    `select percentile_cont(0.5) within group (order by ms) as p50,
            percentile_cont(0.99) within group (order by ms) as p99,
            max(ms) as max, count(*)::text as count
       from (select extract(epoch from sent_at - planned_at) * 1000 as ms
               from messages where recovery_id like $1 and status = 'sent') s`,
    [`rec\\_${tag}%`],
  );
  const row = rows[0];
  return { p50Ms: Number(row?.p50), p99Ms: Number(row?.p99), maxMs: Number(row?.max), count: Number(row?.count) };
}

/**
 * Seeds `count` recoveries due from a moment far enough ahead that seeding and queueing are over
 * by then (so the setup never shows up as lateness), `spacingMs` apart. Returns that moment.
 */
export async function scheduleBatch(
  ctx: BenchContext,
  queue: StepQueue,
  tag: string,
  count: number,
  spacingMs: number,
) {
  const setupMs = (count / (ctx.seedPerS ?? 2_000)) * 1000;
  const firstRunAt = new Date(Date.now() + 1_500 + setupMs * 2);
  const wakeups = await seedRecoveries(ctx.pool, {
    tag,
    count,
    firstRunAt,
    spacingMs,
    timezone: ctx.timezone,
    cadence: ctx.cadence,
  });
  await queueWakeups(queue, wakeups);
  const slack = firstRunAt.getTime() - Date.now();
  if (slack < 0) progress(`lateness: WARNING seeding ${tag} ended ${-slack} ms after its first step was due`);
  return firstRunAt;
}

async function waitForBatch(ctx: BenchContext, what: string, count: number, spanMs: number) {
  return ctx.worker.waitForCompleted(count, {
    timeoutMs: spanMs + 600_000,
    onTick: (c) => progress(`${what}: ${c}/${count}`),
  });
}

/**
 * Steady load at half the measured dispatch capacity for a while (p50/p99/max of actual − planned
 * send), then a burst of N recoveries all due at the same instant (drain time against N / capacity).
 */
export async function measureLateness(ctx: BenchContext): Promise<LatenessResult> {
  const capacity = ctx.dispatchPerS;
  if (!capacity || !Number.isFinite(capacity)) throw new Error('lateness needs the dispatch capacity first');
  const queue = new StepQueue(ctx.redis, `${ctx.prefix}l`);
  await ctx.worker.run('dispatch', `${ctx.prefix}l`);
  try {
    const seconds = ctx.options.latenessSeconds;
    const rate = capacity / 2;
    const count = Math.max(2, Math.round(rate * seconds));
    const steadyStart = await scheduleBatch(ctx, queue, 'l1', count, 1000 / rate);
    progress(`lateness: steady ${Math.round(rate)}/s for ${seconds} s (${count} messages)`);
    await waitForBatch(ctx, 'lateness steady', count, steadyStart.getTime() - Date.now() + seconds * 1000);
    const steady = await latenessOf(ctx.pool, 'l1');
    progress(
      `lateness: steady p50 ${round(steady.p50Ms)} ms, p99 ${round(steady.p99Ms)} ms, max ${round(steady.maxMs)} ms`,
    );

    await ctx.worker.reset();
    const n = ctx.options.burst ?? Math.min(ctx.options.n, Math.max(1_000, Math.round(capacity * 60)));
    const burstAt = await scheduleBatch(ctx, queue, 'l2', n, 0);
    progress(`lateness: burst of ${n} due at once`);
    const done = await waitForBatch(ctx, 'lateness burst', n, burstAt.getTime() - Date.now());
    const burst = await latenessOf(ctx.pool, 'l2');
    const burstDrainS = (done.lastAt - burstAt.getTime()) / 1000;
    const burstExpectedS = n / capacity;
    progress(`lateness: burst drained in ${round(burstDrainS, 1)} s (N / capacity = ${round(burstExpectedS, 1)} s)`);
    return { steadyRatePerS: rate, steady, burstSize: n, burstDrainS, burstExpectedS, burst };
  } finally {
    await queue.close();
  }
}
