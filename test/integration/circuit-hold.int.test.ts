import { randomBytes, randomInt } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage } from '../../src/channels/email-sender.js';
import type { SendReceipt, SmsMessage } from '../../src/channels/sms-sender.js';
import { heldReminderCounts, type CircuitHold } from '../../src/circuits/circuit-hold.js';
import { GatewayHealth } from '../../src/circuits/gateway-health.js';
import { FixedClock } from '../../src/platform/clock.js';
import { openDatabase } from '../../src/db/client.js';
import { rows } from '../../src/db/rows.js';
import type { PaymentMethod } from '../../src/domain/vocabulary.js';
import { newId } from '../../src/platform/ids.js';
import { createLogger } from '../../src/platform/logger.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import type { Wakeup } from '../../src/queue/queues.js';
import { dispatchStep, type DispatchDeps, type DispatchResult } from '../../src/recoveries/dispatch-step.js';
import { jitterMs } from '../../src/cadences/send-window.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const cadencesYaml = `
- name: card-only
  expire_after: 1h
  steps:
    - { after: 1m, channel: sms, template: nudge, offer_methods: [card] }
    - { after: 30m, channel: sms, template: last-call, offer_methods: [card] }
- name: two-gateways
  expire_after: 1h
  steps:
    - { after: 1m, channel: sms, template: nudge, offer_methods: [card, alipay] }
- name: short
  expire_after: 3m
  steps:
    - { after: 1m, channel: sms, template: nudge, offer_methods: [card] }
`;

const recheckMs = 60_000;
const releaseSpreadMs = 600_000;
const T0 = new Date('2026-11-25T02:00:00Z');
const MINUTE = 60_000;

class FakeSender<M extends { messageId: string }> {
  readonly transport = 'fake';
  readonly calls: M[] = [];
  constructor(private readonly clock: FixedClock) {}
  async send(message: M): Promise<SendReceipt> {
    this.calls.push(message);
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
  status: string;
  reason: string | null;
  template: string;
  planned_at: Date | null;
}

function uniqueGateway(): string {
  return `gw${randomBytes(4).toString('hex')}`;
}

describe('dispatch while a gateway circuit is open', () => {
  let database: TestDatabase;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  let health: GatewayHealth;
  const clock = new FixedClock(T0);
  const sms = new FakeSender<SmsMessage>(clock);
  const email = new FakeSender<EmailMessage>(clock);
  // Which gateway each method goes to; every test routes to gateways of its own.
  let routes: Record<PaymentMethod, string> = { card: 'unset', alipay: 'unset', wechat_pay: 'unset' };
  const circuits: CircuitHold = {
    gatewayFor: (method) => routes[method],
    settings: { recheckMs, releaseSpreadMs },
  };

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    const logger = createLogger('silent');
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms,
      email,
      clock,
      logger,
      circuits,
      settings: {
        publicUrl: 'https://pay.example-shop.com',
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: 86_400_000,
        quietHoursSpreadMs: 0,
        sendMaxAttempts: 3,
        sendRetryBaseMs: 60_000,
        claimStaleAfterMs: 120_000,
      },
    };
    health = new GatewayHealth({
      db: database.db,
      clock,
      logger,
      settings: { windowMs: 5 * MINUTE, minFailures: 10, failureRatio: 0.5, coolDownMs: 2 * MINUTE },
    });
  });
  afterAll(async () => {
    await database.drop();
  });

  /** Ten gateway_outage failures just now, then an evaluation: the circuit opens. */
  async function openCircuit(gateway: string): Promise<void> {
    for (let i = 0; i < 10; i += 1) {
      await database.db.execute(
        sql`insert into payment_attempts (id, order_id, source, gateway, method, status, amount, currency,
                                          failure_category, occurred_at)
            values (${newId('att')}, ${`ord_${randomBytes(6).toString('hex')}`}, 'shop', ${gateway}, 'card', 'failed',
                    100, 'CNY', 'gateway_outage', ${new Date(clock.now().getTime() - 1_000)})`,
      );
    }
    const opened = (await health.evaluate()).filter((t) => t.gateway === gateway);
    expect(opened.map((t) => t.to)).toEqual(['open']);
  }

  /** Evaluates at the clock's time; the circuit must close now. */
  async function closeCircuit(gateway: string): Promise<Date> {
    const closed = (await health.evaluate()).filter((t) => t.gateway === gateway);
    expect(closed.map((t) => t.to)).toEqual(['closed']);
    return clock.now();
  }

  async function startRecovery(cadence: string) {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const phone = `+86139${String(randomInt(10_000_000, 99_999_999))}`;
    const event = parseEvent({
      ...base,
      order: { ...base.order, cadence, customer: { ...base.order.customer, phone } },
    });
    const result = await applyEvent(intake, event, clock.now());
    if (result.status !== 'accepted' || !result.wakeups[0]) throw new Error('the recovery did not start');
    const [row] = await rows<{ id: string }>(
      database.db,
      sql`select id from recoveries where order_id = ${event.order?.id}`,
    );
    if (!row) throw new Error('no recovery row');
    return { recoveryId: row.id, wakeup: result.wakeups[0] };
  }

  function fire(wakeup: Wakeup, deps: DispatchDeps = dispatch): Promise<DispatchResult> {
    if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
    return dispatchStep(deps, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
  }

  function next(result: DispatchResult): Wakeup {
    const [wakeup] = result.wakeups;
    if (!wakeup) throw new Error(`no wake-up after "${result.action}"`);
    return wakeup;
  }

  async function messagesOf(recoveryId: string): Promise<MessageRow[]> {
    return rows<MessageRow>(
      database.db,
      sql`select id, step, status, reason, template, planned_at from messages
          where recovery_id = ${recoveryId} order by step`,
    );
  }

  async function recoveryOf(recoveryId: string) {
    const [row] = await rows<{ state: string; expires_at: Date; next_run_at: Date | null; step_index: number }>(
      database.db,
      sql`select state, expires_at, next_run_at, step_index from recoveries where id = ${recoveryId}`,
    );
    if (!row) throw new Error(`recovery ${recoveryId} not found`);
    return row;
  }

  it('holds a step whose every gateway is open: scheduled with gateway_circuit_open, nothing sent', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
    await openCircuit(gateway);
    const { recoveryId, wakeup } = await startRecovery('card-only');
    const { expires_at: expiresAt } = await recoveryOf(recoveryId);

    const held = await fire(wakeup);
    const recheckAt = new Date(T0.getTime() + MINUTE + recheckMs);
    expect(held.action).toBe('deferred');
    expect(next(held).runAt).toEqual(recheckAt);
    const [message] = await messagesOf(recoveryId);
    expect(message).toMatchObject({
      step: 0,
      status: 'scheduled',
      reason: 'gateway_circuit_open',
      template: 'gateway-restored',
      planned_at: recheckAt,
    });
    expect(sms.callsFor(message?.id)).toHaveLength(0);
    // The hold does not use up the recovery's time.
    expect(await recoveryOf(recoveryId)).toMatchObject({
      state: 'active',
      step_index: 0,
      next_run_at: recheckAt,
      expires_at: new Date(expiresAt.getTime() + recheckMs),
    });

    // Still open at the recheck: held again, same message.
    const again = await fire(next(held));
    expect(again.action).toBe('deferred');
    expect(await messagesOf(recoveryId)).toEqual([
      expect.objectContaining({ id: message?.id, status: 'scheduled', reason: 'gateway_circuit_open' }),
    ]);
    expect((await recoveryOf(recoveryId)).expires_at).toEqual(new Date(expiresAt.getTime() + 2 * recheckMs));
    expect(sms.callsFor(message?.id)).toHaveLength(0);
    expect((await heldReminderCounts(database.db)).held).toBeGreaterThanOrEqual(1);
  });

  it('releases held steps after the close, spread by recovery, with the gateway-restored template', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
    await openCircuit(gateway);
    const recoveries = [];
    for (let i = 0; i < 6; i += 1) recoveries.push(await startRecovery('card-only'));
    const rechecks: Wakeup[] = [];
    for (const { wakeup } of recoveries) {
      clock.set(T0);
      const held = await fire(wakeup);
      expect(held.action).toBe('deferred');
      rechecks.push(next(held));
    }

    clock.set(new Date(T0.getTime() + 2 * MINUTE)); // the cool-down has passed
    const closedAt = await closeCircuit(gateway);
    const releases: Wakeup[] = [];
    for (const [i, recheck] of rechecks.entries()) {
      const { recoveryId } = recoveries[i]!;
      const expected = new Date(closedAt.getTime() + jitterMs(recoveryId, releaseSpreadMs));
      const waiting = await fire(recheck);
      expect(waiting.action).toBe('deferred');
      expect(next(waiting).runAt).toEqual(expected);
      expect(await messagesOf(recoveryId)).toEqual([
        expect.objectContaining({ status: 'scheduled', reason: 'gateway_circuit_released', planned_at: expected }),
      ]);
      releases.push(next(waiting));
    }
    // Spread over the release window, not one burst.
    const times = releases.map((w) => w.runAt.getTime());
    expect(new Set(times).size).toBe(times.length);
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(closedAt.getTime());
      expect(t).toBeLessThan(closedAt.getTime() + releaseSpreadMs);
    }
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(releaseSpreadMs / 10);

    for (const [i, release] of [...releases.entries()].sort((a, b) => a[1].runAt.getTime() - b[1].runAt.getTime())) {
      const { recoveryId } = recoveries[i]!;
      const sent = await fire(release);
      expect(sent.action).toBe('sent');
      expect(clock.now()).toEqual(release.runAt);
      const [message] = await messagesOf(recoveryId);
      expect(message).toMatchObject({ status: 'sent', reason: null, template: 'gateway-restored' });
      const [call] = sms.callsFor(message?.id);
      expect(call?.body).toContain('现已修复'); // zh-CN customers: "it is fixed now"
    }

    // Only held messages change template: the next step goes out as written.
    const { recoveryId } = recoveries[0]!;
    const [due] = await rows<{ next_run_at: Date; wake_seq: number }>(
      database.db,
      sql`select next_run_at, wake_seq from recoveries where id = ${recoveryId}`,
    );
    // The held step went out late: the next one keeps the cadence's 29 minutes from it (STEP_MIN_GAP).
    expect(due?.next_run_at).toEqual(new Date(releases[0]!.runAt.getTime() + 29 * MINUTE));
    const last = await fire({ recoveryId, wakeSeq: due!.wake_seq, runAt: due!.next_run_at });
    expect(last.action).toBe('sent');
    const [, second] = await messagesOf(recoveryId);
    expect(second).toMatchObject({ step: 1, status: 'sent', template: 'last-call' });
    expect(sms.callsFor(second?.id)[0]?.body).not.toContain('现已修复');
  });

  it('holds a released step again when the circuit reopens before its slot', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
    await openCircuit(gateway);
    // A recovery whose release slot comes well after its first recheck past the close.
    let recovery = await startRecovery('card-only');
    while (jitterMs(recovery.recoveryId, releaseSpreadMs) < 2 * MINUTE) recovery = await startRecovery('card-only');
    const held = await fire(recovery.wakeup);
    expect(held.action).toBe('deferred');

    clock.set(new Date(T0.getTime() + 2 * MINUTE));
    await closeCircuit(gateway);
    const waiting = await fire(next(held));
    expect(await messagesOf(recovery.recoveryId)).toEqual([
      expect.objectContaining({ reason: 'gateway_circuit_released' }),
    ]);

    clock.set(new Date(clock.now().getTime() + MINUTE));
    await openCircuit(gateway);
    const heldAgain = await fire(next(waiting));
    expect(heldAgain.action).toBe('deferred');
    const [message] = await messagesOf(recovery.recoveryId);
    expect(message).toMatchObject({ status: 'scheduled', reason: 'gateway_circuit_open' });
    expect(sms.callsFor(message?.id)).toHaveLength(0);
  });

  it('does not hold a step whose link also offers a healthy gateway', async () => {
    clock.set(T0);
    const broken = uniqueGateway();
    const healthy = uniqueGateway();
    routes = { card: broken, alipay: healthy, wechat_pay: healthy };
    await openCircuit(broken);
    const { recoveryId, wakeup } = await startRecovery('two-gateways');
    const sent = await fire(wakeup);
    expect(sent.action).toBe('sent');
    const [message] = await messagesOf(recoveryId);
    expect(message).toMatchObject({ status: 'sent', template: 'nudge' });
    expect(sms.callsFor(message?.id)).toHaveLength(1);

    // Both of its gateways open: held.
    clock.set(T0);
    await openCircuit(healthy);
    const other = await startRecovery('two-gateways');
    expect((await fire(other.wakeup)).action).toBe('deferred');
    expect(await messagesOf(other.recoveryId)).toEqual([
      expect.objectContaining({ status: 'scheduled', reason: 'gateway_circuit_open' }),
    ]);
  });

  it('a long outage does not expire the recovery: the held step still goes out', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
    await openCircuit(gateway);
    const { recoveryId, wakeup } = await startRecovery('short'); // expires at T0 + 3m
    let result = await fire(wakeup);
    for (let i = 0; i < 10; i += 1) {
      expect(result.action).toBe('deferred');
      result = await fire(next(result));
    }
    expect(clock.now()).toEqual(new Date(T0.getTime() + 11 * MINUTE));
    expect(await recoveryOf(recoveryId)).toMatchObject({ state: 'active' });

    await closeCircuit(gateway);
    result = await fire(next(result));
    while (result.action === 'deferred') result = await fire(next(result));
    expect(result.action).toBe('sent');
    expect(await messagesOf(recoveryId)).toEqual([
      expect.objectContaining({ status: 'sent', template: 'gateway-restored' }),
    ]);
  });

  it('without circuit deps nothing is checked', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
    await openCircuit(gateway);
    const { recoveryId, wakeup } = await startRecovery('card-only');
    expect((await fire(wakeup, { ...dispatch, circuits: undefined })).action).toBe('sent');
    expect(await messagesOf(recoveryId)).toEqual([expect.objectContaining({ status: 'sent', template: 'nudge' })]);
  });

  it('two worker processes firing the same wake-up hold it once', async () => {
    const other = await openDatabase({ url: database.url, dataDir: '.data/test', poolSize: 4 });
    try {
      clock.set(T0);
      const gateway = uniqueGateway();
      routes = { card: gateway, alipay: gateway, wechat_pay: gateway };
      await openCircuit(gateway);
      const { recoveryId, wakeup } = await startRecovery('card-only');
      const { expires_at: expiresAt } = await recoveryOf(recoveryId);
      clock.set(wakeup.runAt);
      const results = await Promise.all([
        dispatchStep(dispatch, wakeup),
        dispatchStep({ ...dispatch, db: other.db }, wakeup),
      ]);
      expect(results.map((r) => r.action).sort()).toEqual(['deferred', 'stale']);
      expect(await messagesOf(recoveryId)).toHaveLength(1);
      // Extended once, not twice.
      expect((await recoveryOf(recoveryId)).expires_at).toEqual(new Date(expiresAt.getTime() + recheckMs));
    } finally {
      await other.close();
    }
  });
});
