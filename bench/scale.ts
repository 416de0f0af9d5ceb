import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dispatchSettings } from '../src/app/deps.js';
import { CadenceBook } from '../src/cadences/cadence-book.js';
import { loadConfig } from '../src/config.js';
import { openDatabase, type Database } from '../src/db/client.js';
import { systemClock } from '../src/platform/clock.js';
import { createLogger } from '../src/platform/logger.js';
import { StepQueue } from '../src/queue/queues.js';
import { Reconciler, type ReconcileReport } from '../src/recoveries/reconciler.js';
import { progress, round, type BenchContext } from './context.js';
import { allTableBytes, deletePrefix, redisUsedMemory } from './infrastructure.js';
import { baselineTable, measureServiceIntake } from './intake.js';
import { scheduleBatch } from './lateness.js';
import { copyPendingRecoveries, queueWakeups } from './seed.js';
import { completionRate } from './worker-process.js';

export interface BacklogRate {
  pending: number;
  /** Recoveries due at once in each sample. */
  due: number;
  /** Median of the samples. */
  perS: number;
  samplesPerS: number[];
  /** 1-minute load average of the machine when each sample ended. */
  loadAverages: number[];
  /** Worker CPU ms per job completed, over all the samples. */
  workerCpuMsPerJob: number;
}

export interface PromoterPass {
  ms: number;
  promoted: number;
  resynced: number;
}

export interface ScaleResult {
  small: BacklogRate;
  large: BacklogRate;
  million: BacklogRate;
  /** Active recoveries (the backlog and the bursts') when the memory was read. */
  pendingAtMillion: number;
  /** used_memory growth over the stage / pending recoveries, after one promoter pass. */
  redisBytesPerPendingRecovery: number;
  /** MEMORY USAGE of every key under the stage's prefix / pending recoveries (other clients cannot add to it). */
  redisKeyBytesPerPendingRecovery: number;
  /** Wake-ups in Redis (delayed + waiting) after that pass. */
  wakeupsInRedis: number;
  /** Customer + order + recovery rows (with every index) per pending recovery, as COPY wrote them. */
  pgBytesPerPendingRecovery: number;
  seedPerS: number;
  /** The pass right after the 1M were seeded: every wake-up inside the horizon goes to Redis. */
  firstPass: PromoterPass;
  /** The next pass, as a running worker makes every RECONCILE_INTERVAL. */
  steadyPass: PromoterPass;
  /** The pass after the prefix's keys were deleted (a Redis flush): the full re-promotion. */
  afterFlushPass: PromoterPass;
  intakeP99MsSmall: number;
  intakeP99MsMillion: number;
  intakePerSSmall: number;
  intakePerSMillion: number;
}

/** Every seed and burst tag of this stage: this letter and a two-digit number (no tag a prefix of another). */
const stageTag = 'm';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** The Reconciler a worker runs (same deps as startService), in this process so that one pass can be timed. */
async function openReconciler(ctx: BenchContext, queue: StepQueue, prefix: string) {
  const config = loadConfig({ DATABASE_URL: ctx.databaseUrl, QUEUE_PREFIX: prefix });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-bench-reconciler-'));
  const database: Database = await openDatabase({ url: ctx.databaseUrl, dataDir, poolSize: 2 });
  const reconciler = new Reconciler({
    db: database.db,
    redis: ctx.redis,
    queue,
    queuePrefix: prefix,
    cadences: new CadenceBook(database.db),
    clock: systemClock,
    logger: createLogger('warn', 'bench-reconciler'),
    graceMs: config.reconcileGraceMs,
    claimStaleAfterMs: dispatchSettings(config).claimStaleAfterMs,
  });
  return {
    async pass(): Promise<PromoterPass> {
      const started = process.hrtime.bigint();
      const report: ReconcileReport = await reconciler.runOnce();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      return { ms, promoted: report.promoted, resynced: report.resynced };
    },
    async close() {
      await database.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The dispatch rate and the costs of pending recoveries as the backlog grows to a million: the backlog
 * is seeded with COPY as a steady stream of failures leaves it (seed.ts: copyPendingRecoveries), and
 * only Postgres holds the wake-ups beyond the horizon, as in production. At each size a promoter pass
 * puts what is due soon into Redis, then `scaleSamples` bursts of recoveries due at once are dispatched
 * by the worker (with the backlog's own wake-ups firing meanwhile).
 */
export async function measureScale(ctx: BenchContext): Promise<ScaleResult> {
  const { scaleSmall, scaleLarge, scaleMillion } = ctx.options;
  const prefix = `${ctx.prefix}s`;
  const idle = async () => ctx.worker.run('noop', `${ctx.prefix}n`);
  const stageStart = Date.now();
  await idle();
  // The earlier phases' recoveries end here: the backlog is this stage's, and their wake-ups (in other
  // prefixes) would otherwise be promoted into this one as they come within the horizon.
  const ended = await endRecoveries(ctx, '%');
  progress(
    `scale: the earlier phases' ${ended} active recoveries ended (${round((Date.now() - stageStart) / 1000, 1)} s)`,
  );
  const { wakeupHorizonMs: horizonMs } = loadConfig({});
  // Everything of this stage due within the horizon is queued (nothing yet), as on a running
  // installation; without the cursor the first pass would be the full one after a Redis loss.
  await ctx.redis.set(`${prefix}:recoup:promoted`, `bench:${Date.now() + horizonMs}`);
  const queue = new StepQueue(ctx.redis, prefix, { horizonMs });
  const reconciler = await openReconciler(ctx, queue, prefix);
  const memoryAtStart = await redisUsedMemory(ctx.redis);
  let seeded = 0;
  let batch = 0;
  let seedMs = 0;
  let pgBytes = 0;

  /** Adds pending recoveries (COPY), lets autovacuum's work be done now rather than inside a sample. */
  const growTo = async (pending: number) => {
    const count = pending - seeded;
    if (count <= 0) return;
    progress(`scale: seeding ${count} pending recoveries by COPY (${seeded} → ${pending})`);
    const bytesBefore = await allTableBytes(ctx.pool, [baselineTable]);
    const started = Date.now();
    const near = await copyPendingRecoveries(ctx.pool, {
      tag: `${stageTag}${String(batch++).padStart(2, '0')}`,
      count,
      now: new Date(),
      timezone: ctx.timezone,
      cadence: ctx.cadence,
      horizonMs,
    });
    seedMs += Date.now() - started;
    pgBytes += (await allTableBytes(ctx.pool, [baselineTable])) - bytesBefore;
    // What the producers put in Redis when these recoveries started or moved: their wake-ups due
    // within the horizon (the rest enter it with later promotion passes).
    await queueWakeups(queue, near);
    seeded = pending;
    const vacuumStarted = Date.now();
    await ctx.pool.query('vacuum (analyze) customers, orders, recoveries, messages');
    progress(
      `scale: ${count} seeded in ${round((Date.now() - started) / 1000, 1)} s ` +
        `(vacuum analyze ${round((Date.now() - vacuumStarted) / 1000, 1)} s)`,
    );
  };

  /** Runs the worker role until the webhook sequencer has numbered every event written so far. */
  const sequenceEvents = async () => {
    const started = Date.now();
    await ctx.worker.run('dispatch', prefix);
    const unnumbered = async () =>
      (await ctx.pool.query<{ n: number }>('select count(*)::int as n from outbound_events where position is null'))
        .rows[0]?.n ?? 0;
    const before = await unnumbered();
    while ((await unnumbered()) > 0) await new Promise((resolve) => setTimeout(resolve, 250));
    await idle();
    progress(`scale: ${before} shop events numbered in ${round((Date.now() - started) / 1000, 1)} s`);
  };

  const rateAt = async (pending: number): Promise<BacklogRate> => {
    const first = await reconciler.pass();
    progress(`scale: promoter pass at ${pending} pending: ${round(first.ms)} ms, ${first.promoted} promoted`);
    await ctx.worker.run('dispatch', prefix);
    const capacity = ctx.dispatchPerS ?? Infinity;
    const { scaleDue } = ctx.options;
    const n = Math.min(scaleDue, Math.max(Math.min(500, scaleDue), Math.round(capacity * 30)));
    const samples: number[] = [];
    const loads: number[] = [];
    let cpuMs = 0;
    let completed = 0;
    for (let k = 1; k <= ctx.options.scaleSamples; k++) {
      await autovacuumDone(ctx);
      await ctx.worker.reset();
      const tag = `${stageTag}${String(batch++).padStart(2, '0')}`;
      const at = await scheduleBatch(ctx, queue, tag, n, 0);
      const done = await ctx.worker.waitForCompleted(n, {
        timeoutMs: at.getTime() - Date.now() + 600_000,
        onTick: (c) => progress(`scale (${pending} pending): ${c}/${n}`),
      });
      samples.push(completionRate(done));
      loads.push(round(os.loadavg()[0] ?? NaN, 2));
      cpuMs += done.cpuMs;
      completed += done.completed;
      progress(`scale: ${Math.round(samples[samples.length - 1] ?? NaN)} messages/s with ${pending} pending`);
    }
    await idle();
    return {
      pending,
      perS: median(samples),
      samplesPerS: samples.map((r) => round(r, 1)),
      loadAverages: loads,
      workerCpuMsPerJob: cpuMs / Math.max(1, completed),
      due: n,
    };
  };

  try {
    await growTo(scaleSmall);
    const small = await rateAt(scaleSmall);
    const intakeSmall = await measureServiceIntake(ctx, 'x');
    // Its thousands of recoveries started within seconds are no steady stream: they leave the backlog.
    await endRecoveries(ctx, 'ord\\_x%');
    // And the shop events they wrote are numbered now, not by the worker during the next size's bursts.
    await sequenceEvents();
    await growTo(scaleLarge);
    const large = await rateAt(scaleLarge);
    await growTo(scaleMillion);

    const firstPass = await reconciler.pass();
    const steadyPass = await reconciler.pass();
    progress(
      `scale: promoter passes at ${scaleMillion} pending: ${round(firstPass.ms)} ms (${firstPass.promoted} promoted), ` +
        `then ${round(steadyPass.ms)} ms`,
    );
    const memory = (await redisUsedMemory(ctx.redis)) - memoryAtStart;
    const keyBytes = await prefixKeyBytes(ctx, prefix);
    const wakeupsInRedis = (await queue.queue.getDelayedCount()) + (await queue.queue.getWaitingCount());
    const pending = await countPending(ctx);

    // A Redis flush: every key of the queue and the sentinel gone; the next pass re-promotes.
    await deletePrefix(ctx.redis, prefix);
    const afterFlushPass = await reconciler.pass();
    progress(
      `scale: pass after a flush: ${round(afterFlushPass.ms)} ms ` +
        `(${afterFlushPass.resynced} re-queued, ${afterFlushPass.promoted} promoted)`,
    );
    const million = await rateAt(scaleMillion);
    const intakeMillion = await measureServiceIntake(ctx, 'y');

    return {
      small,
      large,
      million,
      pendingAtMillion: pending,
      redisBytesPerPendingRecovery: memory / pending,
      redisKeyBytesPerPendingRecovery: keyBytes / pending,
      wakeupsInRedis,
      pgBytesPerPendingRecovery: pgBytes / seeded,
      seedPerS: (seeded * 1000) / seedMs,
      firstPass,
      steadyPass,
      afterFlushPass,
      intakeP99MsSmall: intakeSmall.latencyP99Ms,
      intakeP99MsMillion: intakeMillion.latencyP99Ms,
      intakePerSSmall: intakeSmall.perS,
      intakePerSMillion: intakeMillion.perS,
    };
  } finally {
    await reconciler.close();
    await queue.close();
  }
}

/**
 * Waits (at most a minute) until no autovacuum worker runs in the bench database: one that starts
 * inside a sample (the bursts' messages, the rows just seeded) takes one of the two cores from it.
 */
async function autovacuumDone(ctx: BenchContext): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    const { rows } = await ctx.pool.query<{ count: string }>(
      `select count(*)::text as count from pg_stat_activity
        where backend_type = 'autovacuum worker' and datname = current_database()`,
    );
    if (Number(rows[0]?.count ?? 0) === 0 || Date.now() > until) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Ends the active recoveries of the orders whose id is like `orderIds` (they keep their rows). */
async function endRecoveries(ctx: BenchContext, orderIds: string): Promise<number> {
  const client = await ctx.pool.connect();
  try {
    await client.query('begin');
    // Bench bookkeeping, no recovery.ended events (the trigger's once-per-transaction list makes
    // ending tens of thousands in one statement take minutes).
    await client.query('set local session_replication_role = replica');
    const { rowCount } = await client.query(
      `update recoveries set state = 'stopped', ended_reason = 'bench_phase_over', ended_at = now(), next_run_at = null
        where state = 'active' and order_id like $1`,
      [orderIds],
    );
    await client.query('commit');
    return rowCount ?? 0;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Active recoveries: the stage's backlog and its bursts'. */
async function countPending(ctx: BenchContext): Promise<number> {
  const { rows } = await ctx.pool.query<{ count: string }>(
    `select count(*)::text as count from recoveries where state = 'active'`,
  );
  return Number(rows[0]?.count ?? NaN);
}

/** Sum of MEMORY USAGE over the keys under `prefix` (SCAN, pipelined). */
async function prefixKeyBytes(ctx: BenchContext, prefix: string): Promise<number> {
  let cursor = '0';
  let total = 0;
  do {
    const [next, keys] = await ctx.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5_000);
    cursor = next;
    if (keys.length > 0) {
      const pipeline = ctx.redis.pipeline();
      for (const key of keys) pipeline.memory('USAGE', key, 'SAMPLES', '0');
      for (const [, bytes] of (await pipeline.exec()) ?? []) total += Number(bytes ?? 0);
    }
  } while (cursor !== '0');
  return total;
}
