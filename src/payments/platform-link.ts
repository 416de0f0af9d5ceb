import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';

/**
 * Where a reminder's link leads instead of the retry page: the order's own payment page on its
 * shop platform, when `paidOnPlatform` says the order is paid there and the platform gave one.
 * The reminder still links to recoup first: its page counts the click (attribution, the order's
 * story) before moving on, and an expired or paid order still gets recoup's page.
 */
export async function shopPaymentPage(
  db: Db,
  orderId: string,
  paidOnPlatform: (platform: string, orderId: string) => boolean,
): Promise<string | undefined> {
  const [order] = await rows<{ platform: string | null; payment_url: string | null }>(
    db,
    sql`select platform, payment_url from orders where id = ${orderId}`,
  );
  if (!order?.platform || !order.payment_url || !paidOnPlatform(order.platform, orderId)) return undefined;
  return order.payment_url;
}
