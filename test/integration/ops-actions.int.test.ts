import { sql } from 'drizzle-orm';
import { numberEvents } from '../../src/webhooks/sequencer.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveCadenceVersion } from '../../src/cadences/cadence-versions.js';
import { validateCadence } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { lookupRetryToken } from '../../src/retry-links/retry-token.js';
import { restartRecovery, stopRecovery } from '../../src/recoveries/ops-actions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// Stop and restart against real Postgres, with rows laid out as dispatch leaves them: step 0 sent
// (with a retry link), step 1 deferred by quiet hours (scheduled), the recovery waiting for it.

const start = new Date('2026-11-25T10:00:00Z');
const minutes = (n: number) => new Date(start.getTime() + n * 60_000);
const actor = 'key:key_ops';

let database: TestDatabase;
let n = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  await saveCadenceVersion(
    database.db,
    validateCadence({
      name: 'ops-test',
      match: { failure_categories: ['any'], currencies: ['any'] },
      expire_after: '24h',
      steps: [
        { after: '15m', channel: 'sms', template: 'nudge' },
        { after: '2h', channel: 'email', template: 'alternative-methods' },
        { after: '6h', channel: 'sms', template: 'last-call' },
      ],
    }),
    { source: null, activate: true },
    { actor: 'test', at: start },
  );
});
afterAll(async () => {
  await database.drop();
});

/** An order with a recovery at step 1 (step 0 sent with a link, step 1 deferred); returns ids. */
async function seed(options: { status?: string; forgotten?: boolean } = {}) {
  n += 1;
  const ids = {
    customer: `cus_ops_${n}`,
    order: `ord_ops_${n}`,
    recovery: `rec_ops_${n}`,
    sent: `msg_ops_${n}_0`,
    deferred: `msg_ops_${n}_1`,
    token: `tok${String(n).padStart(19, '0')}`,
  };
  const db = database.db;
  await db.execute(
    sql`insert into customers (id, name, email, phone, timezone, forgotten_at, updated_at)
        values (${ids.customer}, 'Li Lei', 'li@example.com', '+8613800138000', 'Asia/Shanghai',
                ${options.forgotten ? start : null}, ${start})`,
  );
  await db.execute(
    sql`insert into orders (id, customer_id, amount, currency, status, state_at)
        values (${ids.order}, ${ids.customer}, 12900, 'CNY', ${options.status ?? 'pending'}, ${start})`,
  );
  await db.execute(
    sql`insert into recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category, state,
                                step_index, next_run_at, wake_seq, started_at, expires_at)
        values (${ids.recovery}, ${ids.order}, ${ids.customer}, 'ops-test', 1, 'insufficient_funds', 'active',
                1, ${minutes(13 * 60)}, 4, ${start}, ${minutes(24 * 60)})`,
  );
  await db.execute(
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                              link_token, link_expires_at, sent_at, planned_at)
        values (${ids.sent}, ${ids.recovery}, ${ids.order}, ${ids.customer}, 0, 'sms', 'nudge', 'sent',
                '+8613800138000', ${ids.token}, ${minutes(3 * 24 * 60)}, ${minutes(15)}, ${minutes(15)})`,
  );
  await db.execute(
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, reason,
                              to_address, planned_at)
        values (${ids.deferred}, ${ids.recovery}, ${ids.order}, ${ids.customer}, 1, 'email', 'alternative-methods',
                'scheduled', 'quiet_hours', 'li@example.com', ${minutes(13 * 60)})`,
  );
  return ids;
}

async function recoveryOf(id: string) {
  const [row] = await rows<{
    state: string;
    ended_reason: string | null;
    ended_at: Date | null;
    next_run_at: Date | null;
    wake_seq: number;
    step_index: number;
  }>(database.db, sql`select * from recoveries where id = ${id}`);
  if (!row) throw new Error(`no recovery ${id}`);
  return row;
}

async function messageOf(id: string) {
  const [row] = await rows<{ status: string; reason: string | null; link_revoked_at: Date | null }>(
    database.db,
    sql`select status, reason, link_revoked_at from messages where id = ${id}`,
  );
  return row;
}

async function auditOf(orderId: string) {
  return rows<{ action: string; actor: string; before: Record<string, unknown>; after: Record<string, unknown> }>(
    database.db,
    sql`select action, actor, before, after from audit_log where subject = ${`order:${orderId}`} order by at, id`,
  );
}

async function expectCode(work: Promise<unknown>, code: string, message?: RegExp) {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRecoupError(err), String(err)).toBe(true);
  if (!isRecoupError(err)) return;
  expect(err.code).toBe(code);
  if (message) expect(err.message).toMatch(message);
}

describe('stopping a recovery', () => {
  it('ends it as stopped_by_ops, skips the deferred step, revokes its links and audits it', async () => {
    const ids = await seed();
    const at = minutes(60);
    const result = await stopRecovery(database.db, ids.order, { actor, at });

    expect(result).toEqual({
      recoveryId: ids.recovery,
      pendingWakeup: { recoveryId: ids.recovery, wakeSeq: 4 },
      revokedLinks: 1,
    });
    const recovery = await recoveryOf(ids.recovery);
    expect(recovery).toMatchObject({
      state: 'stopped',
      ended_reason: 'stopped_by_ops',
      next_run_at: null,
      wake_seq: 5,
    });
    expect(recovery.ended_at?.toISOString()).toBe(at.toISOString());
    expect(await messageOf(ids.deferred)).toMatchObject({ status: 'skipped', reason: 'stopped_by_ops' });
    // The sent message keeps its record; only its link stops working.
    expect(await messageOf(ids.sent)).toMatchObject({ status: 'sent', reason: null });
    expect(await lookupRetryToken(database.db, ids.token, at)).toMatchObject({ valid: false, reason: 'revoked' });

    const entries = await auditOf(ids.order);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      action: 'recovery.stopped',
      actor,
      before: { recovery_id: ids.recovery, state: 'active', step: 1 },
      after: { state: 'stopped', ended_reason: 'stopped_by_ops', revoked_links: 1 },
    });
  });

  it('refuses a recovery that is not active, and unknown orders', async () => {
    const ids = await seed();
    await stopRecovery(database.db, ids.order, { actor, at: minutes(30) });
    await expectCode(stopRecovery(database.db, ids.order, { actor, at: minutes(31) }), 'conflict', /stopped/);
    await expectCode(stopRecovery(database.db, 'ord_nope', { actor, at: minutes(31) }), 'not_found');
    expect(await auditOf(ids.order)).toHaveLength(1);
  });
});

describe('restarting a recovery', () => {
  it('resumes at the current step with a fresh wake-up, the deferred step scheduled again and its links working', async () => {
    const ids = await seed();
    await stopRecovery(database.db, ids.order, { actor, at: minutes(60) });
    // Restarted before step 1 is due (start + 2h): it waits for its time, not now.
    const early = await restartRecovery(database.db, ids.order, { actor, at: minutes(90) });
    expect(early).toEqual({
      recoveryId: ids.recovery,
      step: 1,
      wakeup: { recoveryId: ids.recovery, wakeSeq: 6, runAt: minutes(120) },
      restoredLinks: 1,
    });
    const recovery = await recoveryOf(ids.recovery);
    expect(recovery).toMatchObject({ state: 'active', ended_reason: null, ended_at: null, wake_seq: 6, step_index: 1 });
    expect(recovery.next_run_at?.toISOString()).toBe(minutes(120).toISOString());
    expect(await messageOf(ids.deferred)).toMatchObject({ status: 'scheduled', reason: null });
    expect(await lookupRetryToken(database.db, ids.token, minutes(90))).toMatchObject({ valid: true });

    const entries = await auditOf(ids.order);
    expect(entries.map((e) => e.action)).toEqual(['recovery.stopped', 'recovery.restarted']);
    expect(entries[1]).toMatchObject({
      actor,
      before: { state: 'stopped', ended_reason: 'stopped_by_ops' },
      after: { state: 'active', step: 1, restored_links: 1 },
    });

    // Stopped again and restarted after the step's time: due now.
    await stopRecovery(database.db, ids.order, { actor, at: minutes(200) });
    const late = await restartRecovery(database.db, ids.order, { actor, at: minutes(300) });
    expect(late.wakeup).toEqual({ recoveryId: ids.recovery, wakeSeq: 8, runAt: minutes(300) });

    // The shop is told of each stop and each restart, in order.
    await numberEvents(database.db);
    const told = await rows<{ type: string; data: Record<string, unknown> }>(
      database.db,
      sql`select type, data from outbound_events where order_id = ${ids.order} and type in ('recovery.ended', 'recovery.resumed')
          order by sequence`,
    );
    expect(told.map((e) => [e.type, e.data.state ?? e.data.step])).toEqual([
      ['recovery.ended', 'stopped'],
      ['recovery.resumed', 1],
      ['recovery.ended', 'stopped'],
      ['recovery.resumed', 1],
    ]);
  });

  it('refuses when the order is paid, the recovery active, the customer forgotten or the recovery expired', async () => {
    const active = await seed();
    await expectCode(restartRecovery(database.db, active.order, { actor, at: minutes(5) }), 'conflict', /not stopped/);

    const paid = await seed();
    await stopRecovery(database.db, paid.order, { actor, at: minutes(5) });
    await database.db.execute(sql`update orders set status = 'paid' where id = ${paid.order}`);
    await expectCode(restartRecovery(database.db, paid.order, { actor, at: minutes(6) }), 'conflict', /order is paid/);

    const forgotten = await seed({ forgotten: true });
    await stopRecovery(database.db, forgotten.order, { actor, at: minutes(5) });
    await expectCode(restartRecovery(database.db, forgotten.order, { actor, at: minutes(6) }), 'conflict', /forgotten/);

    const expired = await seed();
    await stopRecovery(database.db, expired.order, { actor, at: minutes(5) });
    await expectCode(
      restartRecovery(database.db, expired.order, { actor, at: minutes(24 * 60) }),
      'conflict',
      /expired/,
    );
    // Nothing changed on a refusal.
    expect((await recoveryOf(expired.recovery)).state).toBe('stopped');
    expect((await auditOf(expired.order)).map((e) => e.action)).toEqual(['recovery.stopped']);
  });

  it('refuses when every step already ran', async () => {
    const ids = await seed();
    await database.db.execute(sql`update recoveries set step_index = 3 where id = ${ids.recovery}`);
    await stopRecovery(database.db, ids.order, { actor, at: minutes(400) });
    await expectCode(restartRecovery(database.db, ids.order, { actor, at: minutes(401) }), 'conflict', /every step/);
  });
});
