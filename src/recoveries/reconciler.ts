import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Logger } from '../platform/logger.js';
import { stepJobId, stepQueueName, type RedisClient, type StepQueue, type Wakeup } from '../queue/queues.js';
import { startRecovery } from './start-recovery.js';

export interface ReconcilerDeps {
  db: Db;
  redis: RedisClient;
  queue: StepQueue;
  queuePrefix: string;
  cadences: CadenceBook;
  clock: Clock;
  logger: Logger;
  /** A wake-up overdue by more than this, with no job in Redis, is re-created. */
  graceMs: number;
  /** `sending` claims older than this whose recovery has ended are closed as `unknown`. */
  claimStaleAfterMs: number;
  batchSize?: number;
}

export interface ReconcileReport {
  /** Redis had lost its state (restart, flush, failover) and every active recovery was re-queued. */
  resynced: number;
  /** Overdue wake-ups that had no job and were re-created. */
  restored: number;
  abandonedStarted: number;
  staleClaimsClosed: number;
}

/**
 * Postgres is the truth, Redis only holds wake-ups. This puts back whatever Redis lost:
 * after a restart or flush (detected by a sentinel key) every active recovery is
 * re-queued at once; otherwise any wake-up overdue by `graceMs` with no job is re-created.
 * It also starts recoveries for abandoned orders. Safe to run in every process at once.
 */
export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #sentinelKey: string;
  readonly #epoch = randomBytes(8).toString('hex');
  /** Where the next pass over overdue wake-ups starts; undefined: at the oldest. */
  #overdueCursor: { at: Date; id: string } | undefined;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#sentinelKey = `${deps.queuePrefix}:recoup:epoch`;
  }

  async runOnce(): Promise<ReconcileReport> {
    const report: ReconcileReport = { resynced: 0, restored: 0, abandonedStarted: 0, staleClaimsClosed: 0 };
    report.resynced = await this.#resyncIfRedisLost();
    report.restored = await this.#restoreOverdue();
    report.abandonedStarted = await this.#startAbandoned();
    report.staleClaimsClosed = await this.#closeStaleClaims();
    return report;
  }

  async #resyncIfRedisLost(): Promise<number> {
    // SET NX: of all processes noticing the loss, exactly one re-queues everything.
    const claimed = await this.#deps.redis.set(this.#sentinelKey, this.#epoch, 'NX');
    if (claimed !== 'OK') return 0;
    try {
      return await this.#requeueAllActive();
    } catch (err) {
      // The sentinel says "Redis holds every wake-up" only once the re-queue finished. Redis
      // often flaps right after a restart: give the claim back so the next pass (here or in
      // another process) re-queues everything, instead of leaving future steps without a
      // wake-up until each is overdue by the grace.
      await this.#deps.redis.del(this.#sentinelKey).catch(() => undefined);
      throw err;
    }
  }

  async #requeueAllActive(): Promise<number> {
    const batch = this.#deps.batchSize ?? 1_000;
    let after = '';
    let total = 0;
    for (;;) {
      const page = await rows<{ id: string; wake_seq: number; next_run_at: Date | null; expires_at: Date }>(
        this.#deps.db,
        sql`select id, wake_seq, next_run_at, expires_at from recoveries
            where state = 'active' and id > ${after} order by id limit ${batch}`,
      );
      if (page.length === 0) break;
      await this.#deps.queue.add(
        page.map((r) => ({ recoveryId: r.id, wakeSeq: r.wake_seq, runAt: r.next_run_at ?? r.expires_at })),
        this.#deps.clock.now(),
      );
      total += page.length;
      after = page[page.length - 1]?.id ?? after;
    }
    if (total > 0)
      this.#deps.logger.warn({ recoveries: total }, 'queue state was missing; re-queued active recoveries');
    return total;
  }

  async #restoreOverdue(): Promise<number> {
    const now = this.#deps.clock.now();
    const batch = this.#deps.batchSize ?? 1_000;
    // A backlog (a burst due at once, a slow provider) is overdue but merely waiting. Each pass
    // checks the next page after the last one it checked, so the waiting jobs at the head are not
    // checked again every pass, and a lost wake-up behind a backlog larger than a page is still found.
    const after = this.#overdueCursor;
    const overdue = await rows<{ id: string; wake_seq: number; next_run_at: Date }>(
      this.#deps.db,
      sql`select id, wake_seq, next_run_at from recoveries
          where state = 'active' and next_run_at < ${new Date(now.getTime() - this.#deps.graceMs)}
            ${after ? sql`and next_run_at >= ${after.at} and (next_run_at, id) > (${after.at}, ${after.id})` : sql``}
          order by next_run_at, id limit ${batch}`,
    );
    const last = overdue[overdue.length - 1];
    this.#overdueCursor = overdue.length === batch && last ? { at: last.next_run_at, id: last.id } : undefined;
    if (overdue.length === 0) return 0;

    // A job that still exists is merely late (a backlog), unless it sits in the failed set.
    const base = `${this.#deps.queuePrefix}:${stepQueueName}`;
    const pipeline = this.#deps.redis.pipeline();
    for (const r of overdue) {
      const jobId = stepJobId(r.id, r.wake_seq);
      pipeline.exists(`${base}:${jobId}`);
      pipeline.zscore(`${base}:failed`, jobId);
    }
    const answers = (await pipeline.exec()) ?? [];
    const lost = overdue.filter((_, i) => {
      const exists = answers[i * 2]?.[1] === 1;
      const failed = answers[i * 2 + 1]?.[1] !== null && answers[i * 2 + 1]?.[1] !== undefined;
      return !exists || failed;
    });
    if (lost.length === 0) return 0;

    const wakeups: Wakeup[] = [];
    for (const r of lost) {
      // A fresh id: a failed job with the old id would swallow the re-add.
      const [bumped] = await rows<{ wake_seq: number }>(
        this.#deps.db,
        sql`update recoveries set wake_seq = wake_seq + 1
            where id = ${r.id} and state = 'active' and wake_seq = ${r.wake_seq} returning wake_seq`,
      );
      if (bumped) wakeups.push({ recoveryId: r.id, wakeSeq: bumped.wake_seq, runAt: now });
    }
    await this.#deps.queue.add(wakeups, now);
    if (wakeups.length > 0) this.#deps.logger.warn({ restored: wakeups.length }, 're-created lost wake-ups');
    return wakeups.length;
  }

  async #startAbandoned(): Promise<number> {
    const now = this.#deps.clock.now();
    let started = 0;
    const wakeups: Wakeup[] = [];
    await this.#deps.db.transaction(async (tx) => {
      const due = await rows<{
        id: string;
        customer_id: string;
        amount: string;
        currency: string;
        requested_cadence: string | null;
      }>(
        tx,
        sql`select id, customer_id, amount::text as amount, currency, requested_cadence from orders
            where abandon_check_at <= ${now} and status = 'pending'
            order by abandon_check_at limit ${this.#deps.batchSize ?? 1_000}
            for update skip locked`,
      );
      for (const order of due) {
        const outcome = await startRecovery(
          tx,
          this.#deps.cadences,
          { id: order.id, customerId: order.customer_id, amount: Number(order.amount), currency: order.currency },
          'abandoned',
          now,
          order.requested_cadence,
        );
        if (outcome.started) {
          started += 1;
          wakeups.push(outcome.wakeup);
        }
        await tx.execute(sql`update orders set abandon_check_at = null where id = ${order.id}`);
      }
      // Orders paid or cancelled meanwhile just lose their check.
      await tx.execute(
        sql`update orders set abandon_check_at = null where abandon_check_at <= ${now} and status <> 'pending'`,
      );
    });
    await this.#deps.queue.add(wakeups, now);
    return started;
  }

  async #closeStaleClaims(): Promise<number> {
    const now = this.#deps.clock.now();
    const closed = await rows<{ id: string }>(
      this.#deps.db,
      sql`update messages m set status = 'unknown', reason = 'outcome_unknown_worker_lost', claim_id = null,
                                updated_at = ${now}
          from recoveries r
          where m.recovery_id = r.id and r.state <> 'active' and m.status = 'sending'
            and m.lease_started_at < clock_timestamp() - ${this.#deps.claimStaleAfterMs} * interval '1 millisecond'
          returning m.id`,
    );
    return closed.length;
  }
}
