/**
 * The fault harness (`npm run test:chaos`): a real multi-process recoup (one `recoup server`,
 * several `recoup worker`s) on loopback, against a fresh Postgres database and a Redis server
 * of its own, with fake Twilio and SMTP servers it controls. It feeds orders on a seconds-long
 * cadence, pays some of them at random moments (as the shop's events or as signed gateway
 * webhooks delivered twice, abandoned and resent), has some customers reply STOP or change their
 * number while reminders are due, and meanwhile kills workers (at random and at the two
 * dangerous fault points), flushes and restarts Redis, terminates the workers' Postgres
 * connections, makes the providers fail, stops a worker gracefully under load, freezes one
 * (SIGSTOP) for longer than the send lease, and runs every worker on a skewed clock. Then it
 * checks the guarantees and prints a summary; the exit code is non-zero if one was broken.
 * Every answer the guarantees are measured from is timed when the harness received it.
 *
 * Everything random comes from one seed (CHAOS_SEED, printed): the fault plan, the orders, the
 * payment moments, the providers' faults. Process scheduling is not reproducible, so a seed
 * replays the same plan, not the same interleaving.
 *
 * Never touches the shared Redis on 6379: it starts `redis-server` on a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { openDatabase } from '../../src/db/client.js';
import { sandboxWebhookSecret } from '../../src/app/deps.js';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { stepJobId, stepQueueName } from '../../src/queue/queues.js';
import { sendLeaseFor } from '../../src/recoveries/send-lease.js';
import { startFakeSmtp, mulberry32, type FakeSmtp } from '../helpers/fake-smtp.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function envNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${name}: expected a number, got "${text}"`);
  return value;
}

/** Knobs, all from the environment; the defaults are the bounded CI run. */
const options = {
  orders: envNumber('CHAOS_ORDERS', 300),
  seed: envNumber('CHAOS_SEED', 20261126),
  workers: envNumber('CHAOS_WORKERS', 3),
  /** Orders arrive evenly over this many seconds. Default: about 15 orders a second, at least 20 s. */
  ingestSeconds: envNumber('CHAOS_INGEST_SECONDS', 0),
  /** Share of orders paid at a random moment of their recovery. */
  payRate: envNumber('CHAOS_PAY_RATE', 0.4),
  /** Random SIGKILLs of workers during the run (besides the fault-point crashes). Default: 3 + orders/300, at most 40. */
  kills: envNumber('CHAOS_KILLS', 0),
  twilio500: envNumber('CHAOS_TWILIO_500_RATE', 0.03),
  twilio429: envNumber('CHAOS_TWILIO_429_RATE', 0.03),
  twilioTimeout: envNumber('CHAOS_TWILIO_TIMEOUT_RATE', 0.01),
  twilioDrop: envNumber('CHAOS_TWILIO_DROP_RATE', 0.01),
  smtp4xx: envNumber('CHAOS_SMTP_4XX_RATE', 0.03),
  smtp5xx: envNumber('CHAOS_SMTP_5XX_RATE', 0.01),
  /** Share of paid orders whose payment comes as a signed sandbox gateway webhook instead of a shop event. */
  gatewayPayShare: envNumber('CHAOS_GATEWAY_PAY_SHARE', 0.5),
  /** Share of orders whose customer replies STOP while reminders are due. */
  stopRate: envNumber('CHAOS_STOP_RATE', 0.08),
  /** Share of orders whose customer gets a new phone number (customer.updated) while reminders are due. */
  phoneChangeRate: envNumber('CHAOS_PHONE_CHANGE_RATE', 0.08),
  /** Each worker's clock runs up to this many ms ahead of or behind the others' (0: no skew). */
  clockSkewMs: envNumber('CHAOS_CLOCK_SKEW_MS', 1_500),
  /** Share of worker (re)starts during the run that crash themselves at a fault point. */
  faultPointRate: envNumber('CHAOS_FAULT_POINT_RATE', 0.5),
  /** HTTP requests in flight at once. */
  concurrency: envNumber('CHAOS_CONCURRENCY', 12),
  /** Keep the per-process logs (printed path) even when the run passes. */
  keepLogs: process.env.CHAOS_KEEP_LOGS === '1',
  /** Keep the run's database (its name is printed) for a look at what the checks found. */
  keepDatabase: process.env.CHAOS_KEEP_DB === '1',
};
if (options.ingestSeconds <= 0) options.ingestSeconds = Math.max(20, Math.ceil(options.orders / 15));
if (options.kills <= 0) options.kills = Math.min(40, 3 + Math.floor(options.orders / 300));

// Second-level cadence: three steps over 8 s, over after 30 s (slack for a busy machine).
const cadenceYaml = `
name: default
description: fault harness cadence
match: { failure_categories: [any], min_amount: 0, currencies: [any] }
expire_after: 30s
steps:
  - { after: 1s, channel: sms,   template: nudge }
  - { after: 4s, channel: email, template: alternative-methods }
  - { after: 8s, channel: sms,   template: last-call }
`;
const cadenceSpanMs = 8_000;
/** When each step of the cadence is due, after its recovery started. */
const stepOffsetsMs = [1_000, 4_000, 8_000];
/**
 * A step with no outcome this long after it was due, while its recovery still ran, is overdue:
 * well past the reconciler's bound for a lost wake-up (3.5 s) and a stalled job's lock (3 s).
 */
const missStepGraceMs = 10_000;
/** Message states that record what became of a step. */
const recordedOutcomes = ['sent', 'delivered', 'failed', 'unknown', 'skipped', 'suppressed', 'deferred'];
const expireAfterMs = 30_000;

/**
 * Settings every recoup process of the harness runs with. The reconciler bound: Redis losing
 * everything (restart, FLUSHALL) is noticed by the next pass, at most RECONCILE_INTERVAL after
 * Redis answers again, which re-queues every active recovery; a single lost wake-up is re-created
 * at most RECONCILE_GRACE + RECONCILE_INTERVAL after it was due.
 */
const serviceEnv = {
  RECONCILE_INTERVAL: '500ms',
  RECONCILE_GRACE: '3s',
  JOB_LOCK_DURATION: '3s',
  PROVIDER_TIMEOUT: '1s',
  SEND_RETRY_BACKOFF: '1s',
  SEND_MAX_ATTEMPTS: '4',
  SHUTDOWN_TIMEOUT: '5s',
  WORKER_CONCURRENCY: '8',
  // Unknown SMS outcomes are looked up at the fake Twilio within the run, not after two minutes.
  SMS_LOOKUP_AFTER: '2s',
  LOG_LEVEL: 'warn',
};
const shutdownTimeoutMs = 5_000;
/** A SIGSTOP lasts this long: past the send lease under the settings above, so claims go stale. */
const pauseMs = sendLeaseFor(1_000, 3_000).leaseMs + 2_000;
/** How long a planned fault waits for its target (a second ready worker, a worker connection). */
const faultReadinessMs = 45_000;
const reconcileBound = 'full loss: <= RECONCILE_INTERVAL (500ms) after Redis is back; one lost wake-up: <= 3.5s late';

interface OrderPlan {
  index: number;
  orderId: string;
  customerId: string;
  phone: string;
  email: string;
  amount: number;
  /** Milliseconds after its payment.failed was accepted; undefined: never paid. */
  payAfterMs: number | undefined;
  /** The payment event is delivered twice (a shop retrying its webhook). */
  payTwice: boolean;
  failedAccepted: boolean;
  /** When the harness saw the payment's 2xx: the payment had committed by then. */
  paidAckAt: number | undefined;
  /** The payment comes as a signed sandbox gateway webhook (else as the shop's payment.succeeded). */
  payViaGateway: boolean;
  /** Milliseconds after payment.failed was accepted when the customer replies STOP; undefined: never. */
  stopAfterMs: number | undefined;
  /** When the harness saw the STOP's 200. */
  stopAckAt: number | undefined;
  /** The number the customer changes to, and when (ms after payment.failed was accepted). */
  newPhone: string | undefined;
  changeAfterMs: number | undefined;
  /** When the harness saw the customer.updated's 2xx. */
  changeAckAt: number | undefined;
}

interface Counters {
  killsRandom: number;
  killsSkipped: number;
  faultPointCrashes: number;
  workerStarts: number;
  pgTerminated: number;
  redisRestarts: number;
  redisFlushes: number;
  sigtermExitMs: number | undefined;
  sigtermExitCode: number | null | undefined;
  shutdownOverruns: number;
  unexpectedExits: number;
  postsFailed: number;
  postRetries: number;
  /** Planned faults that did not happen (no worker to kill, no connection to terminate, an error). */
  faultPlanSkipped: number;
  gatewayDeliveries: number;
  gatewayRedeliveries: number;
  stopsAnswered: number;
  phoneChangesAnswered: number;
  pauses: number;
  /** The largest clock offset a worker ran with. */
  clockOffsetMaxMs: number;
  /** The answer time of a payment the harness makes 1 s into a pause. */
  pausedPaymentAnswerMs: number | undefined;
  paymentsWhilePaused: number;
  /** The slowest answer to a payment made while a worker was stopped (queueing in the harness included). */
  paymentAnswerMsMaxWhilePaused: number;
}

async function main(): Promise<number> {
  const started = Date.now();
  const random = mulberry32(options.seed);
  const runId = randomBytes(4).toString('hex');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-chaos-'));
  const counters: Counters = {
    killsRandom: 0,
    killsSkipped: 0,
    faultPointCrashes: 0,
    workerStarts: 0,
    pgTerminated: 0,
    redisRestarts: 0,
    redisFlushes: 0,
    sigtermExitMs: undefined,
    sigtermExitCode: undefined,
    shutdownOverruns: 0,
    unexpectedExits: 0,
    postsFailed: 0,
    postRetries: 0,
    faultPlanSkipped: 0,
    gatewayDeliveries: 0,
    gatewayRedeliveries: 0,
    stopsAnswered: 0,
    phoneChangesAnswered: 0,
    pauses: 0,
    clockOffsetMaxMs: 0,
    pausedPaymentAnswerMs: undefined,
    paymentsWhilePaused: 0,
    paymentAnswerMsMaxWhilePaused: 0,
  };
  console.log(
    `chaos: seed ${options.seed}, ${options.orders} orders over ${options.ingestSeconds}s, ${options.workers} workers, logs in ${logDir}`,
  );

  let chaosOn = true;
  let finishing = false;
  const harnessLog = fs.createWriteStream(path.join(logDir, 'harness.log'));
  const trace = (line: string) => harnessLog.write(`${((Date.now() - started) / 1000).toFixed(1)}s ${line}\n`);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  try {
    // --- Postgres: a fresh database of our own.
    const adminUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
    const dbName = `recoup_chaos_${runId}`;
    const databaseUrl = withPath(adminUrl, dbName);
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`create database ${dbName}`);
    cleanups.push(async () => {
      if (options.keepDatabase) console.log(`chaos: database ${dbName} kept`);
      else await admin.query(`drop database if exists ${dbName} with (force)`);
      await admin.end();
    });
    const migrator = await openDatabase({ url: databaseUrl, dataDir: logDir, poolSize: 1 });
    await migrator.migrate();
    await migrator.close();
    const db = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: 'recoup-chaos' });
    db.on('error', () => undefined);
    cleanups.push(() => db.end());

    // --- Redis: our own server, nothing on disk, so a restart loses everything.
    const redisPort = await freePort();
    const redisServer = new RedisServer(redisPort, path.join(logDir, 'redis.log'));
    await redisServer.start();
    cleanups.push(() => redisServer.stop());
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
    redis.on('error', () => undefined);
    cleanups.push(() => redis.disconnect());

    // --- Fake providers.
    const twilio = await startFakeTwilio({ seed: options.seed });
    cleanups.push(() => twilio.close());
    const smtp = await startFakeSmtp({ seed: options.seed + 1 });
    cleanups.push(() => smtp.close());

    const cadenceFile = path.join(logDir, 'cadences.yaml');
    fs.writeFileSync(cadenceFile, cadenceYaml);
    const apiKey = `chaos-${randomBytes(12).toString('hex')}`;
    const httpPort = await freePort();
    const serverUrl = `http://127.0.0.1:${httpPort}`;
    const prefix = 'chaos';
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: prefix,
      PUBLIC_URL: serverUrl,
      RECOUP_SECRET: randomBytes(24).toString('hex'),
      RECOUP_API_KEYS: apiKey,
      SMS_TRANSPORT: 'twilio',
      TWILIO_ACCOUNT_SID: twilio.accountSid,
      TWILIO_AUTH_TOKEN: twilio.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_URL: twilio.url,
      EMAIL_TRANSPORT: 'smtp',
      SMTP_URL: smtp.url,
      DATA_DIR: logDir,
      ...serviceEnv,
    };

    const processes = new Set<ChildProcess>();
    cleanups.push(() => {
      for (const child of processes) child.kill('SIGKILL');
    });
    // Even if the harness itself crashes, it leaves no recoup or redis-server process behind.
    process.once('exit', () => {
      for (const child of processes) child.kill('SIGKILL');
      redisServer.kill();
    });
    const spawnRecoup = (role: 'server' | 'worker', name: string, extra: Record<string, string> = {}) => {
      const log = fs.openSync(path.join(logDir, `${name}.log`), 'a');
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', role], {
        cwd: root,
        // PGAPPNAME names the process's Postgres connections, so the harness can terminate the workers' ones.
        env: { ...baseEnv, PGAPPNAME: `recoup-${name}`, ...extra },
        stdio: ['ignore', 'pipe', log],
      });
      fs.closeSync(log);
      const out = fs.createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
      // The start banner says the signal handlers are installed: only then is SIGTERM a graceful stop.
      const ready = new Promise<boolean>((resolve) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          out.write(chunk);
          if (chunk.toString('utf8').includes('is running')) resolve(true);
        });
        child.once('exit', () => resolve(false));
      });
      processes.add(child);
      child.once('exit', () => {
        processes.delete(child);
        out.end();
      });
      return { child, ready };
    };

    // --- The server first (it applies migrations and the cadence), then the workers.
    const server = spawnRecoup('server', 'server', { PORT: String(httpPort), CADENCES_FILE: cadenceFile });
    server.child.once('exit', (code, signal) => {
      if (finishing) return;
      counters.unexpectedExits += 1;
      console.log(`chaos: the server exited unexpectedly (code ${code}, signal ${signal}); see its log`);
    });
    await waitUntil(
      async () => (await fetch(`${serverUrl}/healthz`).catch(() => undefined))?.ok === true,
      60_000,
      'the server',
    );

    const plans: OrderPlan[] = [];
    // The customer-side faults draw from their own stream, so the older draws stay what they were.
    const customerRandom = mulberry32(options.seed + 2);
    const within = () => Math.floor(customerRandom() * (cadenceSpanMs + 1_000));
    for (let i = 0; i < options.orders; i += 1) {
      const paid = random() < options.payRate;
      const stop = customerRandom() < options.stopRate;
      const change = customerRandom() < options.phoneChangeRate;
      plans.push({
        index: i,
        orderId: `ord_chaos_${runId}_${i}`,
        customerId: `cus_chaos_${runId}_${i}`,
        phone: `+1415${String(1_000_000 + i).padStart(7, '0')}`,
        email: `c${i}@chaos.example`,
        amount: 1_000 + Math.floor(random() * 49_000),
        payAfterMs: paid ? Math.floor(random() * (cadenceSpanMs + 2_000)) : undefined,
        payTwice: paid && random() < 0.2,
        failedAccepted: false,
        paidAckAt: undefined,
        payViaGateway: paid && customerRandom() < options.gatewayPayShare,
        stopAfterMs: stop ? within() : undefined,
        stopAckAt: undefined,
        newPhone: change ? `+1415${String(2_000_000 + i).padStart(7, '0')}` : undefined,
        changeAfterMs: change ? within() : undefined,
        changeAckAt: undefined,
      });
    }
    const byPhone = new Map(plans.map((p) => [p.phone, p]));
    for (const p of plans) if (p.newPhone) byPhone.set(p.newPhone, p);
    const byEmail = new Map(plans.map((p) => [p.email, p]));

    // --- Workers, kept at `options.workers` by restarting whatever dies while the run lasts.
    const ingestMs = options.ingestSeconds * 1_000;
    const activeWindowMs = ingestMs + cadenceSpanMs + 2_000;
    let workerSerial = 0;
    const workers = new Map<
      number,
      {
        child: ChildProcess;
        ready: Promise<boolean>;
        isReady: boolean;
        faultSpec: string | undefined;
        expectedExit: boolean;
        /** Stopped with SIGSTOP: alive, holding whatever it had claimed, doing nothing. */
        paused: boolean;
      }
    >();
    // When the number of ready workers changed: a step due while none was up may be late or missed.
    // A worker told to stop takes no new jobs, so it no longer counts.
    const readyTimeline: Array<{ at: number; ready: number }> = [];
    const noteReady = () => {
      const ready = [...workers.values()].filter((w) => w.isReady && !w.expectedExit && !w.paused).length;
      if (readyTimeline.at(-1)?.ready !== ready) readyTimeline.push({ at: Date.now(), ready });
    };
    const clockRandom = mulberry32(options.seed + 3);
    const startWorker = () => {
      workerSerial += 1;
      const id = workerSerial;
      let faultSpec: string | undefined;
      if (chaosOn && random() < options.faultPointRate) {
        const point = random() < 0.5 ? 'after_claim' : 'after_provider_answer';
        faultSpec = `${point}_nth=${2 + Math.floor(random() * 15)}`;
      }
      // A drifted host clock: the worker's own Clock only (Postgres and the send lease keep theirs).
      const clockOffsetMs = Math.round((clockRandom() * 2 - 1) * options.clockSkewMs);
      const injection = [faultSpec, clockOffsetMs !== 0 ? `clock_offset_ms=${clockOffsetMs}` : undefined]
        .filter(Boolean)
        .join(',');
      const { child, ready } = spawnRecoup('worker', `worker-${id}`, injection ? { FAULT_INJECTION: injection } : {});
      counters.workerStarts += 1;
      counters.clockOffsetMaxMs = Math.max(counters.clockOffsetMaxMs, Math.abs(clockOffsetMs));
      trace(`worker-${id} started${injection ? ` with FAULT_INJECTION=${injection}` : ''}`);
      void ready.then((up) => {
        entry.isReady = up && workers.has(id);
        if (up) trace(`worker-${id} ready`);
        noteReady();
      });
      const entry = { child, ready, isReady: false, faultSpec, expectedExit: false, paused: false };
      workers.set(id, entry);
      child.once('exit', (code, signal) => {
        trace(`worker-${id} exited (code ${code}, signal ${signal})`);
        workers.delete(id);
        noteReady();
        if (!entry.expectedExit && signal === 'SIGKILL' && faultSpec) counters.faultPointCrashes += 1;
        if (!entry.expectedExit && !(signal === 'SIGKILL' && faultSpec) && !finishing) {
          counters.unexpectedExits += 1;
          console.log(`chaos: worker-${id} exited unexpectedly (code ${code}, signal ${signal}); see its log`);
        }
        if (!finishing) setTimeout(() => (finishing ? undefined : startWorker()), 300);
      });
    };
    for (let i = 0; i < options.workers; i += 1) startWorker();
    // On a busy machine a cold `tsx` start takes seconds: the run proper begins once all are up.
    await Promise.all([...workers.values()].map((w) => w.ready));
    trace('all workers ready');

    // --- The fault plan, drawn up front from the seed.
    const at = (from: number, to: number) => Math.floor(activeWindowMs * (from + random() * (to - from)));
    const plan: Array<{
      atMs: number;
      kind: 'kill' | 'pg_terminate' | 'flushall' | 'redis_restart' | 'sigterm' | 'sigstop';
    }> = [];
    for (let i = 0; i < options.kills; i += 1) plan.push({ atMs: at(0.05, 0.95), kind: 'kill' });
    for (let i = 0; i < 3; i += 1) plan.push({ atMs: at(0.1, 0.9), kind: 'pg_terminate' });
    plan.push({ atMs: at(0.2, 0.35), kind: 'flushall' });
    plan.push({ atMs: at(0.4, 0.5), kind: 'sigterm' });
    plan.push({ atMs: at(0.55, 0.7), kind: 'redis_restart' });
    plan.push({ atMs: at(0.3, 0.8), kind: 'sigstop' });
    plan.sort((a, b) => a.atMs - b.atMs);
    // CHAOS_FAULTS=0: the same load with no process or Redis faults, as a baseline.
    if (process.env.CHAOS_FAULTS === '0') plan.length = 0;
    console.log(`chaos: plan ${plan.map((p) => `${p.kind}@${(p.atMs / 1000).toFixed(1)}s`).join(' ')}`);

    twilio.setFaults(
      {
        error500Rate: options.twilio500,
        error429Rate: options.twilio429,
        timeoutRate: options.twilioTimeout,
        dropRate: options.twilioDrop,
      },
      options.seed,
    );
    smtp.setFaults({ tempFailRate: options.smtp4xx, permFailRate: options.smtp5xx }, options.seed + 1);

    const pickWorker = (readyOnly = false, preferWithoutCrashPoint = false) => {
      const live = [...workers.values()].filter((w) => !w.expectedExit && !w.paused && (w.isReady || !readyOnly));
      const plain = live.filter((w) => !w.faultSpec);
      const from = preferWithoutCrashPoint && plain.length > 0 ? plain : live;
      return from[Math.floor(random() * from.length)];
    };
    const readyCount = () => [...workers.values()].filter((w) => w.isReady && !w.expectedExit && !w.paused).length;
    /** Waits up to faultReadinessMs for the fault's target to exist; false: it never did. */
    const readyFor = (check: () => Promise<boolean> | boolean) =>
      waitUntil(async () => check(), faultReadinessMs, 'a fault target').then(
        () => true,
        () => false,
      );
    /** Runs one planned fault; false when it could not happen (it is then counted, not silently dropped). */
    const runFault = async (kind: (typeof plan)[number]['kind']): Promise<boolean> => {
      switch (kind) {
        case 'kill': {
          // Never the last worker standing: a cold start takes seconds on a busy machine, and a run
          // where no worker is up for long only shows that recoveries expire unsent. So the kill
          // waits for a second ready worker (a restart after an earlier kill or crash).
          const worker = (await readyFor(() => readyCount() >= 2)) ? pickWorker(true) : undefined;
          if (!worker) {
            counters.killsSkipped += 1;
            return false;
          }
          worker.expectedExit = true;
          noteReady();
          worker.child.kill('SIGKILL');
          counters.killsRandom += 1;
          return true;
        }
        case 'pg_terminate': {
          // A worker between queries may hold no connection: try again until one is cut.
          let terminated = 0;
          await readyFor(async () => {
            const { rowCount } = await db.query(
              `select pg_terminate_backend(pid) from pg_stat_activity
               where datname = $1 and application_name like 'recoup-worker-%'`,
              [dbName],
            );
            terminated = rowCount ?? 0;
            return terminated > 0;
          });
          counters.pgTerminated += terminated;
          return terminated > 0;
        }
        case 'flushall':
          await redis.flushall();
          counters.redisFlushes += 1;
          return true;
        case 'redis_restart':
          await redisServer.restart(1_000);
          counters.redisRestarts += 1;
          return true;
        case 'sigstop': {
          // A worker frozen (a GC pause, a stalled VM) for longer than the send lease, with
          // claims in hand, then resumed: the answers that wait for its sends must stop waiting
          // after the lease, and what it does on waking must not reach a customer wrongly.
          const worker = (await readyFor(() => readyCount() >= 2)) ? pickWorker(true) : undefined;
          if (!worker) return false;
          worker.paused = true;
          noteReady();
          pausedWorkers += 1;
          worker.child.kill('SIGSTOP');
          counters.pauses += 1;
          trace(`worker paused for ${pauseMs} ms`);
          // A payment for an order the stopped worker is most likely not sending to: its answer
          // should not wait for the stopped worker's claims (at worst the lease, for its own order).
          setTimeout(() => {
            const unrelated = plans.findLast((p) => p.failedAccepted && p.payAfterMs === undefined);
            if (!unrelated) return;
            unrelated.payAfterMs = 0;
            const requestedAt = Date.now();
            void post(event(unrelated, 'payment.succeeded', `evt_pay_${runId}_${unrelated.index}`)).then((at) => {
              unrelated.paidAckAt = at;
              if (at !== undefined) counters.pausedPaymentAnswerMs = at - requestedAt;
            });
          }, 1_000);
          setTimeout(() => {
            worker.child.kill('SIGCONT');
            worker.paused = false;
            pausedWorkers -= 1;
            noteReady();
            trace('worker resumed');
          }, pauseMs);
          return true;
        }
        case 'sigterm': {
          // Under load: a worker that has started and has jobs in hand, never the last one standing.
          // A worker with a crash point armed may reach it while finishing its jobs: prefer one without.
          const worker = (await readyFor(() => readyCount() >= 2)) ? pickWorker(true, true) : undefined;
          if (!worker) return false;
          worker.expectedExit = true;
          noteReady();
          const sent = Date.now();
          const exited = new Promise<number | null>((resolve) =>
            worker.child.once('exit', (code, signal) =>
              // Its own crash point (a SIGKILL it sends itself) is a fault-point crash, not a failed shutdown.
              resolve(code === null && signal === 'SIGKILL' && worker.faultSpec ? 0 : code),
            ),
          );
          worker.child.kill('SIGTERM');
          const hardDeadline = setTimeout(() => {
            counters.shutdownOverruns += 1;
            worker.child.kill('SIGKILL');
          }, shutdownTimeoutMs + 10_000);
          void exited.then((code) => {
            clearTimeout(hardDeadline);
            counters.sigtermExitMs = Date.now() - sent;
            counters.sigtermExitCode = code;
          });
          return true;
        }
      }
    };
    let pausedWorkers = 0;
    const runStart = Date.now();
    const faultsDone = (async () => {
      for (const step of plan) {
        const wait = runStart + step.atMs - Date.now();
        if (wait > 0) await sleep(wait);
        trace(`fault ${step.kind}`);
        const happened = await runFault(step.kind).catch((err: unknown) => {
          console.log(`chaos: ${step.kind} failed: ${String(err)}`);
          return false;
        });
        if (!happened) {
          counters.faultPlanSkipped += 1;
          trace(`fault ${step.kind} did not happen`);
        }
      }
    })();

    // --- Orders in, payments at random moments.
    const limit = semaphore(options.concurrency);
    // Each answer is timed when its status line arrives: the moment from which nothing may be
    // accepted by a provider for what it answered.
    const request = (url: string, init: RequestInit, timeoutMs = 15_000) =>
      limit(() =>
        fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })
          .then(async (r) => {
            const at = Date.now();
            return { status: r.status, text: await r.text(), at };
          })
          .catch((err: unknown) => ({ status: 0, text: String(err), at: Date.now() })),
      );
    /** POSTs a shop event until it is answered 2xx; resolves with the time of that answer, or undefined. */
    const post = async (body: object): Promise<number | undefined> => {
      for (let attempt = 0; attempt < 40; attempt += 1) {
        const response = await request(`${serverUrl}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
          body: JSON.stringify(body),
        });
        if (response.status === 200 || response.status === 202) return response.at;
        if (response.status >= 400 && response.status < 500) {
          console.log(`chaos: event refused ${response.status}: ${response.text.slice(0, 300)}`);
          return undefined;
        }
        counters.postRetries += 1;
        await sleep(250 * Math.min(8, attempt + 1));
      }
      counters.postsFailed += 1;
      return undefined;
    };
    /**
     * The sandbox gateway's payment.succeeded for the order, delivered as a gateway does: signed,
     * sometimes twice at once, sometimes given up on before the answer, and sent again after
     * anything but a 2xx. Resolves with the time of the first 2xx, or undefined.
     */
    const webhookSecret = sandboxWebhookSecret(baseEnv.RECOUP_SECRET ?? '');
    const payViaGateway = async (plan: OrderPlan): Promise<number | undefined> => {
      const paymentId = `sbx_chaos_${runId}_${plan.index}`;
      const body = JSON.stringify({
        id: `evt_${paymentId}`,
        type: 'payment.succeeded',
        created: Math.floor(Date.now() / 1000),
        data: {
          payment_id: paymentId,
          order_id: plan.orderId,
          attempt_id: '',
          amount: plan.amount,
          currency: 'USD',
          method: 'card',
          failure_code: null,
          refund_id: null,
        },
      });
      const concurrent = customerRandom() < 0.3;
      let abandonFirst = customerRandom() < 0.2;
      const deliver = async (): Promise<number | undefined> => {
        for (let attempt = 0; attempt < 40; attempt += 1) {
          counters.gatewayDeliveries += 1;
          if (attempt > 0) counters.gatewayRedeliveries += 1;
          // A gateway that stops waiting: the delivery may still be applied, and is sent again.
          const timeoutMs = abandonFirst ? 5 + Math.floor(customerRandom() * 50) : 15_000;
          abandonFirst = false;
          const response = await request(
            `${serverUrl}/webhooks/payments/sandbox`,
            {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                'recoup-sandbox-signature': signSandboxPayload(body, webhookSecret, new Date()),
              },
              body,
            },
            timeoutMs,
          );
          if (response.status >= 200 && response.status < 300) return response.at;
          if (response.status >= 400 && response.status < 500 && response.status !== 409) {
            console.log(`chaos: gateway webhook refused ${response.status}: ${response.text.slice(0, 300)}`);
            return undefined;
          }
          await sleep(250 * Math.min(8, attempt + 1));
        }
        counters.postsFailed += 1;
        return undefined;
      };
      const answers = await Promise.all(concurrent ? [deliver(), deliver()] : [deliver()]);
      const times = answers.filter((at): at is number => at !== undefined);
      return times.length > 0 ? Math.min(...times) : undefined;
    };
    /** The customer replies STOP from their number (a signed Twilio inbound webhook), until answered 200. */
    twilio.inboundUrl = `${serverUrl}/webhooks/twilio/inbound`;
    const replyStop = async (plan: OrderPlan): Promise<number | undefined> => {
      for (let attempt = 0; attempt < 40; attempt += 1) {
        const answer = await limit(() =>
          twilio.sendInboundSms(plan.phone, 'STOP').then(
            (a) => ({ ...a, at: Date.now() }),
            (err: unknown) => ({ status: 0, body: String(err), at: Date.now() }),
          ),
        );
        if (answer.status === 200) return answer.at;
        if (answer.status >= 400 && answer.status < 500) {
          console.log(`chaos: STOP refused ${answer.status}: ${answer.body.slice(0, 300)}`);
          return undefined;
        }
        await sleep(250 * Math.min(8, attempt + 1));
      }
      counters.postsFailed += 1;
      return undefined;
    };
    const event = (plan: OrderPlan, type: 'payment.failed' | 'payment.succeeded', id: string) => ({
      id,
      type,
      occurred_at: new Date().toISOString(),
      order: {
        id: plan.orderId,
        amount: plan.amount,
        currency: 'USD',
        description: `chaos order ${plan.index}`,
        customer: { id: plan.customerId, name: `Customer ${plan.index}`, email: plan.email, phone: plan.phone },
      },
      payment:
        type === 'payment.failed'
          ? { gateway: 'stripe', method: 'card', failure_code: 'card_declined' }
          : { gateway: 'stripe', method: 'card', amount: plan.amount },
    });
    const ingestion = plans.map(async (plan) => {
      await sleep(Math.floor((plan.index * ingestMs) / options.orders));
      plan.failedAccepted =
        (await post(event(plan, 'payment.failed', `evt_fail_${runId}_${plan.index}`))) !== undefined;
      if (!plan.failedAccepted) return;
      const customerSide = async () => {
        const stopAfterMs = plan.stopAfterMs;
        const changeAfterMs = plan.changeAfterMs;
        await Promise.all([
          stopAfterMs !== undefined &&
            sleep(stopAfterMs).then(async () => {
              plan.stopAckAt = await replyStop(plan);
              if (plan.stopAckAt !== undefined) counters.stopsAnswered += 1;
            }),
          changeAfterMs !== undefined &&
            sleep(changeAfterMs).then(async () => {
              plan.changeAckAt = await post({
                id: `evt_cust_${runId}_${plan.index}`,
                type: 'customer.updated',
                occurred_at: new Date().toISOString(),
                customer: {
                  id: plan.customerId,
                  name: `Customer ${plan.index}`,
                  email: plan.email,
                  phone: plan.newPhone,
                },
              });
              if (plan.changeAckAt !== undefined) counters.phoneChangesAnswered += 1;
            }),
        ]);
      };
      const payment = async () => {
        if (plan.payAfterMs === undefined) return;
        await sleep(plan.payAfterMs);
        const requestedAt = Date.now();
        const duringPause = pausedWorkers > 0;
        const timed = () => {
          if (!duringPause || plan.paidAckAt === undefined) return;
          counters.paymentsWhilePaused += 1;
          counters.paymentAnswerMsMaxWhilePaused = Math.max(
            counters.paymentAnswerMsMaxWhilePaused,
            plan.paidAckAt - requestedAt,
          );
        };
        if (plan.payViaGateway) {
          plan.paidAckAt = await payViaGateway(plan);
          timed();
          return;
        }
        const succeeded = event(plan, 'payment.succeeded', `evt_pay_${runId}_${plan.index}`);
        plan.paidAckAt = await post(succeeded);
        timed();
        if (plan.payTwice) await post(succeeded);
      };
      await Promise.all([customerSide(), payment()]);
    });
    await Promise.all(ingestion);
    await faultsDone;

    // --- Drain: no more faults; restarted workers run clean.
    chaosOn = false;
    twilio.setFaults({});
    smtp.setFaults({});
    for (const w of [...workers.values()]) {
      if (w.faultSpec && !w.expectedExit) {
        w.expectedExit = true;
        w.child.kill('SIGKILL');
      }
    }
    // A large run ends with a backlog: each expired recovery still needs its wake-up to run.
    const drainDeadlineMs = expireAfterMs + 90_000 + options.orders * 10;
    const drained = await waitUntil(
      async () => {
        const { rows } = await db.query<{ active: number; sending: number }>(
          `select (select count(*)::int from recoveries where state = 'active') as active,
                  (select count(*)::int from messages where status = 'sending') as sending`,
        );
        return rows[0]?.active === 0 && rows[0]?.sending === 0;
      },
      drainDeadlineMs,
      'every recovery to end',
    ).then(
      () => true,
      () => false,
    );
    finishing = true;

    // --- Checks.
    const report = await check({ db, redis, prefix, plans, twilio, smtp, byPhone, byEmail, readyTimeline });
    const durationS = (Date.now() - started) / 1000;
    const summary: Array<[string, string | number]> = [
      ['orders', options.orders],
      ['orders_accepted', plans.filter((p) => p.failedAccepted).length],
      ['payments', plans.filter((p) => p.paidAckAt !== undefined).length],
      ['payments_via_gateway', plans.filter((p) => p.paidAckAt !== undefined && p.payViaGateway).length],
      ['gateway_deliveries', counters.gatewayDeliveries],
      ['gateway_redeliveries', counters.gatewayRedeliveries],
      ['stops_answered', counters.stopsAnswered],
      ['phone_changes_answered', counters.phoneChangesAnswered],
      ['steps_scheduled', report.stepsScheduled],
      ['sent', report.sent],
      ['skipped', report.skipped],
      ['failed', report.failed],
      ['unknown', report.unknown],
      ['provider_accepted', twilio.messages.length + smtp.messages.length],
      ['provider_refused', twilio.requests.filter((r) => (r.status ?? 0) >= 400).length + smtp.refused],
      ['duplicates', report.duplicates],
      ['sent_after_payment', report.sentAfterPayment],
      ['accepted_after_payment', report.acceptedAfterPayment],
      ['sent_after_stop', report.sentAfterStop],
      ['sent_to_replaced_address', report.sentToReplacedAddress],
      ['accepted_within_3s_before_payment_answer', report.acceptedShortlyBeforePayment],
      ['sms_within_3s_before_stop_answer', report.smsShortlyBeforeStop],
      ['sms_within_3s_before_change_answer', report.smsShortlyBeforeChange],
      ['payments_lost', report.paymentsLost],
      ['missed_steps', report.missedSteps],
      ['steps_due_without_worker', report.stepsDueWithoutWorker],
      ['steps_unsent_at_expiry', report.stepsUnsentAtExpiry],
      ['unsent_step_overdue_max_s', (report.unsentStepLatenessMaxMs / 1000).toFixed(1)],
      ['unknown_unresolved', report.unknown],
      ['sent_not_accepted', report.sentNotAccepted],
      ['lost_recoveries', report.lostRecoveries],
      ['still_active', report.stillActive],
      ['stuck_sending', report.stuckSending],
      ['ledger_mismatch', report.ledgerMismatch],
      ['ledger_total', report.ledgerTotal],
      ['payments_total', report.paymentsTotal],
      ['worker_starts', counters.workerStarts],
      ['worker_kills', counters.killsRandom],
      ['worker_kills_skipped', counters.killsSkipped],
      ['fault_plan_skipped', counters.faultPlanSkipped],
      ['fault_point_crashes', counters.faultPointCrashes],
      ['pg_connections_terminated', counters.pgTerminated],
      ['redis_flushes', counters.redisFlushes],
      ['redis_restarts', counters.redisRestarts],
      ['worker_clock_offset_max_ms', counters.clockOffsetMaxMs],
      ['worker_pauses', counters.pauses],
      ['worker_pause_ms', pauseMs],
      ['send_lease_ms', sendLeaseFor(1_000, 3_000).leaseMs],
      ['paused_payment_answer_ms', counters.pausedPaymentAnswerMs ?? 'n/a'],
      ['payments_while_paused', counters.paymentsWhilePaused],
      ['payment_answer_ms_max_while_paused', counters.paymentAnswerMsMaxWhilePaused],
      ['sigterm_exit_ms', counters.sigtermExitMs ?? 'n/a'],
      ['sigterm_exit_code', counters.sigtermExitCode ?? 'n/a'],
      ['shutdown_overruns', counters.shutdownOverruns],
      ['unexpected_exits', counters.unexpectedExits],
      ['recoveries_ended', report.endings],
      ['event_post_retries', counters.postRetries],
      ['event_posts_failed', counters.postsFailed],
      ['drained', drained ? 'yes' : 'no'],
      ['reconcile_bound', reconcileBound],
      ['duration_s', durationS.toFixed(1)],
      ['seed', options.seed],
    ];
    console.log('--- chaos summary');
    for (const [name, value] of summary) console.log(`${name}: ${value}`);
    console.log('---');

    const broken = [
      report.duplicates,
      report.sentAfterPayment,
      report.acceptedAfterPayment,
      report.sentAfterStop,
      report.sentToReplacedAddress,
      report.paymentsLost,
      report.missedSteps,
      counters.faultPlanSkipped,
      report.lostRecoveries,
      report.ledgerMismatch,
      report.sentNotAccepted,
      report.stillActive,
      counters.shutdownOverruns,
      counters.unexpectedExits,
      counters.postsFailed,
      counters.sigtermExitCode === undefined || counters.sigtermExitCode === 0 ? 0 : 1,
    ].some((n) => n !== 0);
    if (broken) {
      console.log(`chaos: FAILED (seed ${options.seed}); process logs kept in ${logDir}`);
      for (const line of report.examples) console.log(`  ${line}`);
    } else if (!options.keepLogs) {
      cleanups.unshift(() => fs.rmSync(logDir, { recursive: true, force: true }));
    }
    return broken ? 1 : 0;
  } finally {
    await cleanup();
  }
}

interface CheckInput {
  db: pg.Pool;
  redis: Redis;
  prefix: string;
  plans: OrderPlan[];
  twilio: FakeTwilio;
  smtp: FakeSmtp;
  byPhone: Map<string, OrderPlan>;
  byEmail: Map<string, OrderPlan>;
  readyTimeline: ReadonlyArray<{ at: number; ready: number }>;
}

async function check(input: CheckInput) {
  const { db, redis, prefix, plans, twilio, smtp, byPhone, byEmail, readyTimeline } = input;
  const examples: string[] = [];
  const note = (line: string) => {
    if (examples.length < 20) examples.push(line);
  };

  const { rows: statusRows } = await db.query<{ status: string; n: number }>(
    `select status, count(*)::int as n from messages group by status`,
  );
  const count = (...statuses: string[]) =>
    statusRows.filter((r) => statuses.includes(r.status)).reduce((sum, r) => sum + r.n, 0);

  // Duplicates: one step of one recovery accepted twice by a provider. Each order has its own
  // phone and email; an SMS step is told apart by its text (the retry link changes per claim),
  // an email by recoup's message id, which is the same for every claim of one step.
  const seen = new Map<string, number>();
  const accepted: Array<{ key: string; plan: OrderPlan | undefined; at: Date; sms: string | undefined }> = [];
  for (const m of twilio.messages) {
    accepted.push({
      key: `sms|${m.to}|${m.body.replace(/https?:\/\/\S+/g, '<link>')}`,
      plan: byPhone.get(m.to),
      at: m.acceptedAt,
      sms: m.to,
    });
  }
  for (const m of smtp.messages) {
    const to = m.rcptTo[0] ?? '';
    accepted.push({ key: `email|${m.recoupMessageId ?? to}`, plan: byEmail.get(to), at: m.acceptedAt, sms: undefined });
  }
  let duplicates = 0;
  let sentAfterPayment = 0;
  let acceptedAfterPayment = 0;
  let sentAfterStop = 0;
  let sentToReplacedAddress = 0;
  // Shows the races were run: SMS to those numbers in the seconds before the answer.
  let smsShortlyBeforeStop = 0;
  let smsShortlyBeforeChange = 0;
  let acceptedShortlyBeforePayment = 0;
  for (const a of accepted) {
    const n = (seen.get(a.key) ?? 0) + 1;
    seen.set(a.key, n);
    if (n > 1) {
      duplicates += 1;
      note(`duplicate: ${a.key.slice(0, 120)}`);
    }
    const at = a.at.getTime();
    const plan = a.plan;
    if (!plan) continue;
    // Both measured against the moment the harness received the payment's answer, by either path.
    if (plan.paidAckAt !== undefined && at > plan.paidAckAt) {
      acceptedAfterPayment += 1;
      if (!plan.payViaGateway) sentAfterPayment += 1;
      note(
        `accepted after payment: ${plan.orderId} accepted ${at - plan.paidAckAt} ms after the payment's 2xx` +
          ` (${plan.payViaGateway ? 'gateway webhook' : 'shop event'})`,
      );
    }
    const shortlyBefore = (answeredAt: number | undefined) =>
      answeredAt !== undefined && at <= answeredAt && at > answeredAt - 3_000;
    if (shortlyBefore(plan.paidAckAt)) acceptedShortlyBeforePayment += 1;
    if (a.sms === plan.phone && shortlyBefore(plan.stopAckAt)) smsShortlyBeforeStop += 1;
    if (a.sms === plan.phone && shortlyBefore(plan.changeAckAt)) smsShortlyBeforeChange += 1;
    if (a.sms === plan.phone && plan.stopAckAt !== undefined && at > plan.stopAckAt) {
      sentAfterStop += 1;
      note(`sent after STOP: ${plan.phone} accepted ${at - plan.stopAckAt} ms after the STOP was answered`);
    }
    if (a.sms === plan.phone && plan.changeAckAt !== undefined && at > plan.changeAckAt) {
      sentToReplacedAddress += 1;
      note(
        `sent to a replaced number: ${plan.phone} accepted ${at - plan.changeAckAt} ms after the change was answered`,
      );
    }
  }

  // Every message recoup recorded as sent was accepted by the provider under that id.
  const { rows: sentRows } = await db.query<{ id: string; channel: string; provider_id: string | null }>(
    `select id, channel, provider_id from messages where status in ('sent', 'delivered')`,
  );
  const twilioSids = new Set(twilio.messages.map((m) => m.sid));
  const smtpIds = new Set(smtp.messages.map((m) => m.recoupMessageId));
  let sentNotAccepted = 0;
  for (const m of sentRows) {
    const ok = m.channel === 'sms' ? twilioSids.has(m.provider_id ?? '') : smtpIds.has(m.id);
    if (!ok) {
      sentNotAccepted += 1;
      note(`recorded sent but not accepted: ${m.id} (${m.channel})`);
    }
  }

  // Lost: an accepted payment.failed without a recovery, or an active recovery whose wake-up is gone.
  const { rows: recoveryRows } = await db.query<{ order_id: string; id: string; state: string; wake_seq: number }>(
    `select order_id, id, state, wake_seq from recoveries`,
  );
  const recoveryOf = new Map(recoveryRows.map((r) => [r.order_id, r]));
  let lostRecoveries = 0;
  let stillActive = 0;
  for (const plan of plans) {
    if (!plan.failedAccepted) continue;
    const recovery = recoveryOf.get(plan.orderId);
    if (!recovery) {
      // Paid before its recovery started is fine only if the payment came first; here it never does.
      lostRecoveries += 1;
      note(`no recovery for ${plan.orderId}`);
      continue;
    }
    if (recovery.state !== 'active') continue;
    stillActive += 1;
    const exists = await redis.exists(`${prefix}:${stepQueueName}:${stepJobId(recovery.id, recovery.wake_seq)}`);
    if (exists === 0) {
      lostRecoveries += 1;
      note(`active recovery ${recovery.id} has no wake-up`);
    }
  }
  const { rows: endings } = await db.query<{ reason: string; n: number }>(
    `select coalesce(ended_reason, state) as reason, count(*)::int as n from recoveries group by 1 order by 2 desc`,
  );
  const { rows: stuck } = await db.query<{ n: number }>(
    `select count(*)::int as n from messages where status = 'sending'`,
  );

  // The ledger holds exactly the payments the shop reported, once each.
  const { rows: ledger } = await db.query<{ order_id: string; total: string; n: number }>(
    `select order_id, sum(amount)::text as total, count(*)::int as n from payments group by order_id`,
  );
  const ledgerOf = new Map(ledger.map((l) => [l.order_id, l]));
  let ledgerMismatch = 0;
  let ledgerTotal = 0;
  let paymentsTotal = 0;
  for (const plan of plans) {
    const row = ledgerOf.get(plan.orderId);
    const expected = plan.paidAckAt !== undefined ? plan.amount : 0;
    paymentsTotal += expected;
    const actual = row ? Number(row.total) : 0;
    ledgerTotal += actual;
    // A payment whose POST never got an answer may still have committed: then it must be there once.
    const uncertain = plan.payAfterMs !== undefined && plan.paidAckAt === undefined;
    if (actual !== expected && !(uncertain && actual === plan.amount)) {
      ledgerMismatch += 1;
      note(`ledger: ${plan.orderId} holds ${actual}, expected ${expected}`);
    }
  }

  // Lost payments: an order the harness paid (a 2xx on either path) that is not paid now.
  const { rows: orderRows } = await db.query<{ id: string; status: string }>(`select id, status from orders`);
  const orderStatus = new Map(orderRows.map((o) => [o.id, o.status]));
  let paymentsLost = 0;
  for (const plan of plans) {
    if (plan.paidAckAt === undefined) continue;
    const status = orderStatus.get(plan.orderId);
    if (status !== 'paid') {
      paymentsLost += 1;
      note(
        `payment lost: ${plan.orderId} is ${status ?? 'missing'} after its ${plan.payViaGateway ? 'gateway webhook' : 'shop event'} was answered`,
      );
    }
  }

  // Missed steps: a step with no recorded outcome (not sent, failed, unknown, skipped or
  // suppressed, nor deferred with a reason) although its recovery moved past it.
  // A step still pending when its recovery expired, though it came due missStepGraceMs or more
  // before and a worker was ready all that time, is counted apart with its lateness: from the
  // outside a wake-up lost and re-created late cannot be told from a backlog (a lone worker on a
  // busy machine runs wake-ups many seconds late, the expiry included). So are steps whose window
  // had no ready worker for a while.
  const { rows: stepRecoveries } = await db.query<{
    id: string;
    order_id: string;
    started_at: Date;
    ended_at: Date | null;
    expires_at: Date;
    ended_reason: string | null;
    step_index: number;
  }>(`select id, order_id, started_at, ended_at, expires_at, ended_reason, step_index from recoveries`);
  // A step deferred (quiet hours, a daily cap) or waiting for a retry is `scheduled` with its reason.
  const { rows: stepRows } = await db.query<{ recovery_id: string; step: number; status: string }>(
    `select recovery_id, step, case when status = 'scheduled' and reason is not null then 'deferred' else status end as status
     from messages where step is not null`,
  );
  const outcomes = new Map<string, string[]>();
  for (const m of stepRows) {
    const key = `${m.recovery_id}|${m.step}`;
    outcomes.set(key, [...(outcomes.get(key) ?? []), m.status]);
  }
  /** At least one worker was ready at every moment of [from, to]. */
  const workersUpThroughout = (from: number, to: number) => {
    let readyAtFrom = 0;
    for (const entry of readyTimeline) {
      if (entry.at <= from) readyAtFrom = entry.ready;
      else if (entry.at <= to && entry.ready === 0) return false;
    }
    return readyAtFrom > 0;
  };
  const checkedAt = Date.now();
  let missedSteps = 0;
  let stepsDueWithoutWorker = 0;
  let stepsUnsentAtExpiry = 0;
  let unsentStepLatenessMaxMs = 0;
  for (const r of stepRecoveries) {
    const end = r.ended_at?.getTime() ?? checkedAt;
    stepOffsetsMs.forEach((offset, step) => {
      const statuses = outcomes.get(`${r.id}|${step}`) ?? [];
      if (statuses.some((status) => recordedOutcomes.includes(status))) return;
      const due = r.started_at.getTime() + offset;
      if (r.step_index > step) {
        missedSteps += 1;
        note(`missed step: ${r.order_id} step ${step} (${statuses.join(',') || 'no message'}) passed over`);
        return;
      }
      // A payment, STOP or cancellation ends a recovery at its own moment, whatever was pending.
      if (r.ended_reason !== null && r.ended_reason !== 'expired') return;
      if (due + missStepGraceMs > end) return;
      if (!workersUpThroughout(due, due + missStepGraceMs)) {
        stepsDueWithoutWorker += 1;
        return;
      }
      stepsUnsentAtExpiry += 1;
      unsentStepLatenessMaxMs = Math.max(unsentStepLatenessMaxMs, end - due);
    });
  }

  return {
    acceptedAfterPayment,
    sentAfterStop,
    sentToReplacedAddress,
    smsShortlyBeforeStop,
    smsShortlyBeforeChange,
    acceptedShortlyBeforePayment,
    paymentsLost,
    missedSteps,
    stepsDueWithoutWorker,
    stepsUnsentAtExpiry,
    unsentStepLatenessMaxMs,
    stepsScheduled: statusRows.reduce((sum, r) => sum + r.n, 0),
    sent: count('sent', 'delivered'),
    skipped: count('skipped', 'suppressed'),
    failed: count('failed'),
    unknown: count('unknown'),
    duplicates,
    sentAfterPayment,
    sentNotAccepted,
    lostRecoveries,
    stillActive,
    stuckSending: stuck[0]?.n ?? 0,
    ledgerMismatch,
    endings: endings.map((e) => `${e.reason}=${e.n}`).join(' '),
    ledgerTotal,
    paymentsTotal,
    examples,
  };
}

/** A redis-server child with nothing on disk: `restart` is a full loss of queue state. */
class RedisServer {
  #child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly logFile: string,
  ) {}

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--logfile',
        this.logFile,
      ],
      { stdio: 'ignore' },
    );
    this.#child = child;
    await waitUntil(
      () =>
        new Promise<boolean>((resolve) => {
          const socket = net.connect(this.port, '127.0.0.1');
          socket.once('connect', () => {
            socket.destroy();
            resolve(true);
          });
          socket.once('error', () => resolve(false));
        }),
      10_000,
      'redis-server',
    );
  }

  /** Synchronous, for process exit. */
  kill(): void {
    this.#child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async restart(downMs: number): Promise<void> {
    await this.stop();
    await sleep(downMs);
    await this.start();
  }
}

function withPath(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

function semaphore(max: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    active += 1;
    try {
      return await task();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
