import { StepQueue } from '../src/queue/queues.js';
import { progress, round, type BenchContext } from './context.js';
import { allTableBytes, redisUsedMemory } from './infrastructure.js';
import { baselineTable } from './intake.js';
import { scheduleBatch } from './lateness.js';
import { queueWakeups, seedRecoveries } from './seed.js';
import { completionRate } from './worker-process.js';

export interface ScaleResult {
  smallPending: number;
  largePending: number;
  /** Recoveries due at once in each of the two rate measurements. */
  due: number;
  /** Medians of the samples at each size. */
  smallPerS: number;
  largePerS: number;
  smallSamplesPerS: number[];
  largeSamplesPerS: number[];
  ratio: number;
  redisBytesPerPendingRecovery: number;
  /** Customer + order + recovery rows (with indexes) of a recovery waiting for its first step. */
  pgBytesPerPendingRecovery: number;
}

const dayMs = 86_400_000;

/** Adds `count` recoveries whose first step is due tomorrow, spread over that day, with their delayed jobs. */
async function addPending(ctx: BenchContext, queue: StepQueue, tag: string, count: number) {
  const wakeups = await seedRecoveries(ctx.pool, {
    tag,
    count,
    firstRunAt: new Date(Date.now() + dayMs),
    spacingMs: dayMs / count,
    timezone: ctx.timezone,
    cadence: ctx.cadence,
  });
  await queueWakeups(queue, wakeups);
}

/** Dispatch rate of `scaleDue` recoveries all due at one instant, with the backlog in place. */
async function dueRate(ctx: BenchContext, queue: StepQueue, tag: string, pending: number) {
  await ctx.worker.reset();
  const capacity = ctx.dispatchPerS ?? Infinity;
  const n = Math.min(ctx.options.scaleDue, Math.max(Math.min(500, ctx.options.scaleDue), Math.round(capacity * 30)));
  const at = await scheduleBatch(ctx, queue, tag, n, 0);
  const done = await ctx.worker.waitForCompleted(n, {
    timeoutMs: at.getTime() - Date.now() + 600_000,
    onTick: (c) => progress(`scale (${pending} pending): ${c}/${n}`),
  });
  const rate = completionRate(done);
  progress(`scale: ${Math.round(rate)} messages/s with ${pending} recoveries pending`);
  return { rate, due: n };
}

/** `scaleSamples` rates at one backlog size (each burst adds its recoveries to the backlog), and their median. */
async function medianRate(ctx: BenchContext, queue: StepQueue, tag: string, pending: number) {
  const rates: number[] = [];
  let due = 0;
  for (let k = 1; k <= ctx.options.scaleSamples; k++) {
    const sample = await dueRate(ctx, queue, `${tag}${k}`, pending);
    rates.push(sample.rate);
    due = sample.due;
  }
  const sorted = [...rates].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { rate: median, rates, due };
}

/**
 * The dispatch rate with a small and a large backlog of recoveries pending (due tomorrow, with their
 * delayed jobs in Redis and rows in Postgres), and what each pending recovery costs in memory and on disk.
 */
export async function measureScale(ctx: BenchContext): Promise<ScaleResult> {
  const { scaleSmall, scaleLarge } = ctx.options;
  const queue = new StepQueue(ctx.redis, `${ctx.prefix}s`);
  await ctx.worker.run('dispatch', `${ctx.prefix}s`);
  try {
    progress(`scale: ${scaleSmall} recoveries pending`);
    await addPending(ctx, queue, 's0', scaleSmall);
    const small = await medianRate(ctx, queue, 'p', scaleSmall);

    const more = scaleLarge - scaleSmall;
    progress(`scale: adding ${more} more pending recoveries`);
    const memoryBefore = await redisUsedMemory(ctx.redis);
    const bytesBefore = await allTableBytes(ctx.pool, [baselineTable]);
    const started = Date.now();
    await addPending(ctx, queue, 's2', more);
    const memoryAfter = await redisUsedMemory(ctx.redis);
    const bytesAfter = await allTableBytes(ctx.pool, [baselineTable]);
    progress(`scale: ${more} pending added in ${round((Date.now() - started) / 1000, 1)} s`);
    const large = await medianRate(ctx, queue, 'q', scaleLarge);

    return {
      smallPending: scaleSmall,
      largePending: scaleLarge,
      due: small.due,
      smallPerS: small.rate,
      largePerS: large.rate,
      smallSamplesPerS: small.rates.map((r) => round(r, 1)),
      largeSamplesPerS: large.rates.map((r) => round(r, 1)),
      ratio: large.rate / small.rate,
      redisBytesPerPendingRecovery: (memoryAfter - memoryBefore) / more,
      pgBytesPerPendingRecovery: (bytesAfter - bytesBefore) / more,
    };
  } finally {
    await queue.close();
  }
}
