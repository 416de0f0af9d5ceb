import type pg from 'pg';
import type { StepQueue, Wakeup } from '../src/queue/queues.js';
import { copyIn } from './copy-in.js';

/** Where seeded recoveries stand: as if started by a payment.failed of the bundled default cadence. */
export interface SeedCadence {
  name: string;
  version: number;
  /** Delay of step 0 after the recovery started (started_at = first run − this). */
  firstStepAfterMs: number;
  /** Delay of every step after the start, in order. */
  stepsAfterMs: number[];
  expireAfterMs: number;
}

export interface SeedBatch {
  /** Short lowercase tag, unique per batch: ids are `rec_<tag><hex>` etc., 24 characters like real ones. */
  tag: string;
  count: number;
  /** Step 0 of recovery i (0-based) is due at firstRunAt + i × spacingMs. */
  firstRunAt: Date;
  spacingMs: number;
  /** Customers' timezone (chosen so that the run is outside quiet hours). */
  timezone: string;
  cadence: SeedCadence;
}

const chunk = 20_000;

/**
 * Customers seeded so far in this process: phone numbers continue from here, so that every seeded
 * customer is a different person (the daily cap counts the messages to one number together).
 */
let seededCustomers = 0;

export function recoveryId(tag: string, i: number): string {
  return `rec_${tag}${(i + 1).toString(16).padStart(24 - tag.length, '0')}`;
}

/**
 * Customers, orders and active recoveries at step 0, inserted with one INSERT … SELECT per table
 * and chunk (no per-row round trips), as a shop with that many unpaid orders would have them.
 * Returns each recovery's wake-up (not yet queued).
 */
export async function seedRecoveries(pool: pg.Pool, batch: SeedBatch): Promise<Wakeup[]> {
  const { tag, cadence } = batch;
  if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new Error(`bad seed tag ${tag}`);
  const width = 24 - tag.length;
  const phoneOffset = seededCustomers;
  seededCustomers += batch.count;
  const id = (prefix: string) => `'${prefix}_${tag}' || lpad(to_hex(g), ${width}, '0')`;
  for (let from = 1; from <= batch.count; from += chunk) {
    const to = Math.min(batch.count, from + chunk - 1);
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(
        `insert into customers (id, name, email, phone, locale, timezone, updated_at)
         select ${id('cus')}, 'Li Lei', 'c${tag}' || g || '@example.com',
                '+8613' || lpad(((g + $4::int) % 1000000000)::text, 9, '0'), 'en', $3, now()
           from generate_series($1::int, $2::int) g`,
        [from, to, batch.timezone, phoneOffset],
      );
      await client.query(
        `insert into orders (id, customer_id, amount, currency, description, status, state_at,
                             last_failure_code, last_failure_category, last_gateway, last_method)
         select ${id('ord')}, ${id('cus')}, 12900, 'CNY', '2 items', 'pending', now(),
                'card_declined', 'insufficient_funds', 'stripe', 'card'
           from generate_series($1::int, $2::int) g`,
        [from, to],
      );
      await client.query(
        `insert into recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category,
                                 state, step_index, next_run_at, wake_seq, started_at, expires_at)
         select ${id('rec')}, ${id('ord')}, ${id('cus')}, $3, $4, 'insufficient_funds', 'active', 0, at, 0,
                at - $6::float8 * interval '1 millisecond',
                at - $6::float8 * interval '1 millisecond' + $7::float8 * interval '1 millisecond'
           from (select g, $5::timestamptz + (g - 1) * $8::float8 * interval '1 millisecond' as at
                   from generate_series($1::int, $2::int) g) s`,
        [
          from,
          to,
          cadence.name,
          cadence.version,
          batch.firstRunAt,
          cadence.firstStepAfterMs,
          cadence.expireAfterMs,
          batch.spacingMs,
        ],
      );
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
  const start = batch.firstRunAt.getTime();
  return Array.from({ length: batch.count }, (_, i) => ({
    recoveryId: recoveryId(tag, i),
    wakeSeq: 0,
    runAt: new Date(start + i * batch.spacingMs),
  }));
}

/** Queues wake-ups through recoup's own producer (StepQueue.add → addBulk), a few batches in flight. */
export async function queueWakeups(queue: StepQueue, wakeups: Wakeup[], batchSize = 1_000, inFlight = 6) {
  let next = 0;
  const lane = async () => {
    while (next < wakeups.length) {
      const slice = wakeups.slice(next, next + batchSize);
      next += batchSize;
      await queue.add(slice);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

export interface PendingBatch {
  /** Short lowercase tag, unique per batch (ids as in SeedBatch). */
  tag: string;
  count: number;
  /** The recoveries started over the cadence's lifetime before this instant, one every expiry / count. */
  now: Date;
  timezone: string;
  cadence: SeedCadence;
  /** Wake-ups due within this long of `now` are returned: the ones recoup's producers would have queued. */
  horizonMs: number;
}

/** Where a recovery started `ageMs` ago stands: the steps due by now went out, the next one waits. */
export function pendingState(cadence: SeedCadence, startedAt: number, ageMs: number) {
  const stepIndex = cadence.stepsAfterMs.filter((after) => after <= ageMs).length;
  const after = cadence.stepsAfterMs[stepIndex];
  const expiresAt = startedAt + cadence.expireAfterMs;
  // After its last step a recovery waits for its expiry (nextStepOf does the same).
  return { stepIndex, nextRunAt: after === undefined ? expiresAt : startedAt + after, expiresAt };
}

const copyChunk = 5_000;

function* csvRows(count: number, row: (i: number) => string): Generator<string> {
  for (let from = 0; from < count; from += copyChunk) {
    const lines: string[] = [];
    for (let i = from; i < Math.min(count, from + copyChunk); i++) lines.push(row(i));
    yield `${lines.join('\n')}\n`;
  }
}

/**
 * Customers, orders and active recoveries as a steady stream of payment failures leaves them: one
 * recovery started every expiry / count over the last expiry period, each at the step its age gives
 * (default cadence: steps at 15 min, 2 h and 24 h, expiry at 72 h). Written with COPY … FROM STDIN,
 * one per table, into the migrated tables with every index in place. Returns the wake-ups due within
 * the horizon, for the caller to queue as the producers would have; the rest stay in Postgres alone.
 */
export async function copyPendingRecoveries(pool: pg.Pool, batch: PendingBatch): Promise<Wakeup[]> {
  const { tag, count, cadence } = batch;
  if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new Error(`bad seed tag ${tag}`);
  const width = 24 - tag.length;
  const phoneOffset = seededCustomers;
  seededCustomers += count;
  const id = (prefix: string, i: number) => `${prefix}_${tag}${(i + 1).toString(16).padStart(width, '0')}`;
  const now = batch.now.getTime();
  const iso = (ms: number) => new Date(ms).toISOString();
  const updatedAt = iso(now);
  const copy = async (statement: string, rows: Iterable<string>) => {
    const client = await pool.connect();
    try {
      await client.query('begin');
      // Triggers off: a backlog built over 72 hours had its recovery.started events sequenced and
      // delivered long ago, not a million waiting at once for the webhook sequencer.
      await client.query('set local session_replication_role = replica');
      const copied = await copyIn(client, statement, rows);
      await client.query('commit');
      return copied;
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  };
  // One COPY per table, side by side (no foreign keys between them): index upkeep dominates, and
  // each table's runs on its own backend.
  const state = (i: number) => {
    const ageMs = ((i + 0.5) / count) * cadence.expireAfterMs;
    const startedAt = now - ageMs;
    return { startedAt, ...pendingState(cadence, startedAt, ageMs) };
  };
  await Promise.all([
    copy(
      'copy customers (id, name, email, phone, locale, timezone, updated_at) from stdin (format csv)',
      csvRows(count, (i) => {
        const phone = `+8613${String((i + 1 + phoneOffset) % 1_000_000_000).padStart(9, '0')}`;
        return `${id('cus', i)},Li Lei,c${tag}${i + 1}@example.com,${phone},en,${batch.timezone},${updatedAt}`;
      }),
    ),
    copy(
      `copy orders (id, customer_id, amount, currency, description, status, state_at, last_failure_code,
                    last_failure_category, last_gateway, last_method) from stdin (format csv)`,
      csvRows(
        count,
        (i) =>
          `${id('ord', i)},${id('cus', i)},12900,CNY,2 items,pending,${updatedAt},card_declined,insufficient_funds,stripe,card`,
      ),
    ),
    copy(
      `copy recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category, state,
                        step_index, next_run_at, wake_seq, started_at, expires_at) from stdin (format csv)`,
      csvRows(count, (i) => {
        const s = state(i);
        return (
          `${id('rec', i)},${id('ord', i)},${id('cus', i)},${cadence.name},${cadence.version},insufficient_funds,` +
          `active,${s.stepIndex},${iso(s.nextRunAt)},${s.stepIndex},${iso(s.startedAt)},${iso(s.expiresAt)}`
        );
      }),
    ),
  ]);
  const wakeups: Wakeup[] = [];
  for (let i = 0; i < count; i++) {
    const s = state(i);
    if (s.nextRunAt <= now + batch.horizonMs) {
      wakeups.push({ recoveryId: id('rec', i), wakeSeq: s.stepIndex, runAt: new Date(s.nextRunAt) });
    }
  }
  return wakeups;
}
