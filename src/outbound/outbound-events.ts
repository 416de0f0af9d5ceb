import { sql } from 'drizzle-orm';
import type { Tx } from '../db/tx.js';
import { newId } from '../platform/ids.js';

/** The kinds of event recoup tells the shop about. */
export type OutboundEventType = 'reminder.after_payment';

export interface OutboundEvent {
  type: OutboundEventType;
  orderId: string;
  /** The event's body for the shop: plain JSON, addresses masked. */
  data: Record<string, unknown>;
}

/**
 * Appends events for the shop to the outbox (`outbound_events`), in the caller's transaction, so an
 * event exists exactly when the change it reports committed. Each gets the next `sequence` of its
 * order, in the order given.
 *
 * The caller holds the row lock of every order named: that is what keeps two writers from taking
 * the same sequence number. Rows are numbered in a statement of their own, after the lock, so the
 * highest sequence read is the committed one.
 */
export async function appendOutboundEvents(tx: Tx, events: OutboundEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.execute(
    sql`insert into outbound_events (id, type, order_id, sequence, data)
        select j.id, j.type, j.order_id,
               coalesce((select max(e.sequence) from outbound_events e where e.order_id = j.order_id), 0)
                 + row_number() over (partition by j.order_id order by j.n),
               j.data
        from jsonb_to_recordset(${JSON.stringify(
          events.map((e, n) => ({ n, id: newId('evt'), type: e.type, order_id: e.orderId, data: e.data })),
        )}::jsonb) as j(n integer, id text, type text, order_id text, data jsonb)`,
  );
}
