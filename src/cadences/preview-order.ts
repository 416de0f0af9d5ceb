import { sql } from 'drizzle-orm';
import { findSuppressions } from '../compliance/suppressions.js';
import { rows } from '../db/rows.js';
import type { OrderItem } from '../db/schema.js';
import type { DbOrTx } from '../db/tx.js';
import type { Channel, FailureCategory } from '../domain/vocabulary.js';
import { failureCategories } from '../domain/vocabulary.js';
import type { PreviewOrder } from './preview.js';

/** A stored order as a preview sees it: its customer's contacts as the dispatcher would find them now. */
export interface StoredPreviewOrder {
  order: PreviewOrder;
  /** The recovery's category, else the order's last failure's; undefined when neither is known. */
  failureCategory: FailureCategory | undefined;
  suppressed: Map<Channel, string>;
  /** The customer's messages sent or in flight from two days before `since` on (they count toward the cap). */
  recentSends: Date[];
  /** The same, per channel, for the customer's address on it under other customer ids (they count too). */
  addressSends: Map<Channel, Date[]>;
}

interface Row {
  id: string;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
  items: OrderItem[] | null;
  last_failure_category: string | null;
  customer_id: string;
  name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
  recovery_category: string | null;
}

/** Loads order `id` for a preview starting at `since`; undefined for an unknown order. */
export async function loadPreviewOrder(db: DbOrTx, id: string, since: Date): Promise<StoredPreviewOrder | undefined> {
  const [row] = await rows<Row>(
    db,
    sql`select o.id, o.amount::text as amount, o.currency, o.description, o.coupon_code, o.items, o.last_failure_category,
               o.customer_id, c.name, c.email, c.phone, c.locale, c.timezone, c.email_bad_reason, c.phone_bad_reason,
               r.failure_category as recovery_category
        from orders o
        left join customers c on c.id = o.customer_id
        left join recoveries r on r.order_id = o.id
        where o.id = ${id}`,
  );
  if (!row) return undefined;
  const suppressed = await findSuppressions(db, { sms: row.phone, email: row.email });
  const from = new Date(since.getTime() - 2 * 86_400_000);
  const sends = await rows<{ at: Date }>(
    db,
    sql`select coalesce(sent_at, claimed_at) as at from messages
        where customer_id = ${row.customer_id} and status in ('sending', 'sent', 'delivered', 'unknown')
          and coalesce(sent_at, claimed_at) > ${from}`,
  );
  const addressSends = new Map<Channel, Date[]>();
  for (const [channel, address] of [
    ['sms', row.phone],
    ['email', row.email],
  ] as const) {
    if (!address) continue;
    const found = await rows<{ at: Date }>(
      db,
      sql`select coalesce(sent_at, claimed_at) as at from messages
          where channel = ${channel} and to_normalised = recoup_normalise_address(${channel}, ${address})
            and status in ('sending', 'sent', 'delivered', 'unknown')
            and coalesce(sent_at, claimed_at) > ${from} and customer_id <> ${row.customer_id}`,
    );
    addressSends.set(
      channel,
      found.map((s) => s.at),
    );
  }
  return {
    order: {
      id: row.id,
      amount: Number(row.amount),
      currency: row.currency,
      description: row.description,
      couponCode: row.coupon_code,
      items: row.items,
      customer: {
        name: row.name,
        email: row.email,
        phone: row.phone,
        locale: row.locale,
        timezone: row.timezone,
        emailBadReason: row.email_bad_reason,
        phoneBadReason: row.phone_bad_reason,
      },
    },
    failureCategory: asCategory(row.recovery_category) ?? asCategory(row.last_failure_category),
    suppressed,
    recentSends: sends.map((s) => s.at),
    addressSends,
  };
}

function asCategory(value: string | null): FailureCategory | undefined {
  return failureCategories.find((c) => c === value);
}
