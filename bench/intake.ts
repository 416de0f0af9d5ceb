import autocannon from 'autocannon';
import { BenchChild } from './child-process.js';
import { intakeAppName, progress, round, withAppName, type BenchContext } from './context.js';
import { allTableBytes, pgBackendCpu, pgCpuDelta } from './infrastructure.js';
import type { IntakeHostArgs, IntakeMode } from './intake-host.js';

export interface IntakeResult {
  baselinePerS: number;
  perS: number;
  ratio: number;
  /** Requests that did not get a 2xx (should be 0) in the measured runs. */
  baselineErrors: number;
  errors: number;
  baselineLatencyP99Ms: number;
  latencyP99Ms: number;
  pgStatementsPerEvent: number;
  /** Growth of every recoup table per recovery started by a real payment.failed event. */
  pgBytesPerRecovery: number;
  /** CPU time of the HTTP process, and of the Postgres backends serving it, per event handled. */
  baselineCpuMsPerEvent: number;
  cpuMsPerEvent: number;
  baselinePgCpuMsPerEvent: number;
  pgCpuMsPerEvent: number;
}

export const baselineTable = 'bench_intake';
const apiKey = 'bench-ingest-key-0123456789abcdef';

/** One payment.failed event with fresh event, order and customer ids: each one starts a recovery. */
export function paymentFailedEvent(tag: string, n: number) {
  const id = `${tag}_${process.pid}_${n}`;
  return {
    id: `evt_${id}`,
    type: 'payment.failed',
    occurred_at: new Date().toISOString(),
    order: {
      id: `ord_${id}`,
      amount: 12900,
      currency: 'CNY',
      description: '2 items',
      customer: {
        id: `cus_${id}`,
        name: 'Li Lei',
        email: `li.${n}@example.com`,
        phone: `+86138${String(n % 100_000_000).padStart(8, '0')}`,
        locale: 'zh-CN',
        timezone: 'Asia/Shanghai',
      },
    },
    payment: {
      gateway: 'stripe',
      method: 'card',
      failure_code: 'card_declined',
      failure_message: 'Your card was declined.',
    },
  };
}

export interface LoadResult {
  perS: number;
  ok: number;
  errors: number;
  latencyP99Ms: number;
}

/** POSTs unique events at `connections` concurrency for `seconds`; counts 2xx answers per second. */
async function load(url: string, tag: string, seconds: number, connections: number): Promise<LoadResult> {
  let n = 0;
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/v1/events',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
        // A new body per request: unique ids, so every request is real work, never a duplicate.
        setupRequest: (request) => ({ ...request, body: JSON.stringify(paymentFailedEvent(tag, ++n)) }),
      },
    ],
  });
  const ok = result['2xx'];
  return {
    perS: ok / result.duration,
    ok,
    errors: result.non2xx + result.errors + result.timeouts,
    latencyP99Ms: result.latency.p99,
  };
}

interface RunResult extends LoadResult {
  pgStatements: number;
  cpuMs: number;
  pgCpuMs: number;
}

/** Starts the server of `mode` in the intake process, warms it up, then measures. */
async function run(
  ctx: BenchContext,
  child: BenchChild,
  mode: IntakeMode,
  tag = mode === 'service' ? 'i' : 'b',
): Promise<RunResult> {
  const url = String((await child.request('start', { mode }, 120_000)).url);
  const { intakeWarmupSeconds: warmup, intakeSeconds: seconds, connections } = ctx.options;
  await load(url, `${tag}w`, warmup, connections);
  await child.request('settle', { timeoutMs: 60_000 }, 70_000);
  const before = await child.request('snapshot');
  const pgCpuBefore = await pgBackendCpu(ctx.pool, intakeAppName);
  progress(`intake ${mode}: ${connections} connections for ${seconds} s`);
  const measured = await load(url, `${tag}m`, seconds, connections);
  // Requests cut off at the end of the run were still accepted: let them finish before counting.
  await child.request('settle', { timeoutMs: 60_000 }, 70_000);
  const after = await child.request('snapshot');
  const pgCpuMs = pgCpuDelta(pgCpuBefore, await pgBackendCpu(ctx.pool, intakeAppName));
  progress(
    `intake ${mode}: ${Math.round(measured.perS)} events/s, p99 ${measured.latencyP99Ms} ms, ${measured.errors} errors`,
  );
  return {
    ...measured,
    pgStatements: Number(after.pgStatements) - Number(before.pgStatements),
    cpuMs: Number(after.cpuMs) - Number(before.cpuMs),
    pgCpuMs,
  };
}

function startIntakeChild(ctx: BenchContext) {
  const args: IntakeHostArgs = {
    databaseUrl: withAppName(ctx.databaseUrl, intakeAppName),
    redisUrl: ctx.options.redisUrl,
    prefix: `${ctx.prefix}i`,
    apiKey,
  };
  return BenchChild.start(
    'intake-host.ts',
    { ...args },
    {
      name: 'intake process',
      cpuProfileDir: ctx.options.cpuProfileDir,
    },
  );
}

/**
 * recoup's POST /v1/events alone, as in measureIntake, with whatever backlog the database holds now:
 * how intake holds up as the number of pending recoveries grows. `tag` (one letter, not `i` or `b`)
 * keeps its events apart from the other runs'.
 */
export async function measureServiceIntake(ctx: BenchContext, tag: string): Promise<LoadResult> {
  const { child } = await startIntakeChild(ctx);
  try {
    return await run(ctx, child, 'service', tag);
  } finally {
    await child.stop(30_000);
  }
}

/**
 * The same unique payment.failed events, first to a bare Fastify route doing one INSERT per
 * request, then to recoup's real POST /v1/events, served by one child process in turn.
 */
export async function measureIntake(ctx: BenchContext): Promise<IntakeResult> {
  await ctx.pool.query(
    `create table if not exists ${baselineTable} (id text primary key, received_at timestamptz not null default now(),
                                                  payload jsonb not null)`,
  );
  const { child } = await startIntakeChild(ctx);
  try {
    const baseline = await run(ctx, child, 'baseline');
    const bytesBefore = await allTableBytes(ctx.pool, [baselineTable]);
    const recoveriesBefore = await countIntakeRecoveries(ctx);
    const service = await run(ctx, child, 'service');
    const recoveries = (await countIntakeRecoveries(ctx)) - recoveriesBefore;
    const bytes = (await allTableBytes(ctx.pool, [baselineTable])) - bytesBefore;
    if (recoveries === 0) throw new Error('intake: no recovery was started');
    // Per event actually handled (answered in the window or finished after it).
    const handled = (r: RunResult, count: number) => Math.max(1, count, r.ok);
    const baselineHandled = handled(baseline, await countBaselineRows(ctx, 'bm'));
    const serviceHandled = handled(service, await countIntakeRecoveries(ctx, 'im'));

    const result: IntakeResult = {
      baselinePerS: baseline.perS,
      perS: service.perS,
      ratio: service.perS / baseline.perS,
      baselineErrors: baseline.errors,
      errors: service.errors,
      baselineLatencyP99Ms: baseline.latencyP99Ms,
      latencyP99Ms: service.latencyP99Ms,
      pgStatementsPerEvent: service.pgStatements / serviceHandled,
      pgBytesPerRecovery: bytes / recoveries,
      baselineCpuMsPerEvent: baseline.cpuMs / baselineHandled,
      cpuMsPerEvent: service.cpuMs / serviceHandled,
      baselinePgCpuMsPerEvent: baseline.pgCpuMs / baselineHandled,
      pgCpuMsPerEvent: service.pgCpuMs / serviceHandled,
    };
    progress(
      `intake: ratio ${round(result.ratio, 2)}; CPU ms per event: baseline ${round(result.baselineCpuMsPerEvent, 2)} + ` +
        `Postgres ${round(result.baselinePgCpuMsPerEvent, 2)}, recoup ${round(result.cpuMsPerEvent, 2)} + ` +
        `Postgres ${round(result.pgCpuMsPerEvent, 2)}; ${Math.round(result.pgBytesPerRecovery)} Postgres bytes per recovery`,
    );
    return result;
  } finally {
    await child.stop(30_000);
  }
}

async function countBaselineRows(ctx: BenchContext, tag: string): Promise<number> {
  const { rows } = await ctx.pool.query<{ count: string }>(
    `select count(*)::text as count from ${baselineTable} where id like $1`,
    [`evt\\_${tag}\\_%`],
  );
  return Number(rows[0]?.count ?? 0);
}

async function countIntakeRecoveries(ctx: BenchContext, tag = 'i'): Promise<number> {
  const { rows } = await ctx.pool.query<{ count: string }>(
    `select count(*)::text as count from recoveries where order_id like $1`,
    [`ord\\_${tag}%`],
  );
  return Number(rows[0]?.count ?? 0);
}
