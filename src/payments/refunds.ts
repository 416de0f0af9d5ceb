import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { retryingTransaction } from '../db/tx.js';
import { RecoupError } from '../platform/errors.js';
import { newId } from '../platform/ids.js';
import { currentRefundKeyVersion } from './payment-gateway.js';
import type { RetryDeps } from './retry-session.js';
import { submitRefund } from './settle-success.js';

export interface RefundRequestInput {
  orderId: string;
  /** Minor units; default: everything not yet refunded. */
  amount?: number | undefined;
  reason: string;
  requestedBy: string;
  /** Makes a retried API call safe: the same key → the same refund. */
  idempotencyKey?: string | undefined;
}

/**
 * Ops refund of an order's gateway payment. The refund row is written first (pending), then
 * the gateway is asked with an idempotent refund key; its webhook settles the status.
 */
export async function requestRefund(
  deps: RetryDeps,
  input: RefundRequestInput,
): Promise<{ refundId: string; status: string }> {
  const now = deps.clock.now();
  const refundId = await retryingTransaction(deps.db, async (tx) => {
    await tx.execute(sql`select id from orders where id = ${input.orderId} for update`);
    const key = input.idempotencyKey ? `ops-${input.orderId}-${input.idempotencyKey}` : `ops-${newId('ref')}`;
    const [existing] = await rows<{ id: string }>(tx, sql`select id from refunds where refund_key = ${key}`);
    if (existing) return existing.id;
    const [payment] = await rows<{ id: string; gateway: string; amount: string; currency: string; refunded: string }>(
      tx,
      sql`select p.id, p.gateway, p.amount::text as amount, p.currency,
                 coalesce((select sum(amount) from refunds f where f.payment_id = p.id and f.status <> 'failed'), 0)::text as refunded
          from payments p where p.order_id = ${input.orderId} and not p.duplicate
          order by p.paid_at desc limit 1`,
    );
    if (!payment) throw new RecoupError('conflict', `Order ${input.orderId} has no payment to refund`);
    if (payment.gateway === 'shop') {
      throw new RecoupError('conflict', 'This payment was taken by the shop, not through recoup: refund it there');
    }
    const refundable = Number(payment.amount) - Number(payment.refunded);
    const amount = input.amount ?? refundable;
    if (amount <= 0 || amount > refundable) {
      throw new RecoupError('validation', `At most ${refundable} can be refunded`, {
        issues: [{ path: 'amount', message: `must be between 1 and ${refundable}` }],
      });
    }
    const id = newId('ref');
    await tx.execute(
      sql`insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, key_version,
                               requested_by, created_at, updated_at)
          values (${id}, ${input.orderId}, ${payment.id}, ${amount}, ${payment.currency}, ${input.reason}, 'pending',
                  ${key}, ${currentRefundKeyVersion}, ${input.requestedBy}, ${now}, ${now})`,
    );
    return id;
  });
  await submitRefund(deps, refundId);
  const [row] = await rows<{ status: string }>(deps.db, sql`select status from refunds where id = ${refundId}`);
  return { refundId, status: row?.status ?? 'pending' };
}
