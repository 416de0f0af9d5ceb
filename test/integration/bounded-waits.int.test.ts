import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { openDatabase } from '../../src/db/client.js';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';

/**
 * Every wait on Postgres is bounded, so one frozen or cut-off process cannot stall the others.
 * Without the bounds each of these requests waits as long as the lock or the pool is held: here,
 * for ever. The bound below is a correctness limit, not a speed target.
 */
const answerWithinMs = 10_000;

async function postEvent(svc: TestService, event: unknown): Promise<Response> {
  try {
    return await fetch(`${svc.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${testApiKey}` },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(answerWithinMs),
    });
  } catch (err) {
    throw new Error(`no answer within ${answerWithinMs} ms`, { cause: err });
  }
}

/** A session that holds a share lock on the order while it runs a long statement: busy, not idle. */
async function busyHolder(url: string, orderId: string): Promise<{ pid: number; end(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  // Its end is a terminated session: expected, not a failure of the test.
  client.on('error', () => undefined);
  await client.connect();
  await client.query('begin');
  const { rows: locked } = await client.query<{ pid: number }>(
    'select pg_backend_pid() as pid from orders where id = $1 for share',
    [orderId],
  );
  const pid = locked[0]?.pid;
  if (pid === undefined) throw new Error(`no order ${orderId}`);
  const running = client.query('select pg_sleep(60)').catch(() => undefined);
  return {
    pid,
    async end() {
      const killer = new pg.Client({ connectionString: url });
      await killer.connect();
      await killer.query('select pg_terminate_backend($1)', [pid]);
      await killer.end();
      await running;
      await client.end().catch(() => undefined);
    },
  };
}

describe('bounded waits on Postgres', () => {
  let svc: TestService | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await svc?.close();
    svc = undefined;
  });

  it("ends a frozen process's transaction, so the payment of the order it locked is answered", async () => {
    // A 1.8 s send lease (PROVIDER_TIMEOUT + half the job lock + 1 s), so a 2 s idle timeout is allowed.
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: { DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '2s', PROVIDER_TIMEOUT: '300ms', JOB_LOCK_DURATION: '1s' },
    });
    const created = makeEvent({ type: 'order.created' });
    expect((await postEvent(svc, created)).status).toBe(202);

    // Another recoup process with the same settings, frozen (SIGSTOP, a paused VM) inside its send
    // transaction: a share lock on the order, then nothing.
    const lost: Error[] = [];
    const frozen = await openDatabase({
      url: svc.database.url,
      dataDir: '.data/test',
      poolSize: 1,
      limits: svc.config.databaseLimits,
      onError: (err) => lost.push(err),
    });
    let resume: () => void = () => undefined;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    cleanups.push(async () => {
      resume();
      await frozen.close();
    });
    let pid: number | undefined;
    const sending = frozen.db.transaction(async (tx) => {
      const [me] = await rows<{ pid: number }>(
        tx,
        sql`select pg_backend_pid() as pid from orders where id = ${created.order.id} for share`,
      );
      pid = me?.pid;
      await resumed;
      await tx.execute(sql`select 1`);
    });
    sending.catch(() => undefined);
    const frozenPid = await waitFor(() => pid, { what: 'the share lock' });

    const paid = await postEvent(svc, makeEvent({ type: 'payment.succeeded' }, created.order));
    expect(paid.status).toBe(202);
    expect(await svc.getOrder(created.order.id)).toMatchObject({ order: { status: 'paid' } });
    // The server ended the frozen session, and its locks with it.
    const alive = await rows(svc.database.db, sql`select 1 from pg_stat_activity where pid = ${frozenPid}`);
    expect(alive).toHaveLength(0);

    // Thawed, the process finds its transaction gone, and carries on with a new connection.
    resume();
    await expect(sending).rejects.toThrow();
    expect(lost[0]?.message).toMatch(/idle-in-transaction timeout/);
    expect(await rows(frozen.db, sql`select 1 as one`)).toEqual([{ one: 1 }]);
  });

  it('answers a payment whose order stays locked past the retries with a retryable 503', async () => {
    svc = await startTestService({ roles: { http: true, worker: false }, env: { DATABASE_LOCK_TIMEOUT: '300ms' } });
    const created = makeEvent({ type: 'order.created' });
    expect((await postEvent(svc, created)).status).toBe(202);
    const holder = await busyHolder(svc.database.url, created.order.id);
    cleanups.push(() => holder.end());

    const payment = makeEvent({ type: 'payment.succeeded' }, created.order);
    const refused = await postEvent(svc, payment);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await refused.json()).toMatchObject({ type: 'https://recoup.dev/problems/unavailable', status: 503 });
    expect(await svc.getOrder(created.order.id)).toMatchObject({ order: { status: 'pending' } });

    // Nothing of it was kept: the shop's retry, once the lock is gone, records the payment.
    await holder.end();
    expect((await postEvent(svc, payment)).status).toBe(202);
    expect(await svc.getOrder(created.order.id)).toMatchObject({ order: { status: 'paid' } });
  });

  it("answers an unrelated order's event while payments waiting on a lock hold every pooled connection", async () => {
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: { DATABASE_POOL_SIZE: '2', DATABASE_CONNECT_TIMEOUT: '500ms' },
    });
    const locked = makeEvent({ type: 'order.created' });
    expect((await postEvent(svc, locked)).status).toBe(202);
    const holder = await busyHolder(svc.database.url, locked.order.id);
    cleanups.push(() => holder.end());

    // The shop's payment and its retry, each on one of the two connections, waiting for the lock.
    const payments = [1, 2].map(() => postEvent(svc!, makeEvent({ type: 'payment.succeeded' }, locked.order)));
    const database = svc.database;
    await waitFor(
      async () => {
        const [waiting] = await rows<{ n: number }>(
          database.db,
          sql`select count(*)::int as n from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'`,
        );
        return waiting?.n === 2 ? true : undefined;
      },
      { what: 'both payments to wait for the lock' },
    );

    const unrelated = makeEvent({ type: 'order.created' });
    const refused = await postEvent(svc, unrelated);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ type: 'https://recoup.dev/problems/unavailable', status: 503 });

    await holder.end();
    for (const paid of await Promise.all(payments)) expect(paid.status).toBe(202);
    expect((await postEvent(svc, unrelated)).status).toBe(202);
  });
});

/** Takes every message at once and remembers where it went. */
class RecordingSmsSender implements SmsSender {
  readonly transport = 'recording';
  readonly accepted: string[] = [];
  async send(message: SmsMessage) {
    this.accepted.push(message.to);
    return { providerId: `SM${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}

describe('a sender stalled inside its send transaction', () => {
  let svc: TestService | undefined;
  let thaw: () => void = () => undefined;
  afterEach(async () => {
    thaw();
    await svc?.close();
    svc = undefined;
  });

  it('loses its session to the idle timeout, and its worker carries on with the next order', async () => {
    const sender = new RecordingSmsSender();
    const thawed = new Promise<void>((resolve) => (thaw = resolve));
    let stalled = false;
    svc = await startTestService({
      cadences: `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
`,
      env: { DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '2s', PROVIDER_TIMEOUT: '300ms', JOB_LOCK_DURATION: '1s' },
      overrides: {
        sms: sender,
        // The provider answered; the worker then stops before recording it, its transaction open.
        faultPoint: async (point) => {
          if (point !== 'after_provider_answer' || stalled) return;
          stalled = true;
          await thawed;
        },
      },
    });
    const first = makeEvent({}, { customer: { ...makeEvent().order.customer, phone: '+8613800138001' } });
    expect((await svc.post(first)).status).toBe(202);
    await waitFor(() => (stalled ? true : undefined), { what: 'the sender to stall' });
    const database = svc.database;
    await waitFor(
      async () => {
        const [idle] = await rows<{ n: number }>(
          database.db,
          sql`select count(*)::int as n from pg_stat_activity
              where datname = current_database() and state like 'idle in transaction%'`,
        );
        return idle?.n === 0 ? true : undefined;
      },
      { what: "the server to end the stalled sender's session", timeoutMs: answerWithinMs },
    );
    thaw();

    const second = makeEvent({}, { customer: { ...makeEvent().order.customer, phone: '+8613800138002' } });
    expect((await svc.post(second)).status).toBe(202);
    await waitFor(() => (sender.accepted.includes('+8613800138002') ? true : undefined), {
      what: "the next order's reminder",
    });
  });
});
