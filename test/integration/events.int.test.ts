import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// A cadence whose first step is far away, so these tests see intake effects only.
const slowCadence = `
name: default
expire_after: 3d
steps:
  - { after: 1d, channel: sms, template: nudge }
`;

describe('POST /v1/events', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ cadences: slowCadence });
  });
  afterAll(async () => {
    await svc.close();
  });

  const count = async (table: 'events' | 'orders' | 'recoveries' | 'customers' | 'payment_attempts') => {
    const [row] = await rows<{ n: number }>(svc.database.db, sql.raw(`select count(*)::int as n from ${table}`));
    return row?.n ?? -1;
  };

  it('accepts a payment.failed event and starts one recovery', async () => {
    const event = makeEvent();
    const response = await svc.post(event);
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({
      event_id: event.id,
      status: 'accepted',
      outcome: 'recovery_started',
    });

    const view = await svc.getOrder(event.order.id);
    expect(view.order).toMatchObject({ id: event.order.id, status: 'pending', amount: 12900, currency: 'CNY' });
    expect(view.recovery).toMatchObject({
      state: 'active',
      cadence: 'default',
      step: 0,
      failure_category: expect.any(String),
    });
    expect(view.attempts).toEqual([
      expect.objectContaining({ status: 'failed', method: 'card', gateway: 'stripe', amount: 12900 }),
    ]);
  });

  it('answers a repeated event id with 200 duplicate and no second effect', async () => {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const again = await svc.post(event);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ event_id: event.id, status: 'duplicate' });
    const attempts = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from payment_attempts where order_id = ${event.order.id}`,
    );
    expect(attempts[0]?.n).toBe(1);
  });

  it('has exactly one effect when the same event id arrives concurrently', async () => {
    const event = makeEvent();
    const responses = await Promise.all(Array.from({ length: 20 }, () => svc.post(event)));
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 202)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(19);
    const [recoveries] = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from recoveries where order_id = ${event.order.id}`,
    );
    expect(recoveries?.n).toBe(1);
  });

  it('starts one recovery per order even when different failure events race', async () => {
    const first = makeEvent();
    const others = Array.from({ length: 10 }, (_, i) => ({ ...first, id: `${first.id}-race-${i}` }));
    const responses = await Promise.all([first, ...others].map((e) => svc.post(e)));
    expect(responses.every((r) => r.status === 202)).toBe(true);
    const [recoveries] = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from recoveries where order_id = ${first.order.id}`,
    );
    expect(recoveries?.n).toBe(1);
  });

  it('lists every invalid field by path in a problem+json 400 and writes nothing', async () => {
    const before = await Promise.all([count('events'), count('orders'), count('customers')]);
    const response = await svc.post({
      id: '',
      type: 'payment.exploded',
      occurred_at: 'yesterday',
      order: {
        id: 'ord_bad',
        amount: 12.5,
        currency: 'yuan',
        customer: { id: 'cus_bad', email: 'not-an-email', phone: '13800138000', timezone: 'Mars/Olympus' },
      },
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    const problem = (await response.json()) as { status: number; errors: Array<{ path: string }> };
    expect(problem.status).toBe(400);
    expect(problem.errors.map((e) => e.path).sort()).toEqual(
      [
        'id',
        'type',
        'occurred_at',
        'order.amount',
        'order.currency',
        'order.customer.email',
        'order.customer.phone',
        'order.customer.timezone',
      ].sort(),
    );
    expect(await Promise.all([count('events'), count('orders'), count('customers')])).toEqual(before);
  });

  it('rejects a body that is not JSON, not an object, or too large with 4xx problems', async () => {
    const broken = await svc.post('{"id": ');
    expect(broken.status).toBe(400);
    expect(broken.headers.get('content-type')).toContain('application/problem+json');

    const array = await svc.post([1, 2]);
    expect(array.status).toBe(400);

    const huge = await svc.post(makeEvent({ padding: 'x'.repeat(300_000) }));
    expect(huge.status).toBe(413);

    const text = await fetch(`${svc.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: 'Bearer test-key-0123456789abcdef', 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(text.status).toBe(415);
  });

  it('requires order for order events and a customer for customer.updated', async () => {
    const response = await svc.post({
      id: 'evt_no_order',
      type: 'payment.failed',
      occurred_at: new Date().toISOString(),
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { errors: Array<{ path: string }> }).errors).toEqual([
      expect.objectContaining({ path: 'order' }),
    ]);
    const customer = await svc.post({
      id: 'evt_no_customer',
      type: 'customer.updated',
      occurred_at: new Date().toISOString(),
    });
    expect(customer.status).toBe(400);
  });

  it('answers 401 without a key or with a wrong one', async () => {
    const event = makeEvent();
    const missing = await svc.post(event, { key: null });
    expect(missing.status).toBe(401);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
    expect((await svc.post(event, { key: 'wrong' })).status).toBe(401);
    const order = await fetch(`${svc.url}/v1/orders/${event.order.id}`);
    expect(order.status).toBe(401);
    const [row] = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from events where id = ${event.id}`,
    );
    expect(row?.n).toBe(0);
  });

  it('does not move an order backwards when an older event arrives late', async () => {
    // Ten minutes ago, so the order is not yet abandoned (ABANDON_AFTER 30m) and the reconciler
    // starts no recovery for it between these posts.
    const at = (minutes: number) => new Date(Date.now() - (10 - minutes) * 60_000).toISOString();
    const created = makeEvent({ type: 'order.created', occurred_at: at(0) });
    const orderId = created.order.id;
    const paid = { ...makeEvent({ type: 'payment.succeeded', occurred_at: at(5) }) };
    paid.order = { ...created.order };
    const lateFailure = { ...makeEvent({ occurred_at: at(3) }) };
    lateFailure.order = { ...created.order };

    expect((await svc.post(created)).status).toBe(202);
    expect((await svc.post(paid)).status).toBe(202);
    const late = await svc.post(lateFailure);
    expect(late.status).toBe(202);
    expect(await late.json()).toMatchObject({ outcome: 'order_already_final' });

    const view = await svc.getOrder(orderId);
    expect(view.order).toMatchObject({ status: 'paid' });
    expect(view.recovery).toBeNull();
  });

  it('keeps the newer order details when an older update arrives after a newer one', async () => {
    const newer = makeEvent({ type: 'order.created', occurred_at: '2026-11-25T10:10:00Z' }, { amount: 20000 });
    const older = { ...makeEvent({ type: 'order.created', occurred_at: '2026-11-25T10:00:00Z' }) };
    older.order = { ...newer.order, amount: 10000 };
    await svc.post(newer);
    const response = await svc.post(older);
    expect(await response.json()).toMatchObject({ outcome: 'stale' });
    expect((await svc.getOrder(newer.order.id)).order).toMatchObject({ amount: 20000 });
  });

  it('ends the recovery when the order is paid or cancelled', async () => {
    const failed = makeEvent();
    await svc.post(failed);
    const cancelled = { ...makeEvent({ type: 'order.cancelled' }) };
    cancelled.order = failed.order;
    expect(await (await svc.post(cancelled)).json()).toMatchObject({ outcome: 'order_cancelled' });
    const view = await svc.getOrder(failed.order.id);
    expect(view.order).toMatchObject({ status: 'cancelled' });
    expect(view.recovery).toMatchObject({ state: 'cancelled', ended_reason: 'order_cancelled', next_run_at: null });
  });

  it('starts no recovery for suspected fraud', async () => {
    const event = makeEvent({
      payment: { gateway: 'stripe', method: 'card', failure_code: 'stolen_card' },
    });
    const response = await svc.post(event);
    expect(await response.json()).toMatchObject({ outcome: 'recovery_not_started' });
    expect((await svc.getOrder(event.order.id)).recovery).toBeNull();
  });

  it('starts no recovery for an order with nothing to pay, failed or abandoned', async () => {
    const failed = makeEvent({}, { amount: 0 });
    const response = await svc.post(failed);
    expect(await response.json()).toMatchObject({ outcome: 'recovery_not_started' });
    expect((await svc.getOrder(failed.order.id)).recovery).toBeNull();
    // Created long enough ago to count as abandoned at once: the reconciler's pass starts nothing either.
    const created = makeEvent(
      { type: 'order.created', occurred_at: new Date(Date.now() - 3_600_000).toISOString() },
      { amount: 0 },
    );
    delete (created as { payment?: unknown }).payment;
    expect((await svc.post(created)).status).toBe(202);
    await waitFor(
      async () => {
        const [order] = await rows<{ abandon_check_at: Date | null }>(
          svc.database.db,
          sql`select abandon_check_at from orders where id = ${created.order.id}`,
        );
        return order && order.abandon_check_at === null ? true : undefined;
      },
      { what: "the reconciler's abandonment pass" },
    );
    expect((await svc.getOrder(created.order.id)).recovery).toBeNull();
  });

  it('answers 404 problem for an unknown order', async () => {
    const response = await fetch(`${svc.url}/v1/orders/nope`, {
      headers: { authorization: 'Bearer test-key-0123456789abcdef' },
    });
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
  });

  it('answers /healthz without auth', async () => {
    const response = await fetch(`${svc.url}/healthz`);
    expect(response.status).toBe(200);
  });
});
