import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/client.js';
import { newId } from '../../src/platform/ids.js';

/**
 * An open retry-link attempt, as recoup stores one after the gateway created its payment:
 * a gateway success settles an order only when it pays such an attempt (its gateway, its
 * payment id, its amount and currency). For tests that drive the gateway's side by hand.
 */
export async function openAttempt(
  db: Db,
  attempt: { orderId: string; gateway: string; gatewayPaymentId: string; amount: number; currency: string },
): Promise<string> {
  const id = newId('att');
  await db.execute(
    sql`insert into payment_attempts (id, order_id, source, attempt_number, gateway, method, status, amount, currency,
                                      gateway_payment_id, occurred_at)
        values (${id}, ${attempt.orderId}, 'retry_link', 1, ${attempt.gateway}, 'alipay', 'open', ${attempt.amount},
                ${attempt.currency}, ${attempt.gatewayPaymentId}, now())`,
  );
  return id;
}
