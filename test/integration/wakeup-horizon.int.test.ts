import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { migrateRecoveries } from '../../src/cadences/migrate-recoveries.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { FixedClock } from '../../src/platform/clock.js';
import { createLogger } from '../../src/platform/logger.js';
import { producerConnection, StepQueue, stepJobId, type RedisClient } from '../../src/queue/queues.js';
import { promotionOverlapMs, Reconciler } from '../../src/recoveries/reconciler.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { makeEvent, waitFor } from '../helpers/service.js';

// Steps as a real cadence has them: the first one beyond the ten-minute horizon of this file.
const cadencesYaml = `
- name: patient
  expire_after: 72h
  steps:
    - { after: 15m, channel: sms,   template: nudge }
    - { after: 2h,  channel: email, template: alternative-methods }
    - { after: 24h, channel: sms,   template: last-call }
`;
// Version 2 asks for the same first message five minutes after the start instead of fifteen.
const soonerYaml = `
- name: patient
  expire_after: 72h
  steps:
    - { after: 5m,  channel: sms,   template: nudge }
    - { after: 2h,  channel: email, template: alternative-methods }
    - { after: 24h, channel: sms,   template: last-call }
`;

const minute = 60_000;
const horizonMs = 10 * minute;

describe('wake-ups beyond the horizon wait in Postgres and are queued as they come within it', () => {
  const clock = new FixedClock('2026-12-01T09:00:00Z');
  const prefix = uniquePrefix('hz');
  let database: TestDatabase;
  let redis: RedisClient;
  let queue: StepQueue;
  let reconciler: Reconciler;
  let intake: ApplyEventDeps;

  beforeAll(async () => {
    database = await createTestDatabase();
    const cadences = new CadenceBook(database.db);
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml));
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    redis = producerConnection(testRedisUrl(), () => undefined);
    await waitFor(() => (redis.status === 'ready' ? true : undefined), { what: 'Redis' });
    queue = new StepQueue(redis, prefix, { horizonMs });
    reconciler = new Reconciler({
      db: database.db,
      redis,
      queue,
      queuePrefix: prefix,
      cadences,
      clock,
      logger: createLogger('silent'),
      graceMs: 30_000,
      claimStaleAfterMs: 60_000,
    });
    // A fresh prefix: the first pass starts the promotion cursor (nothing is active yet).
    expect(await reconciler.runOnce()).toMatchObject({ resynced: 0, promoted: 0 });
  });
  afterAll(async () => {
    await queue.close();
    redis.disconnect();
    await deletePrefix(prefix);
    await database.drop();
  });

  /** Starts a recovery as intake does and queues its first wake-up as intake does. */
  async function startRecovery() {
    const event = parseEvent(makeEvent({ occurred_at: clock.now().toISOString() }, { cadence: 'patient' }));
    const result = await applyEvent(intake, event, clock.now());
    const wakeup = result.status === 'accepted' ? result.wakeups[0] : undefined;
    if (!wakeup) throw new Error('the recovery did not start');
    const queued = await queue.add([wakeup], clock.now());
    return { wakeup, queued };
  }

  /** The recovery's wake-up jobs in Redis, with when each is due (on the clock it was queued by). */
  async function jobsOf(recoveryId: string) {
    const [row] = await rows<{ wake_seq: number }>(
      database.db,
      sql`select wake_seq from recoveries where id = ${recoveryId}`,
    );
    const jobs = [];
    for (let seq = 0; seq <= (row?.wake_seq ?? 0); seq++) {
      const job = await queue.queue.getJob(stepJobId(recoveryId, seq));
      if (job) jobs.push({ seq, delayMs: job.opts.delay ?? 0 });
    }
    return jobs;
  }

  it('queues nothing at intake for a first step beyond the horizon, and the job once the step is within it', async () => {
    clock.set('2026-12-01T09:00:00Z');
    const { wakeup, queued } = await startRecovery();
    expect(wakeup.runAt.toISOString()).toBe('2026-12-01T09:15:00.000Z');
    expect(queued).toBe(0);
    expect(await jobsOf(wakeup.recoveryId)).toEqual([]);

    // One second before the step enters the horizon: still only in Postgres.
    clock.set(new Date(wakeup.runAt.getTime() - horizonMs - 1_000));
    await reconciler.runOnce();
    expect(await jobsOf(wakeup.recoveryId)).toEqual([]);

    // At the edge: queued, due at the step's time and not before.
    clock.set(new Date(wakeup.runAt.getTime() - horizonMs));
    await reconciler.runOnce();
    expect(await jobsOf(wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: horizonMs }]);

    // Later passes (each re-reads a little below its cursor) leave that one job as it is.
    clock.set(new Date(wakeup.runAt.getTime() - horizonMs + promotionOverlapMs / 2));
    await reconciler.runOnce();
    clock.set(new Date(wakeup.runAt.getTime() - minute));
    await reconciler.runOnce();
    expect(await jobsOf(wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: horizonMs }]);
  });

  it('queues a step brought forward into the horizon by a cadence migration once, under its new wake sequence', async () => {
    clock.set('2026-12-01T12:00:00Z');
    const { wakeup } = await startRecovery();
    const other = await startRecovery();
    expect(await jobsOf(wakeup.recoveryId)).toEqual([]);

    // Three minutes in, version 2 moves the first step to 09:05: two minutes from now, within the horizon.
    clock.set('2026-12-01T12:03:00Z');
    const [applied] = await applyCadences(database.db, parseCadenceDocument(soonerYaml));
    const migrated = await migrateRecoveries(
      database.db,
      { name: 'patient', fromVersion: 1, toVersion: applied?.version ?? 2 },
      { actor: 'test', at: clock.now() },
    );
    expect(migrated.moved).toBeGreaterThanOrEqual(2);
    const moved = migrated.wakeups.find((w) => w.recoveryId === wakeup.recoveryId);
    expect(moved?.runAt.toISOString()).toBe('2026-12-01T12:05:00.000Z');
    // As the migration route does, after the commit.
    await queue.add(migrated.wakeups, clock.now());
    expect(await jobsOf(wakeup.recoveryId)).toEqual([{ seq: 1, delayMs: 2 * minute }]);
    expect(await jobsOf(other.wakeup.recoveryId)).toEqual([{ seq: 1, delayMs: 2 * minute }]);

    // The pass that follows finds it already queued: still one job, the new one.
    await reconciler.runOnce();
    expect(await jobsOf(wakeup.recoveryId)).toEqual([{ seq: 1, delayMs: 2 * minute }]);
  });

  it('after Redis lost everything, queues again what is within the horizon and nothing beyond it', async () => {
    clock.set('2026-12-02T08:00:00Z');
    // Due at 08:15: queued by the pass at 08:05. Due at 08:20 (started 08:05): beyond the horizon then.
    const near = await startRecovery();
    clock.set('2026-12-02T08:05:00Z');
    await reconciler.runOnce();
    const far = await startRecovery();
    expect(await jobsOf(near.wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: horizonMs }]);
    expect(await jobsOf(far.wakeup.recoveryId)).toEqual([]);

    await deletePrefix(prefix);
    clock.set('2026-12-02T08:06:00Z');
    const report = await reconciler.runOnce();
    // Every active recovery of this file due by 08:16: the near one, and those overdue from the tests above.
    expect(report.resynced).toBeGreaterThanOrEqual(1);
    expect(await jobsOf(near.wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: 9 * minute }]);
    expect(await jobsOf(far.wakeup.recoveryId)).toEqual([]);

    // The far one comes within the horizon at 08:10: queued then, once.
    clock.set('2026-12-02T08:09:59Z');
    expect(await reconciler.runOnce()).toMatchObject({ resynced: 0 });
    expect(await jobsOf(far.wakeup.recoveryId)).toEqual([]);
    clock.set('2026-12-02T08:10:00Z');
    await reconciler.runOnce();
    expect(await jobsOf(far.wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: horizonMs }]);
    expect(await jobsOf(near.wakeup.recoveryId)).toEqual([{ seq: 0, delayMs: 9 * minute }]);
  });
});
