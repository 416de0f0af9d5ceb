import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Fleet } from './fleet.js';
import { options, shutdownTimeoutMs, type Counters, type OrderPlan } from './options.js';
import { waitUntil, type RedisServer } from './processes.js';
import type { Traffic } from './traffic.js';

/** The fault plan: drawn up front from the seed, then run at its moments against the fleet, Redis and Postgres. */

export type FaultKind =
  'kill' | 'pg_terminate' | 'flushall' | 'redis_restart' | 'redis_aof_restart' | 'sigterm' | 'sigstop' | 'partition';

export interface PlannedFault {
  atMs: number;
  kind: FaultKind;
  /** How a partition ends: what was held is delivered, or every connection is cut. */
  heal?: 'resume' | 'cut';
}

/** How long a planned fault waits for its target (a second ready worker, a worker connection). */
const faultReadinessMs = 45_000;

/**
 * The timed faults, over the window in which reminders are due. `random` draws the faults the
 * harness always had (so a seed keeps their moments); `faultRandom` the later ones.
 */
export function drawFaultPlan(random: () => number, faultRandom: () => number, windowMs: number): PlannedFault[] {
  const at = (draw: () => number, from: number, to: number) => Math.floor(windowMs * (from + draw() * (to - from)));
  const plan: PlannedFault[] = [];
  for (let i = 0; i < options.kills; i += 1) plan.push({ atMs: at(random, 0.05, 0.95), kind: 'kill' });
  for (let i = 0; i < 3; i += 1) plan.push({ atMs: at(random, 0.1, 0.9), kind: 'pg_terminate' });
  plan.push({ atMs: at(random, 0.2, 0.35), kind: 'flushall' });
  plan.push({ atMs: at(random, 0.4, 0.5), kind: 'sigterm' });
  plan.push({ atMs: at(random, 0.55, 0.7), kind: 'redis_restart' });
  plan.push({ atMs: at(random, 0.3, 0.8), kind: 'sigstop' });
  plan.push({ atMs: at(faultRandom, 0.75, 0.9), kind: 'redis_aof_restart' });
  for (let i = 0; i < options.partitions; i += 1) {
    const heal = faultRandom() < 0.5 ? 'resume' : 'cut';
    plan.push({ atMs: at(faultRandom, 0.15, 0.6), kind: 'partition', heal });
  }
  plan.sort((a, b) => a.atMs - b.atMs);
  return options.faults ? plan : [];
}

export interface FaultContext {
  fleet: Fleet;
  counters: Counters;
  trace: (line: string) => void;
  db: pg.Pool;
  dbName: string;
  redis: Redis;
  redisServer: RedisServer;
  traffic: Traffic;
  plans: OrderPlan[];
  runId: string;
  /** Workers stopped with SIGSTOP right now (payments made meanwhile are timed). */
  paused: { count: number };
}

/** Waits up to faultReadinessMs for the fault's target to exist; false: it never did. */
function readyFor(check: () => Promise<boolean> | boolean): Promise<boolean> {
  return waitUntil(async () => check(), faultReadinessMs, 'a fault target').then(
    () => true,
    () => false,
  );
}

/** Runs one planned fault; false when it could not happen (it is then counted, not silently dropped). */
export async function runFault(fault: PlannedFault, ctx: FaultContext): Promise<boolean> {
  const { fleet, counters, trace } = ctx;
  // Never the last worker standing: a cold start takes seconds on a busy machine, and a run where
  // no worker is up for long only shows that recoveries expire unsent. So these faults wait for a
  // second ready worker (a restart after an earlier kill or crash).
  const secondReady = (preferWithoutCrashPoint = false) =>
    readyFor(() => fleet.readyCount() >= 2).then((ok) =>
      ok ? fleet.pickWorker(true, preferWithoutCrashPoint) : undefined,
    );
  switch (fault.kind) {
    case 'kill': {
      const worker = await secondReady();
      if (!worker) {
        counters.killsSkipped += 1;
        return false;
      }
      worker.expectedExit = true;
      fleet.noteReady();
      worker.child.kill('SIGKILL');
      counters.killsRandom += 1;
      return true;
    }
    case 'pg_terminate': {
      // A worker between queries may hold no connection: try again until one is cut.
      let terminated = 0;
      await readyFor(async () => {
        const { rowCount } = await ctx.db.query(
          `select pg_terminate_backend(pid) from pg_stat_activity
           where datname = $1 and application_name like 'recoup-worker-%'`,
          [ctx.dbName],
        );
        terminated = rowCount ?? 0;
        return terminated > 0;
      });
      counters.pgTerminated += terminated;
      return terminated > 0;
    }
    case 'flushall':
      await ctx.redis.flushall();
      counters.redisFlushes += 1;
      return true;
    case 'redis_restart':
      // Its append-only file deleted: everything in Redis is gone.
      await ctx.redisServer.restart(1_000, 'empty');
      counters.redisRestarts += 1;
      return true;
    case 'redis_aof_restart':
      // A crash: back from its append-only file, missing at most the last second of writes.
      await ctx.redisServer.restart(1_000, 'aof');
      counters.redisAofRestarts += 1;
      return true;
    case 'partition': {
      // Cut off from Postgres without a word, for longer than the send lease and the job lock,
      // with claims and row locks in hand: Redis still renews its job locks, its statements hang.
      const worker = await secondReady();
      if (!worker) return false;
      const heal = fault.heal ?? 'resume';
      worker.proxy.partition();
      fleet.noteReady();
      counters.partitions += 1;
      trace(`worker-${worker.id} cut off from Postgres for ${options.partitionMs} ms, then ${heal}`);
      worker.healed = new Promise((resolve) =>
        setTimeout(() => {
          worker.proxy.heal(heal);
          if (heal === 'resume') counters.partitionsHealed += 1;
          else counters.partitionsCut += 1;
          fleet.noteReady();
          trace(`worker-${worker.id} partition over (${heal})`);
          resolve();
        }, options.partitionMs),
      );
      return true;
    }
    case 'sigstop': {
      // A worker frozen (a GC pause, a stalled VM) for longer than the send lease, with
      // claims in hand, then resumed: the answers that wait for its sends must stop waiting
      // after the lease, and what it does on waking must not reach a customer wrongly.
      const worker = await secondReady();
      if (!worker) return false;
      worker.paused = true;
      fleet.noteReady();
      ctx.paused.count += 1;
      worker.child.kill('SIGSTOP');
      counters.pauses += 1;
      trace(`worker-${worker.id} paused for ${options.pauseMs} ms`);
      // A payment for an order the stopped worker is most likely not sending to: its answer
      // should not wait for the stopped worker's claims (at worst the lease, for its own order).
      setTimeout(() => {
        const unrelated = ctx.plans.findLast(
          (p) => p.failedAccepted && p.payAfterMs === undefined && p.cancelAfterMs === undefined,
        );
        if (!unrelated) return;
        unrelated.payAfterMs = 0;
        const requestedAt = Date.now();
        const paid = ctx.traffic.event(unrelated, 'payment.succeeded', `evt_pay_${ctx.runId}_${unrelated.index}`);
        trace(`payment for ${unrelated.orderId} while worker-${worker.id} is stopped`);
        void ctx.traffic.post(paid).then((at) => {
          unrelated.paidAckAt = at;
          if (at !== undefined) counters.pausedPaymentAnswerMs = at - requestedAt;
          trace(`payment for ${unrelated.orderId} answered after ${at === undefined ? 'no' : at - requestedAt} ms`);
        });
      }, 1_000);
      setTimeout(() => {
        worker.child.kill('SIGCONT');
        worker.paused = false;
        ctx.paused.count -= 1;
        fleet.noteReady();
        trace(`worker-${worker.id} resumed`);
      }, options.pauseMs);
      return true;
    }
    case 'sigterm': {
      // Under load: a worker that has started and has jobs in hand, never the last one standing.
      // A worker with a crash point armed may reach it while finishing its jobs: prefer one without.
      const worker = await secondReady(true);
      if (!worker) return false;
      worker.expectedExit = true;
      fleet.noteReady();
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
}
