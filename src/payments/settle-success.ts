import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { retryingTransaction } from '../db/tx.js';
import { newId } from '../platform/ids.js';
import { settleInFlightSends } from '../messages/in-flight.js';
import { closeAttempt, loadAttempt, type AttemptRow } from './payment-attempts.js';
import { currentRefundKeyVersion } from './payment-gateway.js';
import { recordPayment } from './record-payment.js';
import type { RetryDeps } from './retry-session.js';

export interface SuccessFact {
  gateway: string;
  gatewayPaymentId: string;
  attemptId: string | null;
  orderId: string;
  amount: number;
  currency: string;
  method: string | null;
  paidAt: Date;
}

export type SettleResult =
  | { kind: 'recorded'; paymentId: string; endedRecovery: { id: string; wakeSeq: number } | null }
  | { kind: 'already_recorded' }
  | { kind: 'duplicate'; paymentId: string; refundId: string | null }
  /** Left for ops, nothing recorded: see `Mismatch`. */
  | { kind: 'mismatch'; problem: Mismatch };

/**
 * Why a gateway's success was not recorded:
 * - `unknown_attempt`: it pays no attempt recoup opened at that gateway (its payment id is not the attempt's).
 * - `amount_mismatch`: the amount or currency paid is not what the attempt asked for.
 */
export const mismatches = ['unknown_attempt', 'amount_mismatch'] as const;
export type Mismatch = (typeof mismatches)[number];

/**
 * Records a gateway's successful payment under the order lock (from a webhook or a status
 * poll, whichever comes first). A second payment for a paid order is refunded automatically:
 * a refund row is written in the same transaction, and the gateway is asked after commit.
 *
 * Only a payment of an attempt recoup opened at that gateway, for exactly the amount and
 * currency it asked, settles the order: a validly signed event proves only that the gateway
 * saw some payment (another checkout on the same account, or a cent). Anything else is a
 * `mismatch`: the order stays unpaid and its recovery goes on, and the attempt, if any, is
 * closed as failed with the problem as its failure code for ops to see.
 */
export async function settleSuccess(deps: RetryDeps, fact: SuccessFact): Promise<SettleResult> {
  const now = deps.clock.now();
  const result = await retryingTransaction(deps.db, async (tx): Promise<SettleResult> => {
    await tx.execute(sql`select id from orders where id = ${fact.orderId} for update`);
    const attempt = fact.attemptId ? await loadAttempt(tx, fact.attemptId, fact.orderId) : undefined;
    const problem = mismatchOf(fact, attempt);
    if (problem) {
      if (attempt && problem === 'amount_mismatch') {
        await closeAttempt(tx, attempt.id, 'failed', problem, null, now);
      }
      return { kind: 'mismatch', problem };
    }
    const recorded = await recordPayment(
      tx,
      {
        orderId: fact.orderId,
        gateway: fact.gateway,
        externalId: fact.gatewayPaymentId,
        attemptId: fact.attemptId,
        method: fact.method ?? attempt?.method ?? null,
        amount: fact.amount,
        currency: fact.currency,
        incentiveAmount: attempt ? Number(attempt.incentive_amount) : 0,
        paidAt: fact.paidAt,
        clickId: attempt?.click_id ?? null,
      },
      { now, clickWindowMs: deps.clickWindowMs },
    );
    if (fact.attemptId) {
      await tx.execute(
        sql`update payment_attempts set status = 'succeeded', updated_at = ${now}
            where id = ${fact.attemptId} and status in ('open', 'failed', 'cancelled')`,
      );
    }
    if (recorded.kind === 'already_recorded') return { kind: 'already_recorded' };
    if (recorded.kind === 'recorded') {
      if (attempt && Number(attempt.incentive_amount) > 0) {
        await tx.execute(sql`update incentives set status = 'redeemed' where order_id = ${fact.orderId}`);
      }
      return { kind: 'recorded', paymentId: recorded.paymentId, endedRecovery: recorded.endedRecovery };
    }
    // The shop may report the very payment recoup took (its own checkout sees the same gateway):
    // a shop-reported payment made after this attempt started may be this one, so it is left to ops
    // (flagged as a duplicate, not counted) rather than refunded.
    const [original] = await rows<{ gateway: string; paid_at: Date }>(
      tx,
      sql`select gateway, paid_at from payments where order_id = ${fact.orderId} and not duplicate
          order by paid_at limit 1`,
    );
    const [started] = fact.attemptId
      ? await rows<{ created_at: Date }>(tx, sql`select created_at from payment_attempts where id = ${fact.attemptId}`)
      : [];
    if (original?.gateway === 'shop' && (!started || original.paid_at >= started.created_at)) {
      deps.logger.warn({ orderId: fact.orderId, paymentId: recorded.paymentId }, 'possible duplicate left for ops');
      return { kind: 'duplicate', paymentId: recorded.paymentId, refundId: null };
    }
    const refundId = newId('ref');
    await tx.execute(
      sql`insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, key_version,
                               requested_by, created_at, updated_at)
          values (${refundId}, ${fact.orderId}, ${recorded.paymentId}, ${fact.amount}, ${fact.currency}, 'duplicate',
                  'pending', ${`dup-${recorded.paymentId}`}, ${currentRefundKeyVersion}, 'recoup', ${now}, ${now})`,
    );
    return { kind: 'duplicate', paymentId: recorded.paymentId, refundId };
  });
  if (result.kind === 'mismatch') {
    deps.logger.warn(
      {
        problem: result.problem,
        orderId: fact.orderId,
        attemptId: fact.attemptId,
        gateway: fact.gateway,
        gatewayPaymentId: fact.gatewayPaymentId,
        amount: fact.amount,
        currency: fact.currency,
      },
      'gateway payment does not match the attempt; order left unpaid for ops',
    );
    return result;
  }
  // A reminder already on its way when the payment committed: answer once its provider answered.
  await settleInFlightSends(deps.db, { orderId: fact.orderId }, deps.inFlightWait);
  if (result.kind === 'duplicate' && result.refundId) {
    await submitRefund(deps, result.refundId);
  }
  return result;
}

/**
 * The attempt must be one of this gateway's, for this gateway payment. An attempt without a
 * payment id yet is accepted by its id alone: the gateway may report the payment before
 * recoup has stored the id it returned (or after `unknown_outcome`), and the attempt id came
 * back in the gateway's own signed metadata.
 */
function mismatchOf(fact: SuccessFact, attempt: AttemptRow | undefined): Mismatch | null {
  if (!attempt || attempt.gateway !== fact.gateway) return 'unknown_attempt';
  if (attempt.gateway_payment_id !== null && attempt.gateway_payment_id !== fact.gatewayPaymentId) {
    return 'unknown_attempt';
  }
  const askedCurrency = attempt.currency.toUpperCase();
  if (Number(attempt.amount) !== fact.amount || askedCurrency !== fact.currency.toUpperCase()) return 'amount_mismatch';
  return null;
}

/** Asks the gateway for a refund row's money back; safe to repeat (the refund key is idempotent). */
export async function submitRefund(deps: RetryDeps, refundId: string): Promise<void> {
  const [refund] = await rows<{
    id: string;
    amount: string;
    currency: string;
    reason: string;
    refund_key: string;
    key_version: number;
    status: string;
    gateway: string | null;
    external_id: string;
  }>(
    deps.db,
    sql`select f.id, f.amount::text as amount, f.currency, f.reason, f.refund_key, f.key_version, f.status, p.gateway,
               p.external_id
        from refunds f join payments p on p.id = f.payment_id where f.id = ${refundId}`,
  );
  if (!refund || refund.status !== 'pending') return;
  const gateway = refund.gateway ? deps.gateways.byName(refund.gateway) : undefined;
  if (!gateway) {
    deps.logger.warn({ refundId }, 'refund needs a gateway recoup does not have; left pending for ops');
    return;
  }
  try {
    const result = await gateway.refund({
      gatewayPaymentId: refund.external_id,
      amount: Number(refund.amount),
      currency: refund.currency,
      refundKey: refund.refund_key,
      keyVersion: refund.key_version === 1 ? 1 : currentRefundKeyVersion,
      reason: refund.reason,
    });
    await deps.db.execute(
      sql`update refunds set gateway_refund_id = ${result.gatewayRefundId},
                             succeeded_at = case when status = 'pending' and ${result.status} = 'succeeded'
                                                 then ${deps.clock.now()} else succeeded_at end,
                             status = case when status = 'pending' then ${result.status} else status end,
                             updated_at = ${deps.clock.now()}
          where id = ${refundId}`,
    );
  } catch (err) {
    deps.logger.warn({ err, refundId }, 'refund request failed; left pending');
  }
}
