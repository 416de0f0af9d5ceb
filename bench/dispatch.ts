import { StepQueue } from '../src/queue/queues.js';
import { progress, round, workerAppName, type BenchContext } from './context.js';
import {
  pgBackendCpu,
  pgCpuDelta,
  pgStatStatementsCalls,
  redisCommandCalls,
  redisCpuMs,
  tableBytes,
} from './infrastructure.js';
import { queueWakeups, seedRecoveries } from './seed.js';
import { completionRate } from './worker-process.js';

export interface DispatchResult {
  perS: number;
  sent: number;
  actions: Record<string, number>;
  /** INFO commandstats delta (server-wide, so other clients of this Redis add noise) per message. */
  redisCommandsPerMessage: number;
  /** Commands the worker process itself wrote (a Lua script counts once) per message. */
  redisClientCommandsPerMessage: number;
  pgStatementsPerMessage: number;
  pgStatementsSource: 'pg_stat_statements' | 'driver_count';
  /** Growth of the messages table (heap, indexes, TOAST) per message sent. */
  pgBytesPerMessage: number;
  workerCpuMsPerMessage: number;
  pgCpuMsPerMessage: number;
  redisCpuMsPerMessage: number;
  seedPerS: number;
}

/**
 * N recoveries whose first step is due now, their wake-ups queued, then recoup's step worker
 * started: each job claims the step under the order lock, renders, sends to the fake provider,
 * records `sent`, advances the recovery and queues its next wake-up.
 */
export async function measureDispatch(ctx: BenchContext, pgStatStatements: boolean): Promise<DispatchResult> {
  const n = ctx.options.n;
  const prefix = `${ctx.prefix}d`;
  const queue = new StepQueue(ctx.redis, prefix);
  try {
    const seedStart = Date.now();
    const wakeups = await seedRecoveries(ctx.pool, {
      tag: 'd',
      count: n,
      firstRunAt: new Date(),
      spacingMs: 0,
      timezone: ctx.timezone,
      cadence: ctx.cadence,
    });
    await queueWakeups(queue, wakeups);
    const seedPerS = (n * 1000) / (Date.now() - seedStart);
    ctx.seedPerS = seedPerS;
    progress(`dispatch: ${n} recoveries due now, seeded and queued (${Math.round(seedPerS)}/s); starting the worker`);

    const messagesBytesBefore = await tableBytes(ctx.pool, ['messages']);
    const commandsBefore = await redisCommandCalls(ctx.redis);
    const redisCpuBefore = await redisCpuMs(ctx.redis);
    const statementsBefore = pgStatStatements ? await pgStatStatementsCalls(ctx.pool) : undefined;
    const pgCpuBefore = await pgBackendCpu(ctx.pool, workerAppName);
    await ctx.worker.run('dispatch', prefix);
    const done = await ctx.worker.waitForCompleted(n, {
      timeoutMs: 900_000,
      onTick: (c) => progress(`dispatch: ${c}/${n}`),
    });
    const pgCpu = pgCpuDelta(pgCpuBefore, await pgBackendCpu(ctx.pool, workerAppName));
    const redisCpu = (await redisCpuMs(ctx.redis)) - redisCpuBefore;
    const commands = (await redisCommandCalls(ctx.redis)) - commandsBefore;
    const statementsAfter = pgStatStatements ? await pgStatStatementsCalls(ctx.pool) : undefined;
    const sent = done.actions.sent ?? 0;
    if (sent !== n) progress(`dispatch: WARNING only ${sent} of ${n} were sent: ${JSON.stringify(done.actions)}`);
    const perS = completionRate(done);
    const perMessage = (value: number) => value / Math.max(1, sent);
    const pgStatements =
      statementsBefore !== undefined && statementsAfter !== undefined
        ? statementsAfter - statementsBefore
        : done.pgStatements;
    const result: DispatchResult = {
      perS,
      sent,
      actions: done.actions,
      redisCommandsPerMessage: perMessage(commands),
      redisClientCommandsPerMessage: perMessage(done.redisCommands),
      pgStatementsPerMessage: perMessage(pgStatements),
      pgStatementsSource: statementsBefore !== undefined ? 'pg_stat_statements' : 'driver_count',
      pgBytesPerMessage: perMessage((await tableBytes(ctx.pool, ['messages'])) - messagesBytesBefore),
      workerCpuMsPerMessage: perMessage(done.cpuMs),
      pgCpuMsPerMessage: perMessage(pgCpu),
      redisCpuMsPerMessage: perMessage(redisCpu),
      seedPerS,
    };
    progress(
      `dispatch: ${Math.round(perS)} messages/s; per message ${round(result.redisCommandsPerMessage, 1)} Redis ` +
        `commands, ${round(result.pgStatementsPerMessage, 1)} Postgres statements, CPU ms: worker ` +
        `${round(result.workerCpuMsPerMessage, 2)}, Postgres ${round(result.pgCpuMsPerMessage, 2)}, ` +
        `Redis ${round(result.redisCpuMsPerMessage, 2)}`,
    );
    return result;
  } finally {
    await queue.close();
  }
}
