import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { parseEvent, type EventInput } from '../../src/domain/event-schema.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import type { FixedClock } from '../../src/platform/clock.js';
import { createLogger } from '../../src/platform/logger.js';
import { producerConnection, StepQueue, type RedisClient, type Wakeup } from '../../src/queue/queues.js';
import { Reconciler } from '../../src/recoveries/reconciler.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { deletePrefix, testRedisUrl } from './redis.js';
import { makeEvent, waitFor } from './service.js';

export interface ReconcilerRig {
  database: TestDatabase;
  redis: RedisClient;
  queue: StepQueue;
  reconciler: Reconciler;
  intake: ApplyEventDeps;
  /** Starts a recovery on `cadence` as intake does, at the clock's time; its first wake-up is not queued. */
  startRecovery(cadence: string): Promise<{ order: NonNullable<EventInput['order']>; wakeup: Wakeup }>;
  close(): Promise<void>;
}

/**
 * A fresh database with `cadencesYaml` applied, a producer connection, a StepQueue and a Reconciler
 * on `clock` under `prefix`: the reconciler's passes run by hand, with no service around them.
 */
export async function startReconcilerRig(options: {
  cadencesYaml: string;
  clock: FixedClock;
  prefix: string;
  horizonMs?: number;
  graceMs?: number;
  claimStaleAfterMs?: number;
}): Promise<ReconcilerRig> {
  const { clock, prefix } = options;
  const database = await createTestDatabase();
  const cadences = new CadenceBook(database.db);
  await applyCadences(database.db, parseCadenceDocument(options.cadencesYaml));
  const intake: ApplyEventDeps = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
  const redis = producerConnection(testRedisUrl(), () => undefined);
  await waitFor(() => (redis.status === 'ready' ? true : undefined), { what: 'Redis' });
  const queue = new StepQueue(redis, prefix, { horizonMs: options.horizonMs });
  const reconciler = new Reconciler({
    db: database.db,
    redis,
    queue,
    queuePrefix: prefix,
    cadences,
    clock,
    logger: createLogger('silent'),
    graceMs: options.graceMs ?? 30_000,
    claimStaleAfterMs: options.claimStaleAfterMs ?? 60_000,
  });
  return {
    database,
    redis,
    queue,
    reconciler,
    intake,
    async startRecovery(cadence) {
      const event = parseEvent(makeEvent({ occurred_at: clock.now().toISOString() }, { cadence }));
      const result = await applyEvent(intake, event, clock.now());
      const wakeup = result.status === 'accepted' ? result.wakeups[0] : undefined;
      if (!wakeup || !event.order) throw new Error('the recovery did not start');
      return { order: event.order, wakeup };
    },
    async close() {
      await queue.close();
      redis.disconnect();
      await deletePrefix(prefix);
      await database.drop();
    },
  };
}
