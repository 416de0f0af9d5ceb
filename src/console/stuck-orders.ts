import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';

/**
 * Stuck orders: pending longer than a threshold with no recovery at all, usually because the
 * shop's failure event never arrived or no cadence matched. Same definition as the
 * `recoup_stuck_orders` gauge (src/ops/state-metrics.ts); this lists them.
 */
export interface StuckOrder {
  id: string;
  customerId: string;
  amount: number;
  currency: string;
  createdAt: Date;
  lastEventType: string | null;
  lastEventOutcome: string | null;
  lastFailureCategory: string | null;
  requestedCadence: string | null;
}

export interface StuckOrders {
  total: number;
  /** Oldest first, at most `limit`. */
  orders: StuckOrder[];
}

export async function findStuckOrders(
  db: DbOrTx,
  options: { now: Date; olderThanMs: number; limit?: number },
): Promise<StuckOrders> {
  const before = new Date(options.now.getTime() - options.olderThanMs);
  const stuck = sql`o.status = 'pending' and o.created_at < ${before}
                    and not exists (select 1 from recoveries r where r.order_id = o.id)`;
  const [count] = await rows<{ total: number }>(db, sql`select count(*)::int as total from orders o where ${stuck}`);
  const found = await rows<{
    id: string;
    customer_id: string;
    amount: string;
    currency: string;
    created_at: Date;
    last_event_type: string | null;
    last_event_outcome: string | null;
    last_failure_category: string | null;
    requested_cadence: string | null;
  }>(
    db,
    sql`select o.id, o.customer_id, o.amount::text as amount, o.currency, o.created_at, o.last_failure_category,
               o.requested_cadence, e.type as last_event_type, e.outcome as last_event_outcome
        from orders o
        left join lateral (select type, outcome from events where order_id = o.id
                           order by occurred_at desc, received_at desc limit 1) e on true
        where ${stuck}
        order by o.created_at, o.id
        limit ${options.limit ?? 100}`,
  );
  return {
    total: count?.total ?? 0,
    orders: found.map((o) => ({
      id: o.id,
      customerId: o.customer_id,
      amount: Number(o.amount),
      currency: o.currency,
      createdAt: o.created_at,
      lastEventType: o.last_event_type,
      lastEventOutcome: o.last_event_outcome,
      lastFailureCategory: o.last_failure_category,
      requestedCadence: o.requested_cadence,
    })),
  };
}
