import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseClock } from '../../src/db/database-clock.js';
import { rows } from '../../src/db/rows.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

describe("Postgres's clock, kept by each process", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database?.drop());

  it("reads Postgres's time through a host clock that is 10 s behind", async () => {
    const behind = { now: () => new Date(Date.now() - 10_000) };
    const clock = new DatabaseClock(behind, database.db);
    expect(Math.abs(clock.now().getTime() - Date.now())).toBeGreaterThan(9_000);
    await clock.sync();
    const [row] = await rows<{ now: Date }>(database.db, sql`select clock_timestamp() as now`);
    expect(Math.abs(clock.now().getTime() - new Date(row!.now).getTime())).toBeLessThan(500);
    expect(clock.offsetMs).toBeGreaterThan(9_500);
  });
});

// Two processes on one database: the server on a good clock, the worker on a drifted one.
describe('a worker whose host clock drifted', () => {
  let server: TestService | undefined;
  let worker: TestService | undefined;
  afterEach(async () => {
    await worker?.close();
    await server?.close();
    worker = server = undefined;
  });

  async function start(cadence: string, workerClockOffsetMs: number) {
    server = await startTestService({ cadences: cadence, roles: { http: true, worker: false } });
    worker = await startTestService({
      database: server.database,
      prefix: server.prefix,
      roles: { http: false, worker: true },
      env: { FAULT_INJECTION: `clock_offset_ms=${workerClockOffsetMs}` },
    });
    return server;
  }

  const messageStatus = async (svc: TestService, orderId: string) => {
    const view = await svc.getOrder(orderId);
    const status = view.messages[0]?.status;
    return status === 'sent' || status === 'skipped' ? { status, recovery: view.recovery?.state } : undefined;
  };

  it('sends a step when it is due, not when its own clock says so (20 s behind)', async () => {
    const svc = await start(
      `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: sms, template: last-call }
`,
      -20_000,
    );
    const failed = makeEvent();
    const posted = Date.now();
    expect((await svc.post(failed)).status).toBe(202);
    // On its own clock the step is due 20 s from now: it would wait for that.
    const outcome = await waitFor(() => messageStatus(svc, failed.order.id), { what: 'the step', timeoutMs: 15_000 });
    expect(outcome.status).toBe('sent');
    expect(Date.now() - posted).toBeLessThan(15_000);
  }, 40_000);

  it('does not expire a recovery early (20 s ahead)', async () => {
    const svc = await start(
      `
name: default
expire_after: 20s
steps:
  - { after: 2s, channel: sms, template: nudge }
`,
      20_000,
    );
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    // On its own clock the recovery expired before its step was due: nothing would be sent.
    const outcome = await waitFor(() => messageStatus(svc, failed.order.id), { what: 'the step', timeoutMs: 15_000 });
    expect(outcome).toEqual({ status: 'sent', recovery: 'active' });
  }, 40_000);
});
