import { fileURLToPath } from 'node:url';

/** What one `npm run bench` measures and how hard it pushes; read once from the environment. */
export interface BenchOptions {
  /** BENCH_QUICK=1: every size shrunk so the whole run takes under a minute (the CI smoke test). */
  quick: boolean;
  /** BENCH_DATABASE_URL: admin connection used to create (and drop) a fresh `recoup_bench_*` database. */
  adminDatabaseUrl: string;
  /** BENCH_REDIS_URL. Every key lives under a fresh prefix that is deleted at the end. */
  redisUrl: string;
  /** BENCH_OUTPUT: where results go. Default bench/results.json. */
  outputPath: string;
  /** BENCH_N: jobs in the queue baseline, recoveries in the dispatch run and in the burst. Default 20,000 (quick 300). */
  n: number;
  /** BENCH_CONCURRENCY: step jobs per worker, for the baseline and recoup alike. Default 16 (WORKER_CONCURRENCY's default). */
  concurrency: number;
  /** HTTP connections of the load generator. Default 100. */
  connections: number;
  /** Seconds of load per intake run, after a warm-up. Default 10 (quick 2). */
  intakeSeconds: number;
  intakeWarmupSeconds: number;
  /** Seconds of steady load at half the dispatch capacity. Default 30 (quick 3). */
  latenessSeconds: number;
  /**
   * Pending recoveries in the three scale runs, seeded as a steady stream of failures leaves them
   * (every step of the default cadence, expiry at 72 h). Default 10,000 / 200,000 / 1,000,000 (quick
   * 1,000 / 3,000 / 10,000); BENCH_SCALE_MILLION for another largest size.
   */
  scaleSmall: number;
  scaleLarge: number;
  scaleMillion: number;
  /** Recoveries due at once whose dispatch rate is measured in each scale run. Default 5,000 (quick 150), at most 30 s of
   * dispatch at the measured capacity so that the default run stays under 10 minutes on a slow machine. */
  scaleDue: number;
  /**
   * BENCH_SCALE_SAMPLES: rate measurements at each backlog size; the median counts. One burst lasts
   * a few seconds, so a single sample moves by ±20 % with the machine. Default 3 (quick 1).
   */
  scaleSamples: number;
  /**
   * BENCH_BURST: recoveries due at the same instant in the burst. Default N, at most 60 s of dispatch
   * at the measured capacity (the drain time is compared with size / capacity at any size).
   */
  burst: number | undefined;
  /** BENCH_PROVIDER_LATENCY_MS: how long the fake providers take to accept a message. Default 0: recoup's own cost. */
  providerLatencyMs: number;
  /** BENCH_KEEP=1: keep the database and the Redis keys for inspection (their names are printed). */
  keep: boolean;
  /** BENCH_CPU_PROF=dir: worker and intake processes write V8 CPU profiles there (for `--cpu-prof` analysis). */
  cpuProfileDir: string | undefined;
}

function int(value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`expected a whole number, got "${value}"`);
  return parsed;
}

export function readOptions(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const n = int(env.BENCH_N, quick ? 300 : 20_000);
  return {
    quick,
    adminDatabaseUrl: env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379',
    outputPath: env.BENCH_OUTPUT || fileURLToPath(new URL('./results.json', import.meta.url)),
    n,
    concurrency: int(env.BENCH_CONCURRENCY, 16),
    connections: int(env.BENCH_CONNECTIONS, 100),
    intakeSeconds: quick ? 2 : 10,
    intakeWarmupSeconds: quick ? 1 : 2,
    latenessSeconds: quick ? 3 : 30,
    scaleSmall: quick ? 1_000 : 10_000,
    scaleLarge: quick ? 3_000 : 200_000,
    scaleMillion: int(env.BENCH_SCALE_MILLION, quick ? 10_000 : 1_000_000),
    scaleDue: quick ? 150 : 5_000,
    scaleSamples: Math.max(1, int(env.BENCH_SCALE_SAMPLES, quick ? 1 : 3)),
    burst: env.BENCH_BURST ? int(env.BENCH_BURST, n) : undefined,
    providerLatencyMs: int(env.BENCH_PROVIDER_LATENCY_MS, 0),
    keep: env.BENCH_KEEP === '1',
    cpuProfileDir: env.BENCH_CPU_PROF || undefined,
  };
}
