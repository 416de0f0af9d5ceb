import { sql } from 'drizzle-orm';
import type { Tx } from '../db/tx.js';
import { newId } from '../platform/ids.js';
import type { OutboundEventType } from './event-types.js';

export interface OutboundEvent {
  type: OutboundEventType;
  orderId: string;
  /** The event's body for the shop: plain JSON, addresses masked. The order's ids and amount are added. */
  data: Record<string, unknown>;
}

/**
 * Appends events for the shop to the outbox (`outbound_events`), in the caller's transaction, so an
 * event exists exactly when the change it reports committed. They are numbered (their order's
 * `sequence`, the feed's `position`) once committed, by src/webhooks/sequencer.ts.
 */
export async function appendOutboundEvents(tx: Tx, events: OutboundEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.execute(
    sql`insert into outbound_events (id, type, order_id, customer_id, data)
        select j.id, j.type, j.order_id, o.customer_id,
               jsonb_build_object('order_id', o.id, 'customer_id', o.customer_id, 'amount', o.amount,
                                  'currency', o.currency) || j.data
        from jsonb_to_recordset(${JSON.stringify(
          events.map((e) => ({ id: newId('evt'), type: e.type, order_id: e.orderId, data: e.data })),
        )}::jsonb) as j(id text, type text, order_id text, data jsonb)
        left join orders o on o.id = j.order_id`,
  );
}
