import { sql } from 'drizzle-orm';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailSender } from '../../src/channels/email-sender.js';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { PaymentGateways } from '../../src/payments/gateways.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { settleSuccess } from '../../src/payments/settle-success.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { settleInFlightSends } from '../../src/messages/in-flight.js';
import { openAttempt } from '../helpers/attempts.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const cadenceYaml = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 2s, channel: sms, template: last-call }
`;

/**
 * An SMS provider that notes when it accepts each message and the order's committed status then,
 * read over its own connection. A reminder accepted after the payment was answered is exactly the
 * bug this file hunts.
 */
class WatchingSmsSender implements SmsSender {
  readonly transport = 'watching';
  accepted: Array<{ messageId: string; orderId: string; orderStatus: string; at: number }> = [];
  onCall: ((message: SmsMessage) => Promise<void>) | undefined;
  constructor(
    private readonly observer: pg.Pool,
    private readonly orderOf: (messageId: string) => string,
  ) {}
  async send(message: SmsMessage) {
    await this.onCall?.(message);
    const orderId = this.orderOf(message.messageId);
    const { rows: found } = await this.observer.query<{ status: string }>('select status from orders where id = $1', [
      orderId,
    ]);
    this.accepted.push({
      messageId: message.messageId,
      orderId,
      orderStatus: found[0]?.status ?? 'missing',
      at: now(),
    });
    return { providerId: `SM${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}

/** One clock for acceptances and answers, both in this process. */
const now = () => performance.now();

const unusedEmail: EmailSender = {
  transport: 'unused',
  send: () => Promise.reject(new Error('no email in this test')),
  close: async () => {},
};

describe('payment arriving while a step is being sent', () => {
  let database: TestDatabase;
  let observer: pg.Pool;
  let sender: WatchingSmsSender;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  const clock = new FixedClock('2026-11-25T12:00:00Z');
  const orderByMessage = new Map<string, string>();

  beforeAll(async () => {
    database = await createTestDatabase();
    observer = new pg.Pool({ connectionString: database.url, max: 2 });
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadenceYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    sender = new WatchingSmsSender(observer, (id) => orderByMessage.get(id) ?? '');
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms: sender,
      email: unusedEmail,
      clock,
      logger: createLogger('silent'),
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
    };
  });
  afterAll(async () => {
    await observer.end();
    await database.drop();
  });

  async function startRecovery() {
    const failed = parseEvent(makeEvent({ occurred_at: clock.now().toISOString() }));
    const result = await applyEvent(intake, failed, clock.now());
    if (result.status !== 'accepted' || !result.wakeups[0]) throw new Error('recovery did not start');
    const [row] = await rows<{ id: string }>(
      database.db,
      sql`select id from recoveries where order_id = ${failed.order?.id}`,
    );
    return { order: failed.order!, wakeup: result.wakeups[0], recoveryId: row!.id };
  }

  /** The shop's payment as POST /v1/events takes it: committed, then answered once no reminder is in flight. */
  async function pay(order: NonNullable<ReturnType<typeof parseEvent>['order']>) {
    const result = await applyEvent(
      intake,
      parseEvent(makeEvent({ type: 'payment.succeeded', occurred_at: clock.now().toISOString() }, order)),
      clock.now(),
    );
    await settleInFlightSends(database.db, { orderId: order.id });
    return { result, answeredAt: now() };
  }

  /** Every reminder of the order that a provider accepted after its payment was answered. */
  function acceptedAfter(orderId: string, answeredAt: number) {
    return sender.accepted.filter((a) => a.orderId === orderId && a.at > answeredAt);
  }

  async function messageOf(recoveryId: string) {
    return rows<{ id: string; status: string; reason: string | null }>(
      database.db,
      sql`select id, status, reason from messages where recovery_id = ${recoveryId} order by step`,
    );
  }

  function track(orderId: string) {
    sender.onCall = undefined;
    dispatch.faultPoint = async (point, messageId) => {
      if (point === 'after_claim') orderByMessage.set(messageId, orderId);
    };
  }

  it('answers the payment only once the message in flight was accepted', async () => {
    const { order, wakeup, recoveryId } = await startRecovery();
    track(order.id);
    clock.advance(2_000);
    let payment: Promise<{ answeredAt: number }> | undefined;
    sender.onCall = async () => {
      // The payment arrives while the provider call is in flight: its answer must wait for it.
      payment = pay(order);
      await new Promise((resolve) => setTimeout(resolve, 150));
    };
    const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
    const { answeredAt } = await payment!;
    expect(result.action).toBe('sent');
    expect(sender.accepted.filter((a) => a.orderId === order.id)).toHaveLength(1);
    expect(acceptedAfter(order.id, answeredAt)).toEqual([]);
    const [recovery] = await rows<{ state: string }>(
      database.db,
      sql`select state from recoveries where id = ${recoveryId}`,
    );
    expect(recovery?.state).toBe('recovered');

    // The recovery ended with the payment: the sent step schedules no next one.
    expect(result.wakeups).toEqual([]);
    expect((await messageOf(recoveryId)).map((m) => m.status)).toEqual(['sent']);
  });

  it('answers a gateway webhook payment the same way', async () => {
    const { order, wakeup, recoveryId } = await startRecovery();
    track(order.id);
    clock.advance(2_000);
    const retry: RetryDeps = {
      db: database.db,
      cadences: intake.cadences,
      gateways: new PaymentGateways([], { card: 'sandbox', alipay: 'sandbox', wechat_pay: 'sandbox' }),
      clock,
      logger: createLogger('silent'),
      publicUrl: 'https://pay.example-shop.com',
      shopName: 'Example Shop',
      defaultLocale: 'en',
      clickWindowMs: 86_400_000,
    };
    const attemptId = await openAttempt(database.db, {
      orderId: order.id,
      gateway: 'sandbox',
      gatewayPaymentId: `sbx_${order.id}`,
      amount: order.amount,
      currency: order.currency,
    });
    let settled: Promise<{ outcome: unknown; answeredAt: number }> | undefined;
    sender.onCall = async () => {
      settled = settleSuccess(retry, {
        gateway: 'sandbox',
        gatewayPaymentId: `sbx_${order.id}`,
        attemptId,
        orderId: order.id,
        amount: order.amount,
        currency: order.currency,
        method: 'alipay',
        paidAt: clock.now(),
      }).then((outcome) => ({ outcome, answeredAt: now() }));
      await new Promise((resolve) => setTimeout(resolve, 150));
    };
    const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
    const { outcome, answeredAt } = await settled!;
    expect(outcome).toMatchObject({ kind: 'recorded' });
    expect(result.action).toBe('sent');
    expect(sender.accepted.filter((a) => a.orderId === order.id)).toHaveLength(1);
    expect(acceptedAfter(order.id, answeredAt)).toEqual([]);
    const [recovery] = await rows<{ state: string }>(
      database.db,
      sql`select state from recoveries where id = ${recoveryId}`,
    );
    expect(recovery?.state).toBe('recovered');
  });

  it('skips the send when the payment commits between the claim and the provider call', async () => {
    const { order, wakeup, recoveryId } = await startRecovery();
    clock.advance(2_000);
    const calls = sender.accepted.length;
    dispatch.faultPoint = async (point) => {
      if (point === 'after_claim') await pay(order);
    };
    const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
    expect(result.action).toBe('skipped');
    expect(sender.accepted.length).toBe(calls);
    expect(await messageOf(recoveryId)).toEqual([expect.objectContaining({ status: 'skipped', reason: 'order_paid' })]);
  });

  it('does nothing when the payment committed before the wake-up fired', async () => {
    const { order, wakeup, recoveryId } = await startRecovery();
    await pay(order);
    clock.advance(2_000);
    const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq });
    expect(result.action).toBe('nothing');
    expect(await messageOf(recoveryId)).toEqual([]);
  });

  it('never accepts a reminder after the payment was answered, over many random interleavings', async () => {
    const late: unknown[] = [];
    for (let i = 0; i < 60; i += 1) {
      const { order, wakeup, recoveryId } = await startRecovery();
      track(order.id);
      clock.advance(2_000);
      const sendDelay = Math.floor(Math.random() * 15);
      const payDelay = Math.floor(Math.random() * 25);
      sender.onCall = () => new Promise((resolve) => setTimeout(resolve, sendDelay));
      const [result, payment] = await Promise.all([
        dispatchStep(dispatch, { recoveryId, wakeSeq: wakeup.wakeSeq }),
        new Promise((resolve) => setTimeout(resolve, payDelay)).then(() => pay(order)),
      ]);
      expect(['sent', 'skipped', 'nothing']).toContain(result.action);
      const messages = await messageOf(recoveryId);
      expect(messages.filter((m) => m.status === 'sent').length).toBeLessThanOrEqual(1);
      late.push(...acceptedAfter(order.id, payment.answeredAt));
    }
    expect(late).toEqual([]);
  });
});
