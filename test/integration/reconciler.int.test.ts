import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { sql } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { OutboxEmailSender } from '../../src/channels/outbox-email-sender.js';
import { OutboxSmsSender } from '../../src/channels/outbox-sms-sender.js';
import type { SendReceipt, SmsMessage } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { applyEvent } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { StepQueue, stepJobId, stepQueueName, type RedisClient } from '../../src/queue/queues.js';
import { Reconciler } from '../../src/recoveries/reconciler.js';
import { type TestDatabase } from '../helpers/postgres.js';
import { startReconcilerRig, type ReconcilerRig } from '../helpers/reconciler-rig.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// `later`'s first step is a few seconds away, so its wake-ups are still delayed jobs when Redis is wiped;
// `quick`'s is near, for the overdue and abandonment cases. Second steps are far away: one message each.
const cadencesYaml = `
- name: later
  expire_after: 1h
  steps:
    - { after: 4s,  channel: sms,   template: nudge }
    - { after: 50m, channel: email, template: alternative-methods }
- name: quick
  expire_after: 1h
  steps:
    - { after: 2s,  channel: sms,   template: nudge }
    - { after: 50m, channel: email, template: alternative-methods }
`;

/** Wraps a real outbox sender and counts calls per message: outbox files are replaced on re-send, counts are not. */
class CountingSender<M extends { messageId: string }> {
  readonly calls = new Map<string, number>();
  constructor(
    private readonly inner: { transport: string; send(m: M): Promise<SendReceipt>; close(): Promise<void> },
  ) {}
  get transport() {
    return this.inner.transport;
  }
  send(message: M): Promise<SendReceipt> {
    this.calls.set(message.messageId, (this.calls.get(message.messageId) ?? 0) + 1);
    return this.inner.send(message);
  }
  close() {
    return this.inner.close();
  }
}

function outboxFiles(dir: string, suffix: string): string[] {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith(suffix));
  } catch {
    return [];
  }
}

interface MessageRow {
  id: string;
  recovery_id: string;
  step: number;
  status: string;
  attempts: number;
}

describe('reconciler in a running service', () => {
  let svc: TestService;
  let redis: Redis;
  let outboxDir: string;
  let sms: CountingSender<SmsMessage>;

  beforeAll(async () => {
    outboxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-reconciler-outbox-'));
    sms = new CountingSender(new OutboxSmsSender({ dir: outboxDir }));
    const email = new CountingSender(new OutboxEmailSender({ dir: outboxDir, from: 'shop <shop@example.com>' }));
    svc = await startTestService({
      cadences: cadencesYaml,
      env: { RECONCILE_GRACE: '1s', ABANDON_AFTER: '1s', OUTBOX_DIR: outboxDir },
      overrides: { sms, email },
    });
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    redis.disconnect();
    try {
      await svc.close();
    } finally {
      fs.rmSync(outboxDir, { recursive: true, force: true });
    }
  });

  const jobKey = (recoveryId: string, wakeSeq: number) =>
    `${svc.prefix}:${stepQueueName}:${stepJobId(recoveryId, wakeSeq)}`;

  async function startRecovery(cadence: string) {
    const event = makeEvent({}, { cadence });
    const response = await svc.post(event);
    expect(await response.json()).toMatchObject({ outcome: 'recovery_started' });
    const [row] = await rows<{ id: string; wake_seq: number }>(
      svc.database.db,
      sql`select id, wake_seq from recoveries where order_id = ${event.order.id}`,
    );
    if (!row) throw new Error('no recovery');
    return { event, recoveryId: row.id, wakeSeq: row.wake_seq };
  }

  async function messagesOf(recoveryIds: string[]): Promise<MessageRow[]> {
    return rows<MessageRow>(
      svc.database.db,
      sql`select id, recovery_id, step, status, attempts from messages
          where recovery_id in ${recoveryIds}
          order by recovery_id, step`,
    );
  }

  async function wakeSeqOf(recoveryId: string): Promise<number> {
    const [row] = await rows<{ wake_seq: number }>(
      svc.database.db,
      sql`select wake_seq from recoveries where id = ${recoveryId}`,
    );
    return row?.wake_seq ?? -1;
  }

  it('re-queues every active recovery after Redis lost its keys, and each step is sent exactly once', async () => {
    const started = await Promise.all([startRecovery('later'), startRecovery('later'), startRecovery('later')]);
    // A recovery that ended before the loss must not come back.
    const paid = await startRecovery('later');
    const payment = { ...makeEvent({ type: 'payment.succeeded' }), order: paid.event.order };
    expect(await (await svc.post(payment)).json()).toMatchObject({ outcome: 'order_paid' });

    const before = new Map<string, string | null>();
    for (const r of started) {
      before.set(r.recoveryId, await redis.hget(jobKey(r.recoveryId, r.wakeSeq), 'timestamp'));
      expect(before.get(r.recoveryId)).not.toBeNull();
    }

    // What FLUSHALL or a restart without persistence does to this service, without touching other tests' keys.
    await deletePrefix(svc.prefix);

    // The reconciler notices (its sentinel is gone) and adds the same wake-ups again: fresh jobs, same ids.
    await waitFor(
      async () => {
        for (const r of started) {
          const timestamp = await redis.hget(jobKey(r.recoveryId, r.wakeSeq), 'timestamp');
          if (timestamp === null || timestamp === before.get(r.recoveryId)) return undefined;
        }
        return true;
      },
      { what: 're-created wake-ups' },
    );

    const ids = started.map((r) => r.recoveryId);
    const sent = await waitFor(
      async () => {
        const messages = await messagesOf(ids);
        return messages.length === 3 && messages.every((m) => m.status === 'sent') ? messages : undefined;
      },
      { what: 'the three first steps to be sent' },
    );
    expect(sent.map((m) => [m.step, m.attempts])).toEqual([
      [0, 1],
      [0, 1],
      [0, 1],
    ]);

    // Give stray duplicates (a second wake-up for the same step) a few reconcile passes to show up.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await messagesOf(ids)).toEqual(sent);
    for (const m of sent) expect(sms.calls.get(m.id)).toBe(1);
    const files = outboxFiles(outboxDir, '.sms.json');
    for (const m of sent) expect(files).toContain(`${m.id}.sms.json`);
    expect(await messagesOf([paid.recoveryId])).toEqual([]);
    expect(await redis.exists(jobKey(paid.recoveryId, paid.wakeSeq))).toBe(0);
  });

  it('restores a single lost wake-up once it is overdue, and leaves wake-ups that exist alone', async () => {
    const lost = await startRecovery('quick');
    const kept = await startRecovery('quick');
    const queue = new Queue(stepQueueName, { connection: { url: testRedisUrl() }, prefix: svc.prefix });
    try {
      expect(await queue.remove(stepJobId(lost.recoveryId, lost.wakeSeq))).toBe(1);
    } finally {
      await queue.close();
    }
    expect(await redis.exists(jobKey(lost.recoveryId, lost.wakeSeq))).toBe(0);

    const sent = await waitFor(
      async () => {
        const messages = await messagesOf([lost.recoveryId, kept.recoveryId]);
        return messages.length === 2 && messages.every((m) => m.status === 'sent') ? messages : undefined;
      },
      { what: 'both first steps to be sent' },
    );
    for (const m of sent) {
      expect(m).toMatchObject({ step: 0, attempts: 1 });
      expect(sms.calls.get(m.id)).toBe(1);
      expect(outboxFiles(outboxDir, '.sms.json')).toContain(`${m.id}.sms.json`);
    }
    // Restoring took a fresh wake sequence (so a late original could not fire too); the kept one was never touched.
    expect(await wakeSeqOf(lost.recoveryId)).toBe(lost.wakeSeq + 2);
    expect(await wakeSeqOf(kept.recoveryId)).toBe(kept.wakeSeq + 1);
  });

  it('starts an abandoned recovery for an unpaid order.created and none for an order paid in time', async () => {
    const paidCreated = makeEvent({ type: 'order.created' }, { cadence: 'quick' });
    expect(await (await svc.post(paidCreated)).json()).toMatchObject({ outcome: 'order_recorded' });
    const paid = { ...makeEvent({ type: 'payment.succeeded' }), order: paidCreated.order };
    expect(await (await svc.post(paid)).json()).toMatchObject({ outcome: 'order_paid' });

    const abandoned = makeEvent({ type: 'order.created' }, { cadence: 'quick' });
    expect(await (await svc.post(abandoned)).json()).toMatchObject({ outcome: 'order_recorded' });

    const message = await waitFor(
      async () => {
        const view = await svc.getOrder(abandoned.order.id);
        return view.messages[0]?.status === 'sent' ? view : undefined;
      },
      { what: 'the abandoned order’s first reminder' },
    );
    expect(message.recovery).toMatchObject({ state: 'active', cadence: 'quick', failure_category: 'abandoned' });
    const [row] = await rows<{ id: string }>(
      svc.database.db,
      sql`select id from messages where order_id = ${abandoned.order.id}`,
    );
    expect(outboxFiles(outboxDir, '.sms.json')).toContain(`${row?.id}.sms.json`);

    // The paid order's deadline came earlier than the abandoned one's: it was decided by now.
    const paidView = await svc.getOrder(paidCreated.order.id);
    expect(paidView.recovery).toBeNull();
    expect(paidView.messages).toEqual([]);
    const [check] = await rows<{ abandon_check_at: Date | null }>(
      svc.database.db,
      sql`select abandon_check_at from orders where id = ${paidCreated.order.id}`,
    );
    expect(check?.abandon_check_at).toBeNull();
  });
});

describe('Reconciler.runOnce on a fixed clock', () => {
  const clock = new FixedClock('2026-11-25T02:00:00Z');
  const prefix = uniquePrefix('rc');
  const graceMs = 30_000;
  const claimStaleAfterMs = 60_000;
  let rig: ReconcilerRig;
  let database: TestDatabase;
  let redis: RedisClient;
  let queue: StepQueue;
  let reconciler: Reconciler;

  beforeAll(async () => {
    rig = await startReconcilerRig({ cadencesYaml, clock, prefix, graceMs, claimStaleAfterMs });
    ({ database, redis, queue, reconciler } = rig);
    // The first pass starts the promotion cursor of this fresh prefix (and finds nothing to queue).
    expect(await reconciler.runOnce()).toMatchObject({ resynced: 0, restored: 0 });
  });
  afterAll(() => rig.close());

  const startRecovery = () => rig.startRecovery('quick');

  it('replaces a wake-up that sits in the failed set with a fresh one', async () => {
    const { wakeup } = await startRecovery();
    const { recoveryId } = wakeup;
    const failedId = stepJobId(recoveryId, wakeup.wakeSeq);
    // Queued as the service would, due now; a throwaway worker makes it fail for good.
    await queue.add([wakeup], wakeup.runAt);
    const failer = new Worker(
      stepQueueName,
      async () => {
        throw new UnrecoverableError('database unreachable');
      },
      { connection: { url: testRedisUrl() }, prefix },
    );
    try {
      await waitFor(async () => ((await queue.queue.getJobState(failedId)) === 'failed' ? true : undefined), {
        what: 'the wake-up to land in the failed set',
      });
    } finally {
      await failer.close();
    }

    // Not yet overdue by the grace: left alone.
    clock.set(new Date(wakeup.runAt.getTime() + graceMs / 2));
    expect(await reconciler.runOnce()).toMatchObject({ restored: 0 });

    clock.set(new Date(wakeup.runAt.getTime() + graceMs + 1_000));
    expect(await reconciler.runOnce()).toMatchObject({ restored: 1 });
    const [row] = await rows<{ wake_seq: number }>(
      database.db,
      sql`select wake_seq from recoveries where id = ${recoveryId}`,
    );
    expect(row?.wake_seq).toBe(wakeup.wakeSeq + 1);
    const fresh = await queue.queue.getJob(stepJobId(recoveryId, wakeup.wakeSeq + 1));
    expect(fresh?.data).toEqual({ recoveryId, wakeSeq: wakeup.wakeSeq + 1 });
    expect(await fresh?.getState()).toBe('waiting');
    expect(await queue.queue.getJobState(failedId)).toBe('failed');

    // The fresh wake-up exists now: the next pass does not add yet another one.
    expect(await reconciler.runOnce()).toMatchObject({ restored: 0 });
  });

  it('leaves an overdue wake-up alone while its job still exists (a backlog, not a loss)', async () => {
    clock.set('2026-11-25T03:00:00Z');
    const { wakeup } = await startRecovery();
    await queue.add([wakeup], clock.now());
    clock.set(new Date(wakeup.runAt.getTime() + graceMs * 10));
    expect(await reconciler.runOnce()).toMatchObject({ restored: 0 });
    const [row] = await rows<{ wake_seq: number }>(
      database.db,
      sql`select wake_seq from recoveries where id = ${wakeup.recoveryId}`,
    );
    expect(row?.wake_seq).toBe(wakeup.wakeSeq);
  });

  it('finds a lost wake-up behind a backlog larger than its page, without re-checking the same page', async () => {
    const paged = new Reconciler({
      db: database.db,
      redis,
      queue,
      queuePrefix: prefix,
      cadences: new CadenceBook(database.db),
      clock,
      logger: createLogger('silent'),
      graceMs,
      claimStaleAfterMs,
      batchSize: 2,
    });
    clock.set('2026-11-25T04:00:00Z');
    const waiting = [];
    for (let i = 0; i < 5; i++) {
      const { wakeup } = await startRecovery();
      await queue.add([wakeup], clock.now());
      waiting.push(wakeup);
    }
    // Due after all of them, and never queued: lost.
    clock.set('2026-11-25T04:00:01Z');
    const { wakeup: lost } = await startRecovery();
    clock.set('2026-11-25T05:00:00Z');

    let restored = 0;
    let passes = 0;
    while (restored === 0 && passes < 10) {
      restored += (await paged.runOnce()).restored;
      passes += 1;
    }
    expect(restored).toBe(1);
    // Every overdue recovery of this file is at most a page of 2 each pass: the lost one is reached
    // in a bounded number of passes, however many waiting ones sort before it.
    expect(passes).toBeLessThanOrEqual(6);
    const seqs = await rows<{ id: string; wake_seq: number }>(
      database.db,
      sql`select id, wake_seq from recoveries where id in ${[lost.recoveryId, ...waiting.map((w) => w.recoveryId)]}`,
    );
    for (const row of seqs) expect(row.wake_seq).toBe(row.id === lost.recoveryId ? lost.wakeSeq + 1 : 0);
  });

  it('closes stale `sending` claims of ended recoveries as unknown, and only those', async () => {
    clock.set('2026-11-25T04:00:00Z');
    // The lease runs on Postgres's clock: a claim `claimedAt` on the test's clock is that much older there.
    const claim = async (recoveryId: string, orderId: string, claimedAt: Date) => {
      const id = `msg_${recoveryId}`;
      const ageMs = clock.now().getTime() - claimedAt.getTime();
      await database.db.execute(
        sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                  attempts, claim_id, claimed_at, lease_started_at, created_at, updated_at)
            select ${id}, r.id, r.order_id, r.customer_id, 0, 'sms', 'nudge', 'sending', '+8613800138000',
                   1, 'deadbeef', ${claimedAt}, clock_timestamp() - ${ageMs} * interval '1 millisecond',
                   ${claimedAt}, ${claimedAt}
            from recoveries r where r.id = ${recoveryId} and r.order_id = ${orderId}`,
      );
      return id;
    };
    const pay = async (order: ReturnType<typeof parseEvent>['order']) => {
      const result = await applyEvent(
        rig.intake,
        parseEvent(makeEvent({ type: 'payment.succeeded', occurred_at: clock.now().toISOString() }, order!)),
        clock.now(),
      );
      expect(result).toMatchObject({ status: 'accepted', outcome: 'order_paid' });
    };

    const old = new Date(clock.now().getTime() - claimStaleAfterMs - 1_000);
    const recent = new Date(clock.now().getTime() - claimStaleAfterMs / 2);
    const endedOld = await startRecovery();
    const endedRecent = await startRecovery();
    const activeOld = await startRecovery();
    const staleId = await claim(endedOld.wakeup.recoveryId, endedOld.order.id, old);
    const freshId = await claim(endedRecent.wakeup.recoveryId, endedRecent.order.id, recent);
    const activeId = await claim(activeOld.wakeup.recoveryId, activeOld.order.id, old);
    await pay(endedOld.order);
    await pay(endedRecent.order);

    expect(await reconciler.runOnce()).toMatchObject({ staleClaimsClosed: 1 });
    const statuses = await rows<{ id: string; status: string; reason: string | null; claim_id: string | null }>(
      database.db,
      sql`select id, status, reason, claim_id from messages where id in (${staleId}, ${freshId}, ${activeId}) order by id`,
    );
    expect(new Map(statuses.map((m) => [m.id, m]))).toEqual(
      new Map([
        [staleId, { id: staleId, status: 'unknown', reason: 'outcome_unknown_worker_lost', claim_id: null }],
        // Its worker may still be talking to the provider.
        [freshId, { id: freshId, status: 'sending', reason: null, claim_id: 'deadbeef' }],
        // An active recovery's claim is resolved by its next wake-up, which also moves the cadence on.
        [activeId, { id: activeId, status: 'sending', reason: null, claim_id: 'deadbeef' }],
      ]),
    );
  });
  // Last in this block: its passes run over every recovery the block created.
  it('re-queues everything on the next pass when the re-queue after a loss failed half-way', async () => {
    clock.set('2026-11-25T05:00:00Z');
    const { wakeup } = await startRecovery();
    const flakyPrefix = uniquePrefix('rf');
    const flakyQueue = new StepQueue(redis, flakyPrefix);
    const add = flakyQueue.add.bind(flakyQueue);
    let refusals = 1;
    flakyQueue.add = async (wakeups, now) => {
      if (refusals-- > 0) throw new Error("READONLY You can't write against a read only replica.");
      return add(wakeups, now);
    };
    const flaky = new Reconciler({
      db: database.db,
      redis,
      queue: flakyQueue,
      queuePrefix: flakyPrefix,
      cadences: rig.intake.cadences,
      clock,
      logger: createLogger('silent'),
      graceMs,
      claimStaleAfterMs,
    });
    try {
      // A fresh prefix looks exactly like a Redis that lost everything.
      await expect(flaky.runOnce()).rejects.toThrow('READONLY');
      const report = await flaky.runOnce();
      expect(report.resynced).toBeGreaterThan(0);
      const job = await flakyQueue.queue.getJob(stepJobId(wakeup.recoveryId, wakeup.wakeSeq));
      expect(job?.data).toEqual({ recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
      expect(await flaky.runOnce()).toMatchObject({ resynced: 0 });
    } finally {
      await flakyQueue.close();
      await deletePrefix(flakyPrefix);
    }
  });
});
