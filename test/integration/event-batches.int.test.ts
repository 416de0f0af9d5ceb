import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { EventApplier, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent, type EventInput } from '../../src/domain/event-schema.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const cadenceYaml = `
name: default
expire_after: 1h
steps:
  - { after: 1m, channel: sms, template: nudge }
`;

/** Events that arrive together are applied in one statement: each must still get its own answer. */
describe('EventApplier: events received together, applied together', () => {
  let database: TestDatabase;
  let deps: ApplyEventDeps;
  const now = new Date('2026-11-25T12:00:00Z');

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadenceYaml, { templates: renderer }));
    deps = { db: database.db, cadences: new CadenceBook(database.db), abandonAfterMs: 1_800_000, clickWindowMs: 1 };
  });
  afterAll(async () => {
    await database.drop();
  });

  async function count(table: 'events' | 'recoveries' | 'orders', orderIds: string[]): Promise<number> {
    const column = table === 'orders' ? sql.raw('id') : sql.raw('order_id');
    const [row] = await rows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from ${sql.raw(table)} where ${column} in ${orderIds}`,
    );
    return row?.n ?? 0;
  }

  it('gives each event of a batch its own outcome: new recoveries, a repeated event id, a customer update', async () => {
    const applier = new EventApplier(deps, { maxBatch: 32, maxRunning: 1 });
    const failures = Array.from({ length: 8 }, () => parseEvent(makeEvent({ occurred_at: now.toISOString() })));
    const repeated = failures[0]!;
    const customer = failures[1]!.order!.customer;
    const update = parseEvent({
      id: `evt_update_${Date.now()}`,
      type: 'customer.updated',
      occurred_at: new Date(now.getTime() + 1_000).toISOString(),
      customer: { ...customer, name: 'Han Meimei' },
    });
    const results = await Promise.all(
      [...failures, repeated, repeated, update].map((event) => applier.apply(event, now)),
    );

    expect(results.slice(0, 8).map((r) => (r.status === 'accepted' ? r.outcome : r.status))).toEqual(
      Array(8).fill('recovery_started'),
    );
    expect(results.slice(8, 10)).toEqual([{ status: 'duplicate' }, { status: 'duplicate' }]);
    expect(results[10]).toMatchObject({ status: 'accepted', outcome: 'customer_updated' });
    for (const result of results.slice(0, 8)) {
      expect(result.status === 'accepted' && result.wakeups).toHaveLength(1);
    }
    const orderIds = failures.map((e) => e.order!.id);
    expect(await count('recoveries', orderIds)).toBe(8);
    expect(await count('events', orderIds)).toBe(8);
    const [updated] = await rows<{ name: string }>(
      database.db,
      sql`select name from customers where id = ${customer.id}`,
    );
    expect(updated?.name).toBe('Han Meimei');
  });

  it('does not let one event that Postgres refuses fail the others of its batch', async () => {
    const applier = new EventApplier(deps, { maxBatch: 32, maxRunning: 1 });
    const good = Array.from({ length: 4 }, () => parseEvent(makeEvent({ occurred_at: now.toISOString() })));
    // Past validation, an event Postgres cannot store (no time): the batch's statement fails as a whole.
    const bad = { ...parseEvent(makeEvent({ occurred_at: now.toISOString() })), occurred_at: 'never' } as EventInput;
    const settled = await Promise.allSettled([good[0]!, bad, ...good.slice(1)].map((e) => applier.apply(e, now)));

    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    for (const s of settled) {
      if (s.status === 'fulfilled') expect(s.value).toMatchObject({ status: 'accepted', outcome: 'recovery_started' });
    }
    expect(
      await count(
        'recoveries',
        good.map((e) => e.order!.id),
      ),
    ).toBe(4);
    expect(await count('orders', [bad.order!.id])).toBe(0);
  });
});
