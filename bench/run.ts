/**
 * `npm run bench`: recoup against the bare engines it runs on (issue 7), in one run on one machine.
 * Creates a fresh database and Redis prefix, runs the six measurements, prints a table on stdout
 * (progress on stderr), writes bench/results.json (or BENCH_OUTPUT) and removes what it created,
 * on failure too. BENCH_QUICK=1 shrinks every size for a smoke run under a minute.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { applyCadences } from '../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../src/cadences/parse-cadence.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { TemplateRenderer } from '../src/messages/template-renderer.js';
import { bundledCadencesDir } from '../src/app/service.js';
import { compileHosts } from './child-process.js';
import { afternoonZone, progress, round, withAppName, workerAppName, type BenchContext } from './context.js';
import { measureDispatch } from './dispatch.js';
import {
  benchPrefix,
  createBenchDatabase,
  deletePrefix,
  enablePgStatStatements,
  machineInfo,
  type BenchDatabase,
} from './infrastructure.js';
import { measureIntake } from './intake.js';
import { measureLateness } from './lateness.js';
import { readOptions } from './options.js';
import { measureQueueBaseline } from './queue-baseline.js';
import { judge, renderTable, writeResults, type Figures } from './report.js';
import { measureScale } from './scale.js';
import type { SeedCadence } from './seed.js';
import { WorkerProcess } from './worker-process.js';

const options = readOptions();
const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
redis.on('error', (err) => progress(`redis: ${err.message}`));
const prefix = benchPrefix();
let database: BenchDatabase | undefined;
let pool: pg.Pool | undefined;
let worker: WorkerProcess | undefined;

let cleaning: Promise<void> | undefined;
/** Stops the child processes, drops the database, deletes the prefix. Safe to call twice. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await worker?.stop().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    if (options.keep) {
      progress(`BENCH_KEEP: database ${database?.name ?? '(none)'} and keys under ${prefix} kept`);
      redis.disconnect();
      return;
    }
    if (database) {
      await database.drop().catch((err: unknown) => progress(`could not drop ${database?.name}: ${String(err)}`));
    }
    if (redis.status === 'ready') {
      const keys = await deletePrefix(redis, prefix).catch(() => -1);
      progress(
        `cleaned up: database ${database?.name ?? '(none)'} dropped, ${keys} Redis keys under ${prefix} deleted`,
      );
      await redis.quit().catch(() => undefined);
    } else {
      redis.disconnect();
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** Migrates the fresh database with recoup's migrations and applies the bundled cadences, as `recoup start` does. */
async function prepareDatabase(url: string): Promise<{ cadence: SeedCadence; steps: number }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-bench-'));
  const recoup = await openDatabase({ url, dataDir, poolSize: 2 });
  try {
    await recoup.migrate();
    const renderer = TemplateRenderer.load(loadConfig({}).templatesDir);
    const checks = { templates: renderer, requiredLocales: ['en', 'zh-CN'] };
    let cadence: SeedCadence | undefined;
    let steps = 0;
    for (const file of fs.readdirSync(bundledCadencesDir).filter((f) => f.endsWith('.yaml'))) {
      const text = fs.readFileSync(path.join(bundledCadencesDir, file), 'utf8');
      const parsed = parseCadenceDocument(text, checks);
      const applied = await applyCadences(recoup.db, parsed, text);
      const chosen = parsed.find((c) => c.name === 'default');
      const version = applied.find((a) => a.name === 'default')?.version;
      const first = chosen?.steps[0];
      if (chosen && first && version !== undefined) {
        cadence = {
          name: chosen.name,
          version,
          firstStepAfterMs: first.afterMs,
          stepsAfterMs: chosen.steps.map((s) => s.afterMs),
          expireAfterMs: chosen.expireAfterMs,
        };
        steps = chosen.steps.length;
      }
    }
    if (!cadence) throw new Error('the bundled default cadence is missing');
    return { cadence, steps };
  } finally {
    await recoup.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const mode = options.quick ? 'quick' : 'full';
  progress(
    `${mode} run: N ${options.n}, concurrency ${options.concurrency}, ${options.connections} HTTP connections, ` +
      `steady load ${options.latenessSeconds} s, scale ${options.scaleSmall} / ${options.scaleLarge} / ` +
      `${options.scaleMillion} pending`,
  );
  progress('compiling src/ and bench/ for the worker and server processes (tsc, incremental)');
  compileHosts();
  await redis.connect();
  database = await createBenchDatabase(options.adminDatabaseUrl);
  progress(`database ${database.name}, Redis prefix ${prefix}`);
  const { cadence, steps } = await prepareDatabase(database.url);
  pool = new pg.Pool({ connectionString: database.url, max: 4 });
  pool.on('error', () => undefined);
  const pgStatStatements = await enablePgStatStatements(pool);
  if (!pgStatStatements) progress('pg_stat_statements is not preloaded: counting statements at the worker driver');
  const machine = await machineInfo(redis, pool);
  worker = await WorkerProcess.start(
    {
      databaseUrl: withAppName(database.url, workerAppName),
      redisUrl: options.redisUrl,
      concurrency: options.concurrency,
      providerLatencyMs: options.providerLatencyMs,
    },
    options.cpuProfileDir,
  );

  const ctx: BenchContext = {
    options,
    databaseUrl: database.url,
    pool,
    redis,
    prefix,
    cadence,
    timezone: afternoonZone(),
    worker,
  };

  const workerStart = await worker.snapshot();
  const queue = await measureQueueBaseline(ctx);
  const dispatch = await measureDispatch(ctx, pgStatStatements);
  ctx.dispatchPerS = dispatch.perS;
  const intake = await measureIntake(ctx);
  const lateness = await measureLateness(ctx);
  const scale = await measureScale(ctx);
  const workerAtEnd = await worker.snapshot();

  const pgBytesPerRecovery = intake.pgBytesPerRecovery + steps * dispatch.pgBytesPerMessage;
  const figures: Figures = {
    queue_baseline_jobs_per_s: round(queue.jobsPerS, 1),
    dispatch_per_s: round(dispatch.perS, 1),
    dispatch_ratio: round(dispatch.perS / queue.jobsPerS, 3),
    intake_baseline_per_s: round(intake.baselinePerS, 1),
    intake_per_s: round(intake.perS, 1),
    intake_ratio: round(intake.ratio, 3),
    lateness_p50_ms: round(lateness.steady.p50Ms, 1),
    lateness_p99_ms: round(lateness.steady.p99Ms, 1),
    lateness_max_ms: round(lateness.steady.maxMs, 1),
    burst_drain_s: round(lateness.burstDrainS, 2),
    scale_ratio: round(scale.large.perS / scale.small.perS, 3),
    redis_bytes_per_pending_recovery: round(scale.redisBytesPerPendingRecovery, 1),
    pending_1m_dispatch_ratio: round(scale.million.perS / scale.small.perS, 3),
    promoter_pass_ms_at_1m: round(scale.steadyPass.ms, 1),
    pg_bytes_per_pending_recovery: round(scale.pgBytesPerPendingRecovery),
    intake_p99_ms_at_1m: scale.intakeP99MsMillion,
    pg_bytes_per_recovery: round(pgBytesPerRecovery),
    redis_commands_per_message: round(dispatch.redisCommandsPerMessage, 2),
    pg_statements_per_message: round(dispatch.pgStatementsPerMessage, 2),
    worker_peak_rss_mb: round(Math.max(worker.dispatchPeakRssMb, workerAtEnd.peakRssMb), 1),
    // Context for the figures above.
    queue_baseline_add_per_s: round(queue.addPerS, 1),
    queue_baseline_redis_commands_per_job: round(queue.redisCommandsPerJob, 2),
    dispatch_sent: dispatch.sent,
    redis_client_commands_per_message: round(dispatch.redisClientCommandsPerMessage, 2),
    pg_statements_source: dispatch.pgStatementsSource,
    intake_baseline_p99_ms: intake.baselineLatencyP99Ms,
    intake_p99_ms: intake.latencyP99Ms,
    intake_baseline_errors: intake.baselineErrors,
    intake_errors: intake.errors,
    intake_pg_statements_per_event: round(intake.pgStatementsPerEvent, 2),
    lateness_steady_rate_per_s: round(lateness.steadyRatePerS, 1),
    lateness_steady_messages: lateness.steady.count,
    burst_size: lateness.burstSize,
    burst_expected_s: round(lateness.burstExpectedS, 2),
    burst_lateness_p50_ms: round(lateness.burst.p50Ms, 1),
    burst_lateness_p99_ms: round(lateness.burst.p99Ms, 1),
    scale_small_pending: scale.small.pending,
    scale_large_pending: scale.large.pending,
    scale_million_pending: scale.million.pending,
    scale_due: scale.small.due,
    scale_small_per_s: round(scale.small.perS, 1),
    scale_large_per_s: round(scale.large.perS, 1),
    scale_million_per_s: round(scale.million.perS, 1),
    scale_samples: scale.small.samplesPerS.length,
    scale_small_worker_cpu_ms_per_job: round(scale.small.workerCpuMsPerJob, 3),
    scale_large_worker_cpu_ms_per_job: round(scale.large.workerCpuMsPerJob, 3),
    scale_million_worker_cpu_ms_per_job: round(scale.million.workerCpuMsPerJob, 3),
    // What the rate ratios tend to when the worker is CPU-bound; unlike bursts of a few seconds'
    // rates, CPU time does not move with the machine's other load.
    scale_cpu_ratio: round(scale.small.workerCpuMsPerJob / scale.large.workerCpuMsPerJob, 3),
    pending_1m_cpu_ratio: round(scale.small.workerCpuMsPerJob / scale.million.workerCpuMsPerJob, 3),
    scale_seed_per_s: round(scale.seedPerS),
    scale_pending_at_1m: scale.pendingAtMillion,
    redis_key_bytes_per_pending_recovery: round(scale.redisKeyBytesPerPendingRecovery, 1),
    wakeups_in_redis_at_1m: scale.wakeupsInRedis,
    promoter_first_pass_ms_at_1m: round(scale.firstPass.ms, 1),
    promoter_first_pass_promoted: scale.firstPass.promoted,
    promoter_steady_pass_promoted: scale.steadyPass.promoted,
    promoter_pass_after_flush_ms_at_1m: round(scale.afterFlushPass.ms, 1),
    promoter_pass_after_flush_resynced: scale.afterFlushPass.resynced,
    promoter_pass_after_flush_promoted: scale.afterFlushPass.promoted,
    intake_p99_ms_at_10k: scale.intakeP99MsSmall,
    intake_per_s_at_10k: round(scale.intakePerSSmall, 1),
    intake_per_s_at_1m: round(scale.intakePerSMillion, 1),
    pg_bytes_per_recovery_intake: round(intake.pgBytesPerRecovery),
    pg_bytes_per_message: round(dispatch.pgBytesPerMessage),
    cadence_steps: steps,
    // CPU time per job/event, summed over the processes involved: on a machine shared with other
    // work these hold better than rates, and their ratio is what the rate ratio tends to when CPU-bound.
    queue_baseline_cpu_ms_per_job: round(queue.workerCpuMsPerJob, 3),
    queue_baseline_redis_cpu_ms_per_job: round(queue.redisCpuMsPerJob, 3),
    dispatch_worker_cpu_ms_per_message: round(dispatch.workerCpuMsPerMessage, 3),
    dispatch_pg_cpu_ms_per_message: round(dispatch.pgCpuMsPerMessage, 3),
    dispatch_redis_cpu_ms_per_message: round(dispatch.redisCpuMsPerMessage, 3),
    dispatch_cpu_ratio: round(
      (queue.workerCpuMsPerJob + queue.redisCpuMsPerJob) /
        (dispatch.workerCpuMsPerMessage + dispatch.pgCpuMsPerMessage + dispatch.redisCpuMsPerMessage),
      3,
    ),
    intake_baseline_cpu_ms_per_event: round(intake.baselineCpuMsPerEvent, 3),
    intake_baseline_pg_cpu_ms_per_event: round(intake.baselinePgCpuMsPerEvent, 3),
    intake_cpu_ms_per_event: round(intake.cpuMsPerEvent, 3),
    intake_pg_cpu_ms_per_event: round(intake.pgCpuMsPerEvent, 3),
    intake_cpu_ratio: round(
      (intake.baselineCpuMsPerEvent + intake.baselinePgCpuMsPerEvent) / (intake.cpuMsPerEvent + intake.pgCpuMsPerEvent),
      3,
    ),
    worker_rss_after_start_mb: round(workerStart.rssMb, 1),
  };
  const outcomes = judge(figures);
  const results = {
    ...figures,
    mode,
    finished_at: new Date().toISOString(),
    load_average_at_end: os.loadavg().map((l) => round(l, 2)),
    duration_s: round((Date.now() - started) / 1000, 1),
    machine,
    // Every sample behind the medians scale_small_per_s and scale_large_per_s.
    scale_samples_per_s: {
      small: scale.small.samplesPerS,
      large: scale.large.samplesPerS,
      million: scale.million.samplesPerS,
    },
    // 1-minute load average as each sample ended: other work on the machine moves the rates.
    scale_sample_load_averages: {
      small: scale.small.loadAverages,
      large: scale.large.loadAverages,
      million: scale.million.loadAverages,
    },
    settings: {
      n: options.n,
      worker_processes: 1,
      concurrency: options.concurrency,
      http_connections: options.connections,
      intake_seconds: options.intakeSeconds,
      lateness_seconds: options.latenessSeconds,
      provider_latency_ms: options.providerLatencyMs,
      cadence: `${cadence.name}@${cadence.version}`,
      customer_timezone: ctx.timezone,
    },
    targets: outcomes,
    targets_met: outcomes.filter((o) => o.met).length,
    targets_total: outcomes.length,
  };
  writeResults(options.outputPath, results);
  process.stdout.write(`\n${renderTable(figures, outcomes, machine, mode)}\n\n`);
  progress(`results written to ${options.outputPath} (${results.duration_s} s)`);
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await cleanup();
}
process.exit(failed ? 1 : 0);
