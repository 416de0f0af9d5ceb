import { sql, type SQL } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';
import { maskAddress } from '../platform/logger.js';
import { appendOutboundEvents } from '../outbound/outbound-events.js';

/**
 * A reminder the provider accepted after its order was paid or cancelled: the one failure the send
 * lease cannot prevent (a provider that accepts a request after recoup gave up on it and after the
 * accept grace, src/recoveries/send-lease.ts), and the one the shop must hear about.
 */
export interface ReminderAfterPayment {
  messageId: string;
  orderId: string;
  channel: Channel;
  /** The provider's acceptance time when it said, else when recoup recorded the message sent. */
  acceptedAt: Date;
  /** When the order was paid, or cancelled (`orderStatus`). */
  closedAt: Date;
  orderStatus: 'paid' | 'cancelled';
}

/** Told of reminders flagged, once the transaction that flagged them committed. */
export type ReminderAfterPaymentObserver = (reminders: ReminderAfterPayment[]) => void;

/**
 * The rule itself: a message accepted at `acceptedAt` came after its order (the row `order`) was
 * paid or cancelled. Every path that records an acceptance tests it through this one fragment.
 */
export function acceptedAfterClose(acceptedAt: SQL, order: SQL): SQL {
  return sql`${acceptedAt} > case ${order}.status when 'paid' then ${order}.paid_at when 'cancelled' then ${order}.cancelled_at end`;
}

/**
 * The check every path that records a message `sent` or `delivered` runs, in the same transaction
 * and after that write (the step's send recording, fresh links, delivery callbacks, lookups of
 * unknown SMS). Of the messages named, those now sent or delivered whose acceptance (`sent_at`) is
 * later than their order's payment (`paid_at`) or cancellation (`cancelled_at`) are marked
 * `after_payment_at` and get a `reminder.after_payment` event in the outbox, once each: a message
 * already marked is left alone.
 *
 * A message accepted before the payment costs one indexed read of its order and nothing else; the
 * order's row lock is taken only for a message to flag, so that it is flagged once.
 */
export async function flagRemindersAfterPayment(
  tx: Tx,
  messageIds: readonly string[],
  now: Date,
): Promise<ReminderAfterPayment[]> {
  if (messageIds.length === 0) return [];
  const found = await rows<{
    id: string;
    order_id: string;
    channel: Channel;
    to_address: string | null;
    template: string;
    step: number | null;
    sent_at: Date;
    order_status: 'paid' | 'cancelled';
    paid_at: Date | null;
    cancelled_at: Date | null;
  }>(
    tx,
    sql`select m.id, m.order_id, m.channel, m.to_address, m.template, m.step, m.sent_at,
               o.status as order_status, o.paid_at, o.cancelled_at
        from messages m join orders o on o.id = m.order_id
        where m.id in (${sql.join(
          messageIds.map((id) => sql`${id}`),
          sql`, `,
        )})
          and m.status in ('sent', 'delivered') and m.after_payment_at is null and m.sent_at is not null
          and ${acceptedAfterClose(sql`m.sent_at`, sql`o`)}
        order by m.order_id, m.sent_at, m.id
        for update of m, o`,
  );
  if (found.length === 0) return [];
  await tx.execute(
    sql`update messages set after_payment_at = ${now}
        where id in (${sql.join(
          found.map((m) => sql`${m.id}`),
          sql`, `,
        )})`,
  );
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  await appendOutboundEvents(
    tx,
    found.map((m) => ({
      type: 'reminder.after_payment',
      orderId: m.order_id,
      data: {
        order_id: m.order_id,
        order_status: m.order_status,
        message_id: m.id,
        channel: m.channel,
        to: maskAddress(m.to_address),
        template: m.template,
        step: m.step,
        accepted_at: iso(m.sent_at),
        paid_at: iso(m.paid_at),
        cancelled_at: iso(m.cancelled_at),
      },
    })),
  );
  return found.map((m) => ({
    messageId: m.id,
    orderId: m.order_id,
    channel: m.channel,
    acceptedAt: m.sent_at,
    closedAt: (m.order_status === 'paid' ? m.paid_at : m.cancelled_at) ?? m.sent_at,
    orderStatus: m.order_status,
  }));
}
