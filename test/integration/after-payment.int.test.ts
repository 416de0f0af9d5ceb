import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailSender } from '../../src/channels/email-sender.js';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { numberEvents } from '../../src/webhooks/sequencer.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { flagRemindersAfterPayment, type ReminderAfterPayment } from '../../src/messages/after-payment.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { sendFreshLink, type FreshLinkDeps } from '../../src/recoveries/fresh-link.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const cadencesYaml = `
- name: texts
  expire_after: 3d
  steps:
    - { after: 1m, channel: sms, template: nudge }
    - { after: 1d, channel: sms, template: last-call }
`;

/**
 * An SMS provider that takes the message only after something else happened (the order paid, say),
 * and says it accepted it one second after the clock's time then.
 */
class AcceptingLateSender implements SmsSender {
  readonly transport = 'late';
  beforeAccepting: ((message: SmsMessage) => Promise<void>) | undefined;
  constructor(private readonly clock: FixedClock) {}
  async send(message: SmsMessage) {
    const before = this.beforeAccepting;
    this.beforeAccepting = undefined;
    await before?.(message);
    return { providerId: `SM${message.messageId}`, acceptedAt: new Date(this.clock.now().getTime() + 1_000) };
  }
  async close() {}
}

const noEmail: EmailSender = {
  transport: 'none',
  async send() {
    throw new Error('no email in these tests');
  },
  async close() {},
};

describe('reminders accepted after their order was paid', () => {
  const clock = new FixedClock('2026-11-25T12:00:00Z');
  const sms = new AcceptingLateSender(clock);
  const seen: ReminderAfterPayment[] = [];
  let database: TestDatabase;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  let freshLinks: FreshLinkDeps;

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    const logger = createLogger('silent');
    const onReminderAfterPayment = (reminders: ReminderAfterPayment[]) => seen.push(...reminders);
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms,
      email: noEmail,
      clock,
      logger,
      settings: {
        publicUrl: 'https://pay.example-shop.com',
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: 86_400_000,
        quietHoursSpreadMs: 0,
        sendMaxAttempts: 3,
        sendRetryBaseMs: 1_000,
        claimStaleAfterMs: 60_000,
      },
      onReminderAfterPayment,
    };
    freshLinks = {
      db: database.db,
      sms,
      email: noEmail,
      renderer,
      clock,
      publicUrl: 'https://pay.example-shop.com',
      shopName: 'Example Shop',
      retryLinkTtlMs: 86_400_000,
      logger,
      cadences,
      defaultTimezone: 'UTC',
      onReminderAfterPayment,
    };
  });
  afterAll(() => database?.drop());

  /** A failed payment with its recovery started; its first step is due now. */
  async function failedOrder() {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const order = { ...base.order, cadence: 'texts' };
    const result = await applyEvent(intake, parseEvent({ ...base, order }), clock.now());
    const [wakeup] = result.status === 'accepted' ? result.wakeups : [];
    if (!wakeup) throw new Error('the recovery did not start');
    if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
    return { order, wakeup };
  }

  async function pay(order: ReturnType<typeof makeEvent>['order']) {
    const paid = makeEvent({ type: 'payment.succeeded', occurred_at: clock.now().toISOString() });
    await applyEvent(intake, parseEvent({ ...paid, order }), clock.now());
  }

  async function flagged(messageId: string) {
    const [m] = await rows<{ status: string; after_payment_at: Date | null }>(
      database.db,
      sql`select status, after_payment_at from messages where id = ${messageId}`,
    );
    return m;
  }

  /** The order's reminder.after_payment events, once numbered. */
  const outbound = async (orderId: string) => {
    await numberEvents(database.db);
    return rows<{ type: string; sequence: number; data: Record<string, unknown> }>(
      database.db,
      sql`select type, sequence, data from outbound_events
          where order_id = ${orderId} and type = 'reminder.after_payment' order by sequence`,
    );
  };

  it('flags a cadence step whose provider accepted it after the payment, when its send is recorded', async () => {
    seen.length = 0;
    const { order, wakeup } = await failedOrder();
    sms.beforeAccepting = () => pay(order);
    const sent = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    expect(sent).toMatchObject({ action: 'sent' });
    expect(await flagged(sent.messageId!)).toMatchObject({ status: 'sent', after_payment_at: clock.now() });
    expect(await outbound(order.id)).toEqual([
      {
        type: 'reminder.after_payment',
        sequence: expect.any(Number) as unknown,
        data: expect.objectContaining({
          message_id: sent.messageId,
          step: 0,
          template: 'nudge',
          accepted_at: new Date(clock.now().getTime() + 1_000).toISOString(),
          paid_at: clock.now().toISOString(),
        }) as unknown,
      },
    ]);
    expect(seen).toEqual([
      {
        messageId: sent.messageId,
        orderId: order.id,
        channel: 'sms',
        acceptedAt: new Date(clock.now().getTime() + 1_000),
        closedAt: clock.now(),
        orderStatus: 'paid',
      },
    ]);
  });

  it('flags a fresh link its provider accepted after the payment', async () => {
    seen.length = 0;
    const { order, wakeup } = await failedOrder();
    const first = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    expect(await flagged(first.messageId!)).toMatchObject({ status: 'sent', after_payment_at: null });
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() - 1)} where id = ${first.messageId!}`,
    );
    sms.beforeAccepting = () => pay(order);
    expect(await sendFreshLink(freshLinks, first.messageId!)).toEqual({ kind: 'sent' });
    const [fresh] = await rows<{ id: string }>(
      database.db,
      sql`select id from messages where order_id = ${order.id} and step is null`,
    );
    expect(await flagged(fresh!.id)).toMatchObject({ status: 'sent', after_payment_at: clock.now() });
    expect((await outbound(order.id)).map((e) => [e.type, e.data.message_id])).toEqual([
      ['reminder.after_payment', fresh!.id],
    ]);
    expect(seen.map((r) => r.messageId)).toEqual([fresh!.id]);
  });

  it('leaves a reminder accepted before the payment alone, and flags each late one once, numbered per order', async () => {
    const { order, wakeup } = await failedOrder();
    const early = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    clock.advance(5_000);
    await pay(order);
    expect(await flagged(early.messageId!)).toMatchObject({ after_payment_at: null });

    // Two messages of the order that a provider reports accepted after the payment.
    const late = ['msg_late_1', 'msg_late_2'];
    for (const [n, id] of late.entries()) {
      await database.db.execute(
        sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status,
                                  to_address, sent_at, created_at, updated_at)
            select ${id}, recovery_id, order_id, customer_id, ${10 + n}, 'email', 'nudge', 'delivered',
                   'li@example.com', ${new Date(clock.now().getTime() + 1_000 + n)}, ${clock.now()}, ${clock.now()}
            from messages where id = ${early.messageId!}`,
      );
    }
    const now = clock.now();
    const found = await database.db.transaction((tx) =>
      flagRemindersAfterPayment(tx, [early.messageId!, ...late], now),
    );
    expect(found.map((r) => r.messageId)).toEqual(late);
    expect(await database.db.transaction((tx) => flagRemindersAfterPayment(tx, late, now))).toEqual([]);
    const events = await outbound(order.id);
    expect(events.map((e) => [e.data.message_id, e.data.to])).toEqual([
      ['msg_late_1', 'l***@example.com'],
      ['msg_late_2', 'l***@example.com'],
    ]);
    expect(events[1]!.sequence).toBe(events[0]!.sequence + 1);
  });

  it('flags a reminder accepted after its order was cancelled', async () => {
    const { order, wakeup } = await failedOrder();
    sms.beforeAccepting = async () => {
      const cancelled = makeEvent({ type: 'order.cancelled', occurred_at: clock.now().toISOString() });
      await applyEvent(intake, parseEvent({ ...cancelled, order }), clock.now());
    };
    const sent = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    expect(await flagged(sent.messageId!)).toMatchObject({ after_payment_at: clock.now() });
    const [only] = await outbound(order.id);
    expect(only?.data).toMatchObject({
      order_status: 'cancelled',
      paid_at: null,
      cancelled_at: clock.now().toISOString(),
    });
  });
});
