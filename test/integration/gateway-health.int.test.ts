import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import {
  circuitStates,
  GatewayHealth,
  type CircuitSettings,
  type CircuitTransition,
  type GatewayHealthCheck,
} from '../../src/circuits/gateway-health.js';
import { FixedClock } from '../../src/platform/clock.js';
import { openDatabase, type Database } from '../../src/db/client.js';
import { rows } from '../../src/db/rows.js';
import { newId } from '../../src/platform/ids.js';
import { createLogger } from '../../src/platform/logger.js';
import { applyEvent } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

// The defaults: 5m window, 10 failures and half the attempts to open, 2m cool-down.
const settings: CircuitSettings = { windowMs: 300_000, minFailures: 10, failureRatio: 0.5, coolDownMs: 120_000 };
const T0 = new Date('2026-11-25T02:00:00Z');

interface CircuitRow {
  gateway: string;
  state: string;
  reason: string | null;
  opened_at: Date | null;
  closed_at: Date | null;
}

/** Every test uses its own gateway name: the evaluator looks at every gateway in the table. */
function uniqueGateway(): string {
  return `gw${randomBytes(4).toString('hex')}`;
}

describe('gateway circuits', () => {
  let database: TestDatabase;
  const clock = new FixedClock(T0);
  const logger = createLogger('silent');

  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.drop();
  });

  function evaluator(extra: Partial<ConstructorParameters<typeof GatewayHealth>[0]> = {}): GatewayHealth {
    return new GatewayHealth({ db: database.db, clock, logger, settings, ...extra });
  }

  /** Transitions of one gateway only (other tests' gateways share the table). */
  async function evaluate(gateway: string, health = evaluator()): Promise<CircuitTransition[]> {
    return (await health.evaluate()).filter((t) => t.gateway === gateway);
  }

  /** `count` attempts at `gateway`, `secondsAgo` before the clock's now. */
  async function attempts(
    gateway: string,
    count: number,
    outcome: { status: 'failed' | 'succeeded' | 'open' | 'cancelled'; category?: string },
    secondsAgo = 10,
    source: 'shop' | 'retry_link' = 'shop',
  ): Promise<void> {
    const at = new Date(clock.now().getTime() - secondsAgo * 1_000);
    for (let i = 0; i < count; i += 1) {
      await database.db.execute(
        sql`insert into payment_attempts (id, order_id, source, gateway, method, status, amount, currency,
                                          failure_category, occurred_at)
            values (${newId('att')}, ${`ord_${randomBytes(6).toString('hex')}`}, ${source}, ${gateway}, 'card', ${outcome.status}, 100, 'CNY',
                    ${outcome.category ?? null}, ${at})`,
      );
    }
  }

  async function circuitOf(gateway: string): Promise<CircuitRow | undefined> {
    const [row] = await rows<CircuitRow>(
      database.db,
      sql`select gateway, state, reason, opened_at, closed_at from gateway_circuits where gateway = ${gateway}`,
    );
    return row;
  }

  describe('opening', () => {
    it('needs the failure threshold: gateway_outage and network failures count, card declines do not', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      await attempts(gateway, 5, { status: 'failed', category: 'gateway_outage' });
      await attempts(gateway, 4, { status: 'failed', category: 'network' }, 20, 'retry_link');
      // Declines are the customers' own: were they counted, 9 + 6 would pass the threshold.
      await attempts(gateway, 3, { status: 'failed', category: 'insufficient_funds' });
      await attempts(gateway, 3, { status: 'failed', category: 'card_data' });
      expect(await evaluate(gateway)).toEqual([]);
      expect(await circuitOf(gateway)).toBeUndefined();

      await attempts(gateway, 1, { status: 'failed', category: 'network' });
      const opened = await evaluate(gateway);
      expect(opened).toEqual([
        { gateway, to: 'open', reason: expect.stringContaining('10 of 16 attempts') as unknown, at: T0 },
      ]);
      expect(await circuitOf(gateway)).toMatchObject({ state: 'open', opened_at: T0, closed_at: null });
    });

    it('needs the failure ratio too: many failures among more successes keep it closed', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      await attempts(gateway, 12, { status: 'failed', category: 'gateway_outage' });
      await attempts(gateway, 12, { status: 'succeeded' });
      await attempts(gateway, 1, { status: 'open' }, 5, 'retry_link');
      // Superseded attempts reached no outcome: they are not attempts.
      await attempts(gateway, 20, { status: 'cancelled' }, 5, 'retry_link');
      expect(await evaluate(gateway)).toEqual([]); // 12 of 25 < 0.5

      await attempts(gateway, 1, { status: 'failed', category: 'gateway_outage' });
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['open']); // 13 of 26
    });

    it('only counts the sliding window', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      await attempts(gateway, 20, { status: 'failed', category: 'gateway_outage' }, 301);
      await attempts(gateway, 9, { status: 'failed', category: 'gateway_outage' }, 299);
      expect(await evaluate(gateway)).toEqual([]);
      expect(await circuitOf(gateway)).toBeUndefined();
    });

    it('counts the failures shops report in payment.failed events, by gateway name in any case', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      const intake = {
        db: database.db,
        cadences: new CadenceBook(database.db),
        abandonAfterMs: 1_800_000,
        clickWindowMs: 86_400_000,
      };
      const codes = ['api_error', 'processing_error', 'ETIMEDOUT', 'econnreset', '503'];
      for (const [i, code] of [...codes, ...codes, 'card_declined', 'expired_card'].entries()) {
        const base = makeEvent({ occurred_at: new Date(T0.getTime() - 60_000 + i).toISOString() });
        const event = parseEvent({
          ...base,
          payment: { gateway: i % 2 === 0 ? gateway.toUpperCase() : gateway, method: 'card', failure_code: code },
        });
        await applyEvent(intake, event, clock.now());
      }
      const [counted] = await rows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from payment_attempts
            where lower(gateway) = ${gateway} and failure_category in ('gateway_outage', 'network')`,
      );
      expect(counted?.n).toBe(10);
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['open']);
      expect((await circuitOf(gateway))?.reason).toContain('10 of 12 attempts');
    });
  });

  describe('closing', () => {
    async function openCircuit(gateway: string): Promise<void> {
      clock.set(T0);
      await attempts(gateway, 10, { status: 'failed', category: 'gateway_outage' });
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['open']);
    }

    it('closes once the cool-down passed without failures, and old failures do not reopen it', async () => {
      const gateway = uniqueGateway();
      await openCircuit(gateway);

      clock.set(new Date(T0.getTime() + 119_000));
      expect(await evaluate(gateway)).toEqual([]); // open for less than the cool-down
      clock.set(new Date(T0.getTime() + 120_000));
      const closed = await evaluate(gateway);
      expect(closed).toEqual([
        { gateway, to: 'closed', reason: expect.stringMatching(/^recovered/) as unknown, at: clock.now() },
      ]);
      expect(await circuitOf(gateway)).toMatchObject({ state: 'closed', opened_at: T0, closed_at: clock.now() });

      // The ten failures that opened it are still inside the 5m window.
      clock.set(new Date(T0.getTime() + 150_000));
      expect(await evaluate(gateway)).toEqual([]);
      // New failures after the close open it again.
      await attempts(gateway, 10, { status: 'failed', category: 'network' }, 5);
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['open']);
      expect(await circuitOf(gateway)).toMatchObject({ state: 'open', opened_at: clock.now() });
    });

    it('stays open while failures go on, and closes after they stop', async () => {
      const gateway = uniqueGateway();
      await openCircuit(gateway);
      for (const minute of [1, 2, 3]) {
        clock.set(new Date(T0.getTime() + minute * 60_000));
        await attempts(gateway, 1, { status: 'failed', category: 'gateway_outage' }, 1);
        expect(await evaluate(gateway)).toEqual([]);
      }
      clock.set(new Date(T0.getTime() + 4 * 60_000));
      expect(await evaluate(gateway)).toEqual([]); // last failure 61s ago
      clock.set(new Date(T0.getTime() + 5 * 60_000));
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['closed']);
    });

    it('treats the odd failure among successes as clean', async () => {
      const gateway = uniqueGateway();
      await openCircuit(gateway);
      clock.set(new Date(T0.getTime() + 180_000));
      await attempts(gateway, 2, { status: 'failed', category: 'network' }, 30);
      await attempts(gateway, 8, { status: 'succeeded' }, 20);
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['closed']);
    });
  });

  describe('health checks', () => {
    it('a failing check opens the circuit, and its recovery closes it without waiting for the cool-down', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      let healthy = false;
      const checks: Record<string, GatewayHealthCheck> = {
        [gateway]: async () => (healthy ? { ok: true } : { ok: false, detail: 'status page says major outage' }),
      };
      const health = evaluator({ healthChecks: checks });
      expect(await evaluate(gateway, health)).toEqual([
        { gateway, to: 'open', reason: 'health_check_failed: status page says major outage', at: T0 },
      ]);
      clock.set(new Date(T0.getTime() + 30_000));
      expect(await evaluate(gateway, health)).toEqual([]);
      healthy = true;
      expect(await evaluate(gateway, health)).toEqual([
        { gateway, to: 'closed', reason: 'health_check_ok', at: clock.now() },
      ]);
    });

    it('a check that throws or never answers counts as failing; a passing check does not close a failure-rate circuit early', async () => {
      clock.set(T0);
      const throwing = uniqueGateway();
      const silent = uniqueGateway();
      const failing = uniqueGateway();
      await attempts(failing, 10, { status: 'failed', category: 'gateway_outage' }, 100);
      const health = evaluator({
        healthChecks: {
          [throwing]: () => Promise.reject(new Error('ECONNREFUSED')),
          [silent]: () => new Promise(() => undefined),
          [failing]: async () => ({ ok: true }),
        },
        healthCheckTimeoutMs: 50,
      });
      const opened = (await health.evaluate()).filter((t) => [throwing, silent, failing].includes(t.gateway));
      expect(opened.map((t) => [t.gateway, t.to, t.reason.split(':')[0]]).sort()).toEqual(
        [
          [throwing, 'open', 'health_check_failed'],
          [silent, 'open', 'health_check_failed'],
          [failing, 'open', 'failure_rate'],
        ].sort(),
      );
      expect((await circuitOf(throwing))?.reason).toBe('health_check_failed: ECONNREFUSED');
      clock.set(new Date(T0.getTime() + 60_000));
      expect(await evaluate(failing, health)).toEqual([]);
    });
  });

  describe('several processes', () => {
    it('concurrent evaluators in two processes make each transition exactly once', async () => {
      // A second pool stands for a second worker process.
      const other: Database = await openDatabase({ url: database.url, dataDir: '.data/test', poolSize: 10 });
      try {
        for (let round = 0; round < 5; round += 1) {
          const gateway = uniqueGateway();
          const start = new Date(T0.getTime() + round * 3_600_000);
          clock.set(start);
          await attempts(gateway, 10, { status: 'failed', category: 'gateway_outage' });
          const evaluators = [database.db, other.db, database.db, other.db, database.db, other.db].map(
            (db) => new GatewayHealth({ db, clock, logger, settings }),
          );
          const run = async () =>
            (await Promise.all(evaluators.map((e) => e.evaluate()))).flat().filter((t) => t.gateway === gateway);

          expect((await run()).map((t) => t.to)).toEqual(['open']);
          expect(await run()).toEqual([]);
          clock.set(new Date(start.getTime() + 120_000));
          expect((await run()).map((t) => t.to)).toEqual(['closed']);
          expect(await run()).toEqual([]);
          expect(await circuitOf(gateway)).toMatchObject({
            state: 'closed',
            opened_at: start,
            closed_at: clock.now(),
          });
        }
      } finally {
        await other.close();
      }
    });

    it('a decision made on a stale read does not apply', async () => {
      clock.set(T0);
      const gateway = uniqueGateway();
      await attempts(gateway, 10, { status: 'failed', category: 'gateway_outage' });
      expect((await evaluate(gateway)).map((t) => t.to)).toEqual(['open']);

      // While this evaluator is between its reads and its write (its health checks run alongside
      // the reads), another process closes the circuit and opens it again.
      const reopenedAt = new Date(T0.getTime() + 100_000);
      const meanwhile = async () => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        await database.db.execute(
          sql`update gateway_circuits set opened_at = ${reopenedAt}, closed_at = ${new Date(T0.getTime() + 90_000)}
              where gateway = ${gateway}`,
        );
        return { ok: true };
      };
      clock.set(new Date(T0.getTime() + 125_000));
      const stale = evaluator({ healthChecks: { [uniqueGateway()]: meanwhile } });
      // By what it read (open since T0, clean for the cool-down) it would close the circuit.
      expect(await evaluate(gateway, stale)).toEqual([]);
      expect(await circuitOf(gateway)).toMatchObject({ state: 'open', opened_at: reopenedAt });
      // The next pass reads the reopened circuit: open for 25s only, so it stays open.
      expect(await evaluate(gateway)).toEqual([]);
    });
  });

  it('circuitStates lists every circuit, and known gateways without one as closed', async () => {
    clock.set(T0);
    const gateway = uniqueGateway();
    await attempts(gateway, 10, { status: 'failed', category: 'network' });
    await evaluate(gateway);
    const never = uniqueGateway();
    const states = await circuitStates(database.db, [never, gateway.toUpperCase()]);
    expect(states.find((s) => s.gateway === gateway)).toMatchObject({
      state: 'open',
      openedAt: T0,
      reason: expect.stringContaining('failure_rate') as unknown,
    });
    expect(states.find((s) => s.gateway === never)).toEqual({
      gateway: never,
      state: 'closed',
      reason: null,
      openedAt: null,
      closedAt: null,
      updatedAt: null,
    });
    expect(states.filter((s) => s.gateway === gateway)).toHaveLength(1);
    expect(states.map((s) => s.gateway)).toEqual([...states.map((s) => s.gateway)].sort());
  });
});
