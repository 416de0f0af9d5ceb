import { randomInt } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage } from '../../src/channels/email-sender.js';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SendReceipt, SmsMessage } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import type { Wakeup } from '../../src/queue/queues.js';
import {
  dispatchStep,
  dispatchSteps,
  type DispatchDeps,
  type DispatchResult,
} from '../../src/recoveries/dispatch-step.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';
import { readLocked, readSnapshots } from '../../src/recoveries/step-store.js';

// Steps minutes apart on a fixed clock: every wake-up is fired by hand, at the instant the test chooses.
const cadencesYaml = `
- name: plain
  expire_after: 1h
  steps:
    - { after: 1m, channel: sms,   template: nudge }
    - { after: 2m, channel: email, template: alternative-methods }
    - { after: 3m, channel: sms,   template: last-call }
- name: no-switch
  switch_channel_on_failure: false
  expire_after: 1h
  steps:
    - { after: 1m, channel: sms,   template: nudge }
    - { after: 2m, channel: email, template: alternative-methods }
- name: quiet
  quiet_hours: { start: '21:00', end: '09:00' }
  expire_after: 3d
  steps:
    - { after: 1m, channel: sms, template: nudge }
    - { after: 2m, channel: sms, template: last-call }
- name: capped
  max_messages_per_day: 1
  expire_after: 3d
  steps:
    - { after: 1m, channel: sms,   template: nudge }
    - { after: 2m, channel: email, template: alternative-methods }
- name: capped-email
  max_messages_per_day: 1
  expire_after: 3d
  steps:
    - { after: 1m, channel: email, template: nudge }
- name: quiet-short
  quiet_hours: { start: '21:00', end: '09:00' }
  expire_after: 2h
  steps:
    - { after: 1m, channel: sms, template: nudge }
`;

const sendRetryBaseMs = 60_000;
const sendMaxAttempts = 3;
const claimStaleAfterMs = 120_000;

/**
 * A provider that records every call and answers with whatever `answer` says: nothing
 * (accepted) or a ProviderError saying what the failure means.
 */
class FakeSender<M extends { messageId: string; to: string }> {
  readonly transport = 'fake';
  readonly calls: M[] = [];
  answer: (message: M) => ProviderError | Error | undefined = () => undefined;
  constructor(private readonly clock: FixedClock) {}
  async send(message: M): Promise<SendReceipt> {
    this.calls.push(message);
    const error = this.answer(message);
    if (error) throw error;
    return { providerId: `fake-${this.calls.length}`, acceptedAt: this.clock.now() };
  }
  callsFor(messageId: string | undefined): M[] {
    return this.calls.filter((m) => m.messageId === messageId);
  }
  async close() {}
}

interface MessageRow {
  id: string;
  step: number;
  channel: string;
  status: string;
  reason: string | null;
  to_address: string | null;
  attempts: number;
  planned_at: Date | null;
  provider_id: string | null;
}

interface RecoveryRow {
  state: string;
  step_index: number;
  wake_seq: number;
  next_run_at: Date | null;
  ended_reason: string | null;
}

/** A phone number no other test uses: suppressions are per address, not per customer. */
function uniquePhone(): string {
  return `+86139${String(randomInt(10_000_000, 99_999_999))}`;
}

describe('dispatchStep on a fixed clock', () => {
  let database: TestDatabase;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  const clock = new FixedClock('2026-11-25T02:00:00Z');
  const sms = new FakeSender<SmsMessage>(clock);
  const email = new FakeSender<EmailMessage>(clock);

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms,
      email,
      clock,
      logger: createLogger('silent'),
      settings: {
        publicUrl: 'https://pay.example-shop.com',
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: 86_400_000,
        // No spread: deferred messages are released exactly at the end of the window.
        quietHoursSpreadMs: 0,
        sendMaxAttempts,
        sendRetryBaseMs,
        claimStaleAfterMs,
      },
    };
  });
  afterAll(async () => {
    await database.drop();
  });
  beforeEach(() => {
    sms.answer = () => undefined;
    email.answer = () => undefined;
    delete dispatch.faultPoint;
  });

  /** A payment.failed event at the clock's time: the recovery starts with its first wake-up. */
  async function startRecovery(cadence: string, customer: Record<string, unknown> = {}) {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const event = parseEvent({
      ...base,
      order: { ...base.order, cadence, customer: { ...base.order.customer, ...customer } },
    });
    const result = await applyEvent(intake, event, clock.now());
    if (result.status !== 'accepted' || !result.wakeups[0]) throw new Error('the recovery did not start');
    const [row] = await rows<{ id: string }>(
      database.db,
      sql`select id from recoveries where order_id = ${event.order?.id}`,
    );
    if (!row) throw new Error('no recovery row');
    return { recoveryId: row.id, wakeup: result.wakeups[0], customer: event.order!.customer };
  }

  /** Fires a wake-up the way the queue would: at its time (or now, if that has passed). */
  function fire(wakeup: Wakeup): Promise<DispatchResult> {
    if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
    return dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
  }

  function next(result: DispatchResult): Wakeup {
    const [wakeup] = result.wakeups;
    if (!wakeup) throw new Error(`no wake-up after "${result.action}"`);
    return wakeup;
  }

  async function messagesOf(recoveryId: string): Promise<MessageRow[]> {
    return rows<MessageRow>(
      database.db,
      sql`select id, step, channel, status, reason, to_address, attempts, planned_at, provider_id
          from messages where recovery_id = ${recoveryId} order by step`,
    );
  }

  async function recoveryOf(recoveryId: string): Promise<RecoveryRow> {
    const [row] = await rows<RecoveryRow>(
      database.db,
      sql`select state, step_index, wake_seq, next_run_at, ended_reason from recoveries where id = ${recoveryId}`,
    );
    if (!row) throw new Error(`recovery ${recoveryId} not found`);
    return row;
  }

  describe('quiet hours', () => {
    it("defers a step due at night to the end of quiet hours in the customer's timezone, then sends it", async () => {
      // 20:59 in New York (EST, UTC-5): the first step falls due at 21:00 local, inside 21:00–09:00.
      clock.set('2026-11-26T01:59:00Z');
      const { recoveryId, wakeup } = await startRecovery('quiet', {
        timezone: 'America/New_York',
        phone: uniquePhone(),
      });
      const endOfQuiet = new Date('2026-11-26T14:00:00Z'); // 09:00 EST

      const deferred = await fire(wakeup);
      expect(deferred.action).toBe('deferred');
      expect(next(deferred).runAt).toEqual(endOfQuiet);
      const [scheduled] = await messagesOf(recoveryId);
      expect(scheduled).toMatchObject({ step: 0, status: 'scheduled', reason: 'quiet_hours', planned_at: endOfQuiet });
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 0, next_run_at: endOfQuiet });
      expect(sms.callsFor(scheduled?.id)).toHaveLength(0);

      // A wake-up that fires a minute early (clock skew) only comes back later.
      clock.set(new Date(endOfQuiet.getTime() - 60_000));
      const early = await dispatchStep(dispatch, { recoveryId, wakeSeq: next(deferred).wakeSeq });
      expect(early.action).toBe('rescheduled');
      expect(next(early).runAt).toEqual(endOfQuiet);
      expect(sms.callsFor(scheduled?.id)).toHaveLength(0);

      const sent = await fire(next(early));
      expect(sent.action).toBe('sent');
      expect(clock.now()).toEqual(endOfQuiet);
      const [message] = await messagesOf(recoveryId);
      expect(message).toMatchObject({ id: scheduled?.id, status: 'sent', reason: null, attempts: 1 });
      expect(sms.callsFor(message?.id)).toHaveLength(1);
    });
  });

  describe("a step deferred past the recovery's expiry", () => {
    it('wakes the recovery at its expiry, where it ends, not at the end of quiet hours', async () => {
      // 20:59 in New York: the step falls due at 21:00, quiet until 09:00, and the recovery expires at 22:59.
      clock.set('2026-11-26T01:59:00Z');
      const { recoveryId, wakeup } = await startRecovery('quiet-short', {
        timezone: 'America/New_York',
        phone: uniquePhone(),
      });
      const expiry = new Date('2026-11-26T03:59:00Z');

      const deferred = await fire(wakeup);
      expect(deferred.action).toBe('deferred');
      expect(next(deferred).runAt).toEqual(expiry);
      const [held] = await messagesOf(recoveryId);
      expect(held).toMatchObject({ status: 'scheduled', reason: 'quiet_hours' });

      expect((await fire(next(deferred))).action).toBe('ended');
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'exhausted', ended_reason: 'expired' });
      expect(sms.callsFor(held?.id)).toHaveLength(0);
    });
  });

  describe('max_messages_per_day', () => {
    it("counts every recovery of the customer and defers to the next local day's start", async () => {
      // 10:00 in Shanghai (UTC+8).
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      const first = await startRecovery('capped', { phone });
      const second = await startRecovery('capped', { id: first.customer.id, phone });
      expect(second.customer.id).toBe(first.customer.id);

      expect((await fire(first.wakeup)).action).toBe('sent');
      const capped = await fire(second.wakeup);
      expect(capped.action).toBe('deferred');

      const nextLocalMidnight = new Date('2026-11-25T16:00:00Z'); // 2026-11-26 00:00 in Shanghai
      expect(next(capped).runAt).toEqual(nextLocalMidnight);
      const [held] = await messagesOf(second.recoveryId);
      expect(held).toMatchObject({ status: 'scheduled', reason: 'daily_cap', planned_at: nextLocalMidnight });
      expect(await recoveryOf(second.recoveryId)).toMatchObject({ next_run_at: nextLocalMidnight });
      expect(sms.callsFor(held?.id)).toHaveLength(0);

      const released = await fire(next(capped));
      expect(released.action).toBe('sent');
      expect(await messagesOf(second.recoveryId)).toEqual([
        expect.objectContaining({ id: held?.id, status: 'sent', attempts: 1 }),
      ]);
      expect(sms.callsFor(held?.id)).toHaveLength(1);
    });

    it('gives a customer with three unpaid orders one stream: one reminder a day, not three', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      const first = await startRecovery('capped', { phone });
      const second = await startRecovery('capped', { id: first.customer.id, phone });
      const third = await startRecovery('capped', { id: first.customer.id, phone });
      clock.set(first.wakeup.runAt);
      const results = await Promise.all([first, second, third].map(({ wakeup }) => dispatchStep(dispatch, wakeup)));
      expect(results.map((r) => r.action).sort()).toEqual(['deferred', 'deferred', 'sent']);
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
    });

    it('holds when two recoveries of the customer fire at the same moment', async () => {
      // Different orders take different row locks: without a per-customer lock both claims
      // would count zero sends today and both would go out.
      for (let round = 0; round < 10; round += 1) {
        clock.set('2026-11-25T02:00:00Z');
        const phone = uniquePhone();
        const first = await startRecovery('capped', { phone });
        const second = await startRecovery('capped', { id: first.customer.id, phone });
        clock.set(first.wakeup.runAt);
        const results = await Promise.all([first, second].map(({ wakeup }) => dispatchStep(dispatch, wakeup)));
        expect(results.map((r) => r.action).sort()).toEqual(['deferred', 'sent']);
        expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
      }
    });
  });

  describe('max_messages_per_day across guest customer ids (one address, a customer id per order)', () => {
    /** Stores the customer's address in another form than intake would, as an older row may hold it. */
    async function storeAddress(customerId: string, column: 'phone' | 'email', value: string) {
      const target = column === 'phone' ? sql`phone` : sql`email`;
      await database.db.execute(sql`update customers set ${target} = ${value} where id = ${customerId}`);
    }

    it('counts the sends to the same phone under another customer id, in whatever form it is stored', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      const first = await startRecovery('capped', { phone });
      const second = await startRecovery('capped', { phone });
      expect(second.customer.id).not.toBe(first.customer.id);
      const spaced = `${phone.slice(0, 3)} ${phone.slice(3, 6)}-${phone.slice(6, 10)}-${phone.slice(10)}`;
      await storeAddress(second.customer.id, 'phone', spaced);

      expect((await fire(first.wakeup)).action).toBe('sent');
      const capped = await fire(second.wakeup);
      expect(capped.action).toBe('deferred');
      const nextLocalMidnight = new Date('2026-11-25T16:00:00Z'); // 2026-11-26 00:00 in Shanghai
      expect(next(capped).runAt).toEqual(nextLocalMidnight);
      expect(await messagesOf(second.recoveryId)).toEqual([
        expect.objectContaining({ status: 'scheduled', reason: 'daily_cap', to_address: spaced }),
      ]);
      expect(sms.calls.filter((m) => m.to === phone || m.to === spaced)).toHaveLength(1);
    });

    it('counts the sends to the same email in another case under another customer id', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const address = `guest-${randomInt(1_000_000, 9_999_999)}@example.com`;
      const first = await startRecovery('capped-email', { phone: uniquePhone(), email: address });
      const second = await startRecovery('capped-email', { phone: uniquePhone(), email: address });
      await storeAddress(second.customer.id, 'email', ` ${address.toUpperCase()}`);

      expect((await fire(first.wakeup)).action).toBe('sent');
      expect((await fire(second.wakeup)).action).toBe('deferred');
      expect(await messagesOf(second.recoveryId)).toEqual([
        expect.objectContaining({ channel: 'email', status: 'scheduled', reason: 'daily_cap' }),
      ]);
      expect(email.calls.filter((m) => m.to.trim().toLowerCase() === address)).toHaveLength(1);
    });

    it("does not count another customer's sends to a different address, nor on the other channel", async () => {
      clock.set('2026-11-25T02:00:00Z');
      const address = `guest-${randomInt(1_000_000, 9_999_999)}@example.com`;
      const phone = uniquePhone();
      // The same email, but the step goes by SMS to different phones: nothing is shared on that channel.
      const first = await startRecovery('capped', { phone, email: address });
      const second = await startRecovery('capped', { phone: uniquePhone(), email: address });
      expect((await fire(first.wakeup)).action).toBe('sent');
      expect((await fire(second.wakeup)).action).toBe('sent');
    });

    it('holds when two guest customers with one phone fall due at the same instant', async () => {
      // Different orders and different customers take different locks: without one per address
      // both claims would count zero sends today and both would go out.
      for (let round = 0; round < 10; round += 1) {
        clock.set('2026-11-25T02:00:00Z');
        const phone = uniquePhone();
        const first = await startRecovery('capped', { phone });
        const second = await startRecovery('capped', { phone });
        clock.set(first.wakeup.runAt);
        const results = await Promise.all([first, second].map(({ wakeup }) => dispatchStep(dispatch, wakeup)));
        expect(results.map((r) => r.action).sort()).toEqual(['deferred', 'sent']);
        expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
      }
    });

    it('holds within one batch too', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      const first = await startRecovery('capped', { phone });
      const second = await startRecovery('capped', { phone });
      clock.set(first.wakeup.runAt);
      const results = await dispatchSteps(
        dispatch,
        [first.wakeup, second.wakeup].map((w) => ({ recoveryId: w.recoveryId, wakeSeq: w.wakeSeq })),
      );
      expect(results.map((r) => r.action).sort()).toEqual(['deferred', 'sent']);
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
    });
  });

  describe('batches (dispatchSteps: the jobs a worker holds, dispatched together)', () => {
    it('decides every job of a batch as it would alone: sent, stale, already paid, a duplicate wake-up, the daily cap', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const plain = await startRecovery('plain', { phone: uniquePhone() });
      const another = await startRecovery('plain', { phone: uniquePhone() });
      const paid = await startRecovery('plain', { phone: uniquePhone() });
      const phone = uniquePhone();
      const capped = await startRecovery('capped', { phone });
      const cappedToo = await startRecovery('capped', { id: capped.customer.id, phone });
      const [paidOrder] = await rows<{ order_id: string }>(
        database.db,
        sql`select order_id from recoveries where id = ${paid.recoveryId}`,
      );
      const payment = parseEvent(
        makeEvent(
          { type: 'payment.succeeded', occurred_at: clock.now().toISOString() },
          { id: paidOrder?.order_id, customer: paid.customer },
        ),
      );
      expect(await applyEvent(intake, payment, clock.now())).toMatchObject({ status: 'accepted' });
      clock.set(plain.wakeup.runAt);

      const jobs = [
        plain.wakeup,
        { ...another.wakeup, wakeSeq: another.wakeup.wakeSeq + 5 },
        paid.wakeup,
        another.wakeup,
        plain.wakeup,
        capped.wakeup,
        cappedToo.wakeup,
      ].map((w) => ({ recoveryId: w.recoveryId, wakeSeq: w.wakeSeq }));
      const results = await dispatchSteps(dispatch, jobs);

      expect(results.map((r) => r.action)).toEqual([
        'sent',
        'stale',
        'nothing',
        'sent',
        'rescheduled', // the same wake-up twice: the second finds the step claimed, and waits for it
        'sent',
        'deferred',
      ]);
      for (const recovery of [plain, another, capped]) {
        const [message] = await messagesOf(recovery.recoveryId);
        expect(message).toMatchObject({ step: 0, status: 'sent', attempts: 1 });
        expect(sms.callsFor(message?.id)).toHaveLength(1);
      }
      expect(await messagesOf(paid.recoveryId)).toEqual([]);
      expect(await messagesOf(cappedToo.recoveryId)).toEqual([
        expect.objectContaining({ status: 'scheduled', reason: 'daily_cap' }),
      ]);
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
    });

    it('records each answer of a batch on its own message: one refused, one unknown, the rest sent', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const started = [];
      for (let i = 0; i < 4; i += 1) started.push(await startRecovery('plain', { phone: uniquePhone() }));
      const [refused, unknown] = started.map((r) => r.customer.phone);
      sms.answer = (message) =>
        message.to === refused
          ? new ProviderError('retry', '20429', 'Too Many Requests')
          : message.to === unknown
            ? new ProviderError('unknown', 'ETIMEDOUT', 'no answer')
            : undefined;
      clock.set(started[0]!.wakeup.runAt);
      const results = await dispatchSteps(
        dispatch,
        started.map(({ wakeup }) => ({ recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq })),
      );
      expect(results.map((r) => r.action)).toEqual(['retry_scheduled', 'unknown', 'sent', 'sent']);
      const statuses = await Promise.all(
        started.map(async (r) => (await messagesOf(r.recoveryId)).map((m) => [m.status, m.reason])),
      );
      expect(statuses).toEqual([
        [['scheduled', '20429']],
        [['unknown', 'ETIMEDOUT']],
        [['sent', null]],
        [['sent', null]],
      ]);
      expect(results.map((r) => r.wakeups.length)).toEqual([1, 1, 1, 1]);
    });
  });

  describe('suppressions', () => {
    it('records a suppressed address as suppressed, sends nothing to it and moves to the next step', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      await database.db.execute(
        sql`insert into suppressions (channel, address, reason) values ('sms', ${phone}, 'stop_reply')`,
      );
      const { recoveryId, wakeup, customer } = await startRecovery('no-switch', { phone });

      const suppressed = await fire(wakeup);
      expect(suppressed.action).toBe('suppressed');
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(0);
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 1 });

      const emailed = await fire(next(suppressed));
      expect(emailed.action).toBe('sent');
      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({
          step: 0,
          channel: 'sms',
          status: 'suppressed',
          reason: 'stop_reply',
          to_address: phone,
        }),
        expect.objectContaining({ step: 1, channel: 'email', status: 'sent', to_address: customer.email }),
      ]);
      expect(email.callsFor(emailed.messageId)).toEqual([expect.objectContaining({ to: customer.email })]);
    });

    it('sends the step by email instead when the cadence allows switching channels', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      await database.db.execute(
        sql`insert into suppressions (channel, address, reason) values ('sms', ${phone}, 'stop_reply')`,
      );
      const { recoveryId, wakeup, customer } = await startRecovery('plain', { phone });
      const result = await fire(wakeup);
      expect(result.action).toBe('sent');
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(0);
      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({ step: 0, channel: 'email', status: 'sent', to_address: customer.email }),
      ]);
    });
  });

  describe('provider answers', () => {
    it('re-sends after a transient refusal on the next wake-up, as attempt 2', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      let refusals = 1;
      sms.answer = () => (refusals-- > 0 ? new ProviderError('retry', '20429', 'Too Many Requests') : undefined);

      const refused = await fire(wakeup);
      expect(refused.action).toBe('retry_scheduled');
      const retryAt = new Date(clock.now().getTime() + sendRetryBaseMs);
      expect(next(refused).runAt).toEqual(retryAt);
      const [scheduled] = await messagesOf(recoveryId);
      expect(scheduled).toMatchObject({ step: 0, status: 'scheduled', reason: '20429', attempts: 1 });
      expect(await recoveryOf(recoveryId)).toMatchObject({ step_index: 0, next_run_at: retryAt });

      const sent = await fire(next(refused));
      expect(sent.action).toBe('sent');
      const [message] = await messagesOf(recoveryId);
      expect(message).toMatchObject({ id: scheduled?.id, status: 'sent', reason: null, attempts: 2 });
      expect(message?.provider_id).toMatch(/^fake-/);
      expect(sms.callsFor(message?.id)).toHaveLength(2);
      expect(await recoveryOf(recoveryId)).toMatchObject({ step_index: 1 });
    });

    it('fails the message after SEND_MAX_ATTEMPTS transient refusals, backing off, and moves on', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      sms.answer = () => new ProviderError('retry', '503', 'Service Unavailable');

      const first = await fire(wakeup);
      expect(first.action).toBe('retry_scheduled');
      const firstAt = clock.now().getTime();
      expect(next(first).runAt.getTime() - firstAt).toBe(sendRetryBaseMs);

      const second = await fire(next(first));
      expect(second.action).toBe('retry_scheduled');
      // The delay doubles per attempt.
      expect(next(second).runAt.getTime() - clock.now().getTime()).toBe(2 * sendRetryBaseMs);

      const last = await fire(next(second));
      expect(last.action).toBe('failed');
      const [message] = await messagesOf(recoveryId);
      expect(message).toMatchObject({ status: 'failed', reason: '503', attempts: sendMaxAttempts });
      expect(sms.callsFor(message?.id)).toHaveLength(sendMaxAttempts);
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 1 });
      expect(next(last).wakeSeq).toBe((await recoveryOf(recoveryId)).wake_seq);
    });

    it('marks a bad phone number and sends later SMS steps by email', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const phone = uniquePhone();
      const { recoveryId, wakeup, customer } = await startRecovery('plain', { phone });
      sms.answer = () =>
        new ProviderError('failed', '21211', "The 'To' number is not a valid phone number", {
          badAddress: 'invalid_address',
        });

      const failed = await fire(wakeup);
      expect(failed.action).toBe('failed');
      const [bad] = await rows<{ phone_bad_reason: string | null }>(
        database.db,
        sql`select phone_bad_reason from customers where id = ${customer.id}`,
      );
      expect(bad?.phone_bad_reason).toBe('invalid_address');

      const second = await fire(next(failed)); // step 1 is an email anyway
      expect(second.action).toBe('sent');
      const third = await fire(next(second)); // step 2 is an SMS step: it goes out by email
      expect(third.action).toBe('sent');

      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({ step: 0, channel: 'sms', status: 'failed', reason: '21211', attempts: 1 }),
        expect.objectContaining({ step: 1, channel: 'email', status: 'sent' }),
        expect.objectContaining({ step: 2, channel: 'email', status: 'sent', to_address: customer.email }),
      ]);
      expect(sms.calls.filter((m) => m.to === phone)).toHaveLength(1);
      expect(email.callsFor(third.messageId)).toEqual([expect.objectContaining({ to: customer.email })]);
    });

    it('records an unknown outcome as unknown, never re-sends it, and moves on', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      sms.answer = () => new ProviderError('unknown', 'ETIMEDOUT', 'timed out waiting for the answer');

      const unknown = await fire(wakeup);
      expect(unknown.action).toBe('unknown');
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 1 });

      // The same wake-up delivered again (a BullMQ retry) finds nothing to do.
      sms.answer = () => undefined;
      const again = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
      expect(again.action).toBe('stale');

      expect((await fire(next(unknown))).action).toBe('sent');
      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({ step: 0, status: 'unknown', reason: 'ETIMEDOUT', attempts: 1 }),
        expect.objectContaining({ step: 1, status: 'sent' }),
      ]);
      expect(sms.callsFor(unknown.messageId)).toHaveLength(1);
    });

    it('treats an error that is not a ProviderError as an unknown outcome', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      sms.answer = () => new Error('socket hang up');

      const result = await fire(wakeup);
      expect(result.action).toBe('unknown');
      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({ status: 'unknown', reason: 'unexpected_error' }),
      ]);
    });
  });

  describe('fire-time guards', () => {
    it('does nothing for a wake-up whose sequence is not the current one', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      clock.set(wakeup.runAt);
      const before = await recoveryOf(recoveryId);
      const calls = sms.calls.length;

      for (const wakeSeq of [wakeup.wakeSeq + 1, wakeup.wakeSeq - 1]) {
        const result = await dispatchStep(dispatch, { recoveryId, wakeSeq });
        expect(result).toEqual({ action: 'stale', wakeups: [] });
      }
      expect(await recoveryOf(recoveryId)).toEqual(before);
      expect(await messagesOf(recoveryId)).toEqual([]);
      expect(sms.calls.length).toBe(calls);

      // The real one still works.
      expect((await fire(wakeup)).action).toBe('sent');
    });

    it('closes a claim left by a dead worker as unknown after the stale bound and never re-sends it', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      // The worker dies after the provider accepted the SMS but before recording it.
      dispatch.faultPoint = async (point) => {
        if (point === 'after_provider_answer') throw new Error('worker killed');
      };
      await expect(fire(wakeup)).rejects.toThrow('worker killed');
      delete dispatch.faultPoint;

      const [claimed] = await messagesOf(recoveryId);
      expect(claimed).toMatchObject({ status: 'sending', attempts: 1 });
      expect(sms.callsFor(claimed?.id)).toHaveLength(1);

      // The claim's age counts on Postgres's clock, the one that wrote it: make it 5 s old there.
      const age = async (ms: number) =>
        database.db.execute(
          sql`update messages set lease_started_at = clock_timestamp() - ${ms} * interval '1 millisecond'
              where id = ${claimed!.id}`,
        );
      await age(5_000);
      // BullMQ retries the same job soon after: the claim is still fresh, so it waits for the bound.
      clock.advance(5_000);
      const waiting = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
      expect(waiting.action).toBe('rescheduled');
      const waitMs = next(waiting).runAt.getTime() - clock.now().getTime();
      expect(waitMs).toBeGreaterThan(claimStaleAfterMs - 5_000 - 1_000);
      expect(waitMs).toBeLessThanOrEqual(claimStaleAfterMs - 5_000);
      expect((await messagesOf(recoveryId))[0]).toMatchObject({ status: 'sending' });

      await age(claimStaleAfterMs);
      const closed = await fire(next(waiting));
      expect(closed.action).toBe('unknown');
      expect(closed.messageId).toBe(claimed?.id);
      expect((await messagesOf(recoveryId))[0]).toMatchObject({
        status: 'unknown',
        reason: 'outcome_unknown_worker_lost',
        attempts: 1,
      });
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 1 });

      // Later wake-ups send the next step, never this one again.
      expect((await fire(next(closed))).action).toBe('sent');
      expect(sms.callsFor(claimed?.id)).toHaveLength(1);
    });

    it('ends the recovery as exhausted when it expires before its next step', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      clock.advance(3_600_000); // expire_after: 1h, and the wake-up was badly late
      const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
      expect(result).toEqual({ action: 'ended', wakeups: [] });
      expect(await recoveryOf(recoveryId)).toMatchObject({
        state: 'exhausted',
        ended_reason: 'expired',
        next_run_at: null,
      });
      expect(await messagesOf(recoveryId)).toEqual([]);
    });

    it('ends the recovery as exhausted at expiry once every step ran', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const started = clock.now().getTime();
      const { recoveryId, wakeup } = await startRecovery('plain', { phone: uniquePhone() });
      let result = await fire(wakeup);
      result = await fire(next(result));
      result = await fire(next(result));
      expect(result.action).toBe('sent');
      const expiry = next(result);
      expect(expiry.runAt).toEqual(new Date(started + 3_600_000));
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active', step_index: 3 });

      expect((await fire(expiry)).action).toBe('ended');
      expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'exhausted', ended_reason: 'expired' });
      expect((await messagesOf(recoveryId)).map((m) => m.status)).toEqual(['sent', 'sent', 'sent']);
    });
  });

  describe('cart lines', () => {
    const items = [
      { name: 'Longjing tea gift box', quantity: 2, amount: 9800, image_url: 'https://cdn.example-shop.com/tea.jpg' },
      { name: 'Celadon cup', quantity: 1, amount: 3100, sku: 'CUP-1' },
    ];

    async function startWithItems(orderItems: unknown) {
      const base = makeEvent({ occurred_at: clock.now().toISOString() });
      const email = `cart-${randomInt(1e9)}@example.com`;
      const event = parseEvent({
        ...base,
        order: {
          ...base.order,
          cadence: 'capped-email',
          items: orderItems,
          customer: { ...base.order.customer, email, locale: 'en' },
        },
      });
      const result = await applyEvent(intake, event, clock.now());
      if (result.status !== 'accepted' || !result.wakeups[0]) throw new Error('the recovery did not start');
      return { wakeup: result.wakeups[0], email };
    }

    it('lists the order lines in the reminder email, html and text', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const { wakeup, email: to } = await startWithItems(items);
      const result = await fire(wakeup);
      expect(result.action).toBe('sent');
      const [sent] = email.callsFor(result.messageId);
      expect(sent?.to).toBe(to);
      expect(sent?.text).toContain('Longjing tea gift box × 2  CN¥98.00\nCeladon cup × 1  CN¥31.00\n');
      expect(sent?.html).toContain('<img src="https://cdn.example-shop.com/tea.jpg" width="48" height="48"');
      expect(sent?.html).toContain('Celadon cup <span');
    });

    it('reads the lines on the unlocked fast path and under the order lock alike', async () => {
      clock.set('2026-11-25T02:00:00Z');
      const withItems = await startWithItems(items);
      const without = await startWithItems(undefined);
      const jobs = [withItems.wakeup, without.wakeup].map((w) => ({ recoveryId: w.recoveryId, wakeSeq: w.wakeSeq }));
      const fast = await readSnapshots(database.db, dispatch.cadences, jobs, clock.now());
      expect(fast.map((read) => read?.items)).toEqual([items, null]);
      const locked = await database.db.transaction(async (tx) =>
        Promise.all(
          jobs.map((job) =>
            readLocked(
              tx,
              { cadences: dispatch.cadences, circuits: undefined, claimStaleAfterMs, now: clock.now() },
              job,
            ),
          ),
        ),
      );
      expect(locked.map((read) => read.items)).toEqual([items, null]);
    });
  });
});
