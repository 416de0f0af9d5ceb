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
  /** Redis had lost its state (restart, flush, failover, or a first start): every wake-up due within the horizon was queued. */
  resynced: number;
  /** Wake-ups queued as they entered the horizon. */
  promoted: number;
  /** Overdue wake-ups that had no job and were re-created. */
  restored: number;
  abandonedStarted: number;
  staleClaimsClosed: number;
}

/**
 * A promotion pass re-reads this much below where the last one ended: a wake-up whose producer read
 * its clock just before that pass, and committed just after it, is still found. Producers decide
 * "beyond the horizon" on a clock read after their commit, so this only covers clock error.
 */
export const promotionOverlapMs = 10_000;

/**
 * Sets the promotion cursor (`epoch:until`) to `until` if it still belongs to `epoch` and is lower.
 * A Redis that lost its state mid-pass has no cursor (or another epoch's): the pass then claims
 * nothing, and the next one queues everything within the horizon again.
 */
/** The cursor of a queue without a horizon: beyond any date (and exact in Lua's doubles). */
const maxCursor = 8_640_000_000_000_000;

const advanceCursor = `
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local sep = string.find(current, ':', 1, true)
if string.sub(current, 1, sep - 1) ~= ARGV[1] then return 0 end
if tonumber(string.sub(current, sep + 1)) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
return 1
`;

/**
 * Postgres is the truth, Redis only holds wake-ups, and only those due within the queue's horizon.
 * Each pass walks the active recoveries by `next_run_at` (one index): it queues those that entered
 * the horizon since the last pass (all of them within the horizon when Redis lost its state, detected
 * by the promotion cursor's absence), re-creates any wake-up overdue by `graceMs` with no job, and
 * starts recoveries for abandoned orders. Safe to run in every process at once: queuing is
 * idempotent by job id.
 */
export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #cursorKey: string;
  readonly #epoch = randomBytes(8).toString('hex');
  /** Where the next pass over overdue wake-ups starts; undefined: at the oldest. */
  #overdueCursor: { at: Date; id: string } | undefined;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#cursorKey = `${deps.queuePrefix}:recoup:promoted`;
  }

  async runOnce(): Promise<ReconcileReport> {
    const report: ReconcileReport = {
      resynced: 0,
      promoted: 0,
      restored: 0,
      abandonedStarted: 0,
      staleClaimsClosed: 0,
    };
    const promotion = await this.#promote();
    if (promotion.full) report.resynced = promotion.queued;
    else report.promoted = promotion.queued;
    report.restored = await this.#restoreOverdue();
    report.abandonedStarted = await this.#startAbandoned();
    report.staleClaimsClosed = await this.#closeStaleClaims();
    return report;
  }

  /**
   * Queues the wake-ups that entered the horizon since the pass that set the cursor (`epoch:until`:
   * every active recovery due by `until` has its job). No cursor means Redis lost its state or is
   * new: the first process to notice starts an epoch at 0, and everything within the horizon is
   * queued, overdue ones included.
   */
  async #promote(): Promise<{ queued: number; full: boolean }> {
    const { redis, queue, clock } = this.#deps;
    let cursor = parseCursor(await redis.get(this.#cursorKey));
    if (!cursor) {
      await redis.set(this.#cursorKey, `${this.#epoch}:0`, 'NX');
      cursor = parseCursor(await redis.get(this.#cursorKey));
      if (!cursor) return { queued: 0, full: false };
    }
    const full = cursor.until === 0;
    // Without a horizon every wake-up is queued when it is produced: only a loss needs a pass.
    if (!full && !Number.isFinite(queue.horizonMs)) return { queued: 0, full };
    const now = clock.now();
    const until = Number.isFinite(queue.horizonMs) ? new Date(now.getTime() + queue.horizonMs) : undefined;
    const from = full ? undefined : new Date(cursor.until - promotionOverlapMs);
    const batch = this.#deps.batchSize ?? 1_000;
    let after: { at: Date; id: string } | undefined;
    let queued = 0;
    for (;;) {
      const page = await rows<{ id: string; wake_seq: number; next_run_at: Date }>(
        this.#deps.db,
        sql`select id, wake_seq, next_run_at from recoveries
            where state = 'active'
              ${until ? sql`and next_run_at <= ${until}` : sql``}
              ${from ? sql`and next_run_at > ${from}` : sql``}
              ${after ? sql`and next_run_at >= ${after.at} and (next_run_at, id) > (${after.at}, ${after.id})` : sql``}
            order by next_run_at, id limit ${batch}`,
      );
      queued += await queue.add(
        page.map((r) => ({ recoveryId: r.id, wakeSeq: r.wake_seq, runAt: r.next_run_at })),
        now,
      );
      const last = page[page.length - 1];
      if (page.length < batch || !last) break;
      after = { at: last.next_run_at, id: last.id };
    }
    await redis.eval(advanceCursor, 1, this.#cursorKey, cursor.epoch, String(until?.getTime() ?? maxCursor));
    if (full && queued > 0) {
      this.#deps.logger.warn({ recoveries: queued }, 'queue state was missing; queued the wake-ups within the horizon');
    }
    return { queued, full };
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
    // Read after the commit: a first step beyond the horizon is then one the promotion pass finds.
    await this.#deps.queue.add(wakeups, this.#deps.clock.now());
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

function parseCursor(value: string | null): { epoch: string; until: number } | undefined {
  const sep = value?.indexOf(':') ?? -1;
  if (!value || sep < 1) return undefined;
  const until = Number(value.slice(sep + 1));
  return Number.isFinite(until) ? { epoch: value.slice(0, sep), until } : undefined;
}
