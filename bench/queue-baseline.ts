import { StepQueue } from '../src/queue/queues.js';
import { progress, type BenchContext } from './context.js';
import { redisCommandCalls, redisCpuMs } from './infrastructure.js';
import { queueWakeups, recoveryId } from './seed.js';
import { completionRate } from './worker-process.js';

export interface QueueBaselineResult {
  jobsPerS: number;
  addPerS: number;
  redisCommandsPerJob: number;
  workerCpuMsPerJob: number;
  /** Server-wide: other clients of this Redis add to it. */
  redisCpuMsPerJob: number;
}

/**
 * Bare BullMQ on the same Redis: N jobs shaped exactly like recoup's wake-ups (same name, data,
 * id scheme and options), added with addBulk through StepQueue, then processed by a no-op worker
 * with the dispatch worker's concurrency and lock settings.
 */
export async function measureQueueBaseline(ctx: BenchContext): Promise<QueueBaselineResult> {
  const n = ctx.options.n;
  const queue = new StepQueue(ctx.redis, `${ctx.prefix}q`);
  try {
    const now = new Date();
    const wakeups = Array.from({ length: n }, (_, i) => ({ recoveryId: recoveryId('q', i), wakeSeq: 0, runAt: now }));
    const addStart = Date.now();
    await queueWakeups(queue, wakeups);
    const addPerS = (n * 1000) / (Date.now() - addStart);
    progress(`queue baseline: ${n} jobs added (${Math.round(addPerS)}/s); processing with a no-op worker`);

    const commandsBefore = await redisCommandCalls(ctx.redis);
    const redisCpuBefore = await redisCpuMs(ctx.redis);
    await ctx.worker.run('noop', `${ctx.prefix}q`);
    const done = await ctx.worker.waitForCompleted(n, {
      timeoutMs: 600_000,
      onTick: (c) => progress(`queue baseline: ${c}/${n}`),
    });
    const commands = (await redisCommandCalls(ctx.redis)) - commandsBefore;
    const redisCpu = (await redisCpuMs(ctx.redis)) - redisCpuBefore;
    const jobsPerS = completionRate(done);
    progress(`queue baseline: ${Math.round(jobsPerS)} jobs/s`);
    return {
      jobsPerS,
      addPerS,
      redisCommandsPerJob: commands / n,
      workerCpuMsPerJob: done.cpuMs / n,
      redisCpuMsPerJob: redisCpu / n,
    };
  } finally {
    await queue.close();
  }
}
