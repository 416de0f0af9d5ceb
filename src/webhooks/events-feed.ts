import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';
import { numberEvents } from './sequencer.js';

export interface FeedEvent {
  id: string;
  type: string;
  timestamp: string;
  order_id: string | null;
  customer_id: string | null;
  sequence: number | null;
  data: Record<string, unknown>;
}

export interface FeedPage {
  events: FeedEvent[];
  /** Pass as `after` to read on; the same cursor when nothing newer was there. */
  next_cursor: string;
  has_more: boolean;
}

/**
 * The events feed: every event for the shop, numbered once committed, after `after` (a cursor
 * from a previous page; none: from the start). A cursor never skips an event: nothing is numbered
 * below one a reader has seen (src/webhooks/sequencer.ts). Numbers what committed first, so a
 * reader is as current as Postgres, and wakes the deliveries that numbering created.
 */
export async function readFeed(
  db: Db,
  after: number,
  limit: number,
  wake: (wakeups: DeliveryWakeup[]) => Promise<void>,
): Promise<FeedPage> {
  // The deliveries of the events it numbered are this reader's to wake.
  await wake((await numberEvents(db)).wakeups);
  const found = await rows<FeedEvent & { position: string; created_at: Date }>(
    db,
    sql`select id, type, order_id, customer_id, sequence, data, position, created_at
        from outbound_events
        where position > ${after}
        order by position
        limit ${limit + 1}`,
  );
  const page = found.slice(0, limit);
  const last = page[page.length - 1];
  return {
    events: page.map((e) => ({
      id: e.id,
      type: e.type,
      timestamp: e.created_at.toISOString(),
      order_id: e.order_id,
      customer_id: e.customer_id,
      sequence: e.sequence,
      data: e.data,
    })),
    next_cursor: String(last ? Number(last.position) : after),
    has_more: found.length > limit,
  };
}

/** What the shop was told about an order, for the order's timeline: each event and its deliveries. */
export async function orderOutboundEvents(db: Db, orderId: string) {
  return rows<{
    id: string;
    type: string;
    sequence: number | null;
    created_at: Date;
    deliveries: Array<{
      id: string;
      endpoint_id: string;
      status: string;
      attempts: number;
      last_status: number | null;
    }>;
  }>(
    db,
    sql`select e.id, e.type, e.sequence, e.created_at,
               coalesce((select json_agg(json_build_object('id', d.id, 'endpoint_id', d.endpoint_id, 'status', d.status,
                                                           'attempts', d.attempts, 'last_status', d.last_status)
                                         order by d.created_at)
                         from webhook_deliveries d where d.event_id = e.id), '[]') as deliveries
        from outbound_events e
        where e.order_id = ${orderId}
        order by e.sequence nulls last, e.created_at`,
  );
}
