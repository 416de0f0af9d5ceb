import { sql } from 'drizzle-orm';
import { normaliseAddress } from '../compliance/suppressions.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';

/** One order in search results. Addresses are the stored ones: the page masks them. */
export interface OrderHit {
  id: string;
  customerId: string;
  status: string;
  amount: number;
  currency: string;
  email: string | null;
  phone: string | null;
  recoveryState: string | null;
  createdAt: Date;
}

interface HitRow {
  id: string;
  customer_id: string;
  status: string;
  amount: string;
  currency: string;
  email: string | null;
  phone: string | null;
  recovery_state: string | null;
  created_at: Date;
}

/**
 * Orders whose id or customer id is `q`, or whose customer's email or phone is exactly `q`
 * (emails compared case-insensitively, phone separators ignored), newest first. No partial
 * matches: the console finds a customer ops already know, it does not browse personal data.
 * An empty `q` lists the newest orders.
 */
export async function searchOrders(db: DbOrTx, q: string, limit = 50): Promise<OrderHit[]> {
  const term = q.trim();
  const where =
    term === ''
      ? sql`true`
      : sql`o.id = ${term} or o.customer_id = ${term}
            or o.customer_id in (select id from customers
                                 where lower(email) = ${normaliseAddress('email', term)}
                                    or phone = ${normaliseAddress('sms', term)})`;
  const found = await rows<HitRow>(
    db,
    sql`select o.id, o.customer_id, o.status, o.amount::text as amount, o.currency, c.email, c.phone,
               r.state as recovery_state, o.created_at
        from orders o
        left join customers c on c.id = o.customer_id
        left join recoveries r on r.order_id = o.id
        where ${where}
        order by o.created_at desc, o.id
        limit ${limit}`,
  );
  return found.map((r) => ({
    id: r.id,
    customerId: r.customer_id,
    status: r.status,
    amount: Number(r.amount),
    currency: r.currency,
    email: r.email,
    phone: r.phone,
    recoveryState: r.recovery_state,
    createdAt: r.created_at,
  }));
}
