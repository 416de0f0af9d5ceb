import { performance } from 'node:perf_hooks';
import type { Queue } from 'bullmq';
import { sql } from 'drizzle-orm';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Logger } from '../platform/logger.js';

export interface StateMetricsDeps {
  db: Db;
  /** The steps queue (BullMQ): its job counts by state. */
  queue: Pick<Queue, 'name' | 'getJobCounts'>;
  clock: Clock;
  logger: Logger;
  /** A pending order this old with no recovery is stuck. */
  stuckOrderAfterMs: number;
  /**
   * Scrapes within this long of the last reuse its numbers, so several Prometheus servers (or a
   * scrape storm) cost one round of queries. Default 5 s.
   */
  minIntervalMs?: number;
  /** Bound on each query of a scrape; a slow database must not pile up scrapes. Default 5 s. */
  statementTimeoutMs?: number;
}

/** Job states worth watching; completed jobs are removed at once (stepJobDefaults). */
const jobStates = ['waiting', 'prioritized', 'delayed', 'active', 'failed', 'paused', 'waiting-children'] as const;

interface DbState {
  messages: Array<{ channel: string; status: string; count: number }>;
  circuits: Array<{ gateway: string; state: string }>;
  recovered: Array<{ currency: string; attribution: string; amount: number }>;
  stuckOrders: number;
}

interface Snapshot {
  queue: Record<string, number> | undefined;
  db: DbState | undefined;
}

/**
 * Gauges of state shared by every process (Redis, Postgres), read on scrape. Registered in
 * processes with the HTTP role only: with several server replicas, aggregate them with `max`,
 * not `sum`, since every replica reports the same numbers.
 *
 * Cost per scrape (at most one round per `minIntervalMs`): one BullMQ getJobCounts, and four
 * grouped queries in one read-only transaction. `messages` and `orders` have no index that
 * bounds these counts, so they are full scans of two tables that only grow; the statement
 * timeout caps them, and an index on messages (channel, status) would make the first an
 * index-only scan once the table is large.
 */
export function registerStateMetrics(registry: Registry, deps: StateMetricsDeps): void {
  const snapshot = snapshotLoader(deps);
  const registers = [registry];

  const sourceUp = new Gauge({
    name: 'recoup_metrics_source_up',
    help: 'Whether the last scrape could read this source (1) or not (0): stale or missing state gauges otherwise.',
    labelNames: ['source'],
    registers,
    async collect() {
      const { queue, db } = await snapshot();
      sourceUp.set({ source: 'redis' }, queue ? 1 : 0);
      sourceUp.set({ source: 'postgres' }, db ? 1 : 0);
    },
  });

  const jobs = new Gauge({
    name: 'recoup_queue_jobs',
    help: 'Jobs in the queue by state (waiting, prioritized, delayed, active, failed, paused, waiting-children).',
    labelNames: ['queue', 'state'],
    registers,
    async collect() {
      jobs.reset();
      const { queue } = await snapshot();
      if (!queue) return;
      for (const state of jobStates) jobs.set({ queue: deps.queue.name, state }, queue[state] ?? 0);
    },
  });

  const depth = new Gauge({
    name: 'recoup_queue_depth',
    help: 'Jobs ready to run and not yet picked up (waiting + prioritized): the backlog. Delayed jobs are future wake-ups.',
    labelNames: ['queue'],
    registers,
    async collect() {
      depth.reset();
      const { queue } = await snapshot();
      if (!queue) return;
      depth.set({ queue: deps.queue.name }, (queue.waiting ?? 0) + (queue.prioritized ?? 0));
    },
  });

  const messages = new Gauge({
    name: 'recoup_messages',
    help: 'Messages by channel and current status (scheduled, sending, sent, delivered, failed, skipped, suppressed, unknown).',
    labelNames: ['channel', 'status'],
    registers,
    async collect() {
      messages.reset();
      for (const row of (await snapshot()).db?.messages ?? []) {
        messages.set({ channel: row.channel, status: row.status }, row.count);
      }
    },
  });

  const circuits = new Gauge({
    name: 'recoup_gateway_circuit_open',
    help: 'Payment gateway circuit: 1 while open (reminders to that gateway are held), 0 when closed. Gateways that never tripped have no row.',
    labelNames: ['gateway'],
    registers,
    async collect() {
      circuits.reset();
      for (const row of (await snapshot()).db?.circuits ?? []) {
        circuits.set({ gateway: row.gateway }, row.state === 'closed' ? 0 : 1);
      }
    },
  });

  const recovered = new Counter({
    name: 'recoup_recovered_amount_minor_total',
    help:
      'Money received for orders after a reminder, in minor units (cents, fen) per currency: payments ' +
      'attributed clicked or influenced, duplicates excluded. Gross of refunds. Read from the ledger on scrape.',
    labelNames: ['currency', 'attribution'],
    registers,
    async collect() {
      const state = (await snapshot()).db;
      // Without Postgres, keep the last values: a counter that dropped to nothing would read as a reset.
      if (!state) return;
      recovered.reset();
      for (const row of state.recovered) {
        recovered.inc({ currency: row.currency, attribution: row.attribution }, row.amount);
      }
    },
  });

  const stuck = new Gauge({
    name: 'recoup_stuck_orders',
    help: 'Pending orders older than STUCK_ORDER_AFTER with no recovery (missing shop events, no matching cadence).',
    registers,
    async collect() {
      stuck.reset();
      const state = (await snapshot()).db;
      if (state) stuck.set(state.stuckOrders);
    },
  });
}

/** Single-flight, briefly cached reads: every gauge of one scrape shares one round of queries. */
function snapshotLoader(deps: StateMetricsDeps): () => Promise<Snapshot> {
  const minIntervalMs = deps.minIntervalMs ?? 5_000;
  let inFlight: Promise<Snapshot> | undefined;
  let last: { at: number; snapshot: Snapshot } | undefined;
  return () => {
    if (last && performance.now() - last.at < minIntervalMs) return Promise.resolve(last.snapshot);
    inFlight ??= load(deps).then((snapshot) => {
      last = { at: performance.now(), snapshot };
      inFlight = undefined;
      return snapshot;
    });
    return inFlight;
  };
}

async function load(deps: StateMetricsDeps): Promise<Snapshot> {
  const [queue, db] = await Promise.all([
    deps.queue.getJobCounts(...jobStates).catch((err: unknown) => {
      deps.logger.warn({ err }, 'metrics: could not read queue job counts');
      return undefined;
    }),
    readDbState(deps).catch((err: unknown) => {
      deps.logger.warn({ err }, 'metrics: could not read state from Postgres');
      return undefined;
    }),
  ]);
  return { queue, db };
}

async function readDbState(deps: StateMetricsDeps): Promise<DbState> {
  const timeoutMs = Math.max(1, Math.floor(deps.statementTimeoutMs ?? 5_000));
  const stuckBefore = new Date(deps.clock.now().getTime() - deps.stuckOrderAfterMs);
  return deps.db.transaction(async (tx) => {
    await tx.execute(sql`set transaction read only`);
    await tx.execute(sql.raw(`set local statement_timeout = ${timeoutMs}`));
    const messages = await rows<{ channel: string; status: string; count: string }>(
      tx,
      sql`select channel, status, count(*)::text as count from messages group by channel, status`,
    );
    const circuits = await rows<{ gateway: string; state: string }>(
      tx,
      sql`select gateway, state from gateway_circuits`,
    );
    const recovered = await rows<{ currency: string; attribution: string; amount: string }>(
      tx,
      sql`select currency, attribution, sum(amount)::text as amount from payments
          where not duplicate and attribution in ('clicked', 'influenced')
          group by currency, attribution`,
    );
    const [stuck] = await rows<{ count: string }>(
      tx,
      sql`select count(*)::text as count from orders o
          where o.status = 'pending' and o.created_at < ${stuckBefore}
            and not exists (select 1 from recoveries r where r.order_id = o.id)`,
    );
    return {
      messages: messages.map((m) => ({ channel: m.channel, status: m.status, count: Number(m.count) })),
      circuits,
      recovered: recovered.map((r) => ({ currency: r.currency, attribution: r.attribution, amount: Number(r.amount) })),
      stuckOrders: Number(stuck?.count ?? 0),
    };
  });
}
