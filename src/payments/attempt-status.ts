import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { lookupRetryToken } from '../retry-links/retry-token.js';
import { closeAttempt, loadAttempt, toAttemptView, type AttemptView } from './payment-attempts.js';
import type { PaymentStatus } from './payment-gateway.js';
import type { RetryDeps } from './retry-session.js';
import { settleSuccess } from './settle-success.js';

/**
 * The attempt's state for the page (polling, return from the gateway). An open attempt is
 * checked with the gateway, and a success found this way is recorded exactly as its webhook
 * would be, so the page never waits for a late webhook.
 */
export async function refreshAttempt(
  deps: RetryDeps,
  token: string,
  attemptId: string,
): Promise<AttemptView | undefined> {
  const now = deps.clock.now();
  const link = await lookupRetryToken(deps.db, token, now);
  // A customer coming back from the gateway just after the link expired still sees the outcome.
  const orderId = link.valid
    ? link.orderId
    : link.messageId
      ? await orderOfMessage(deps.db, link.messageId)
      : undefined;
  if (!orderId) return undefined;
  const attempt = await loadAttempt(deps.db, attemptId, orderId);
  if (!attempt) return undefined;
  if (attempt.status !== 'open' || !attempt.gateway || !attempt.gateway_payment_id) return toAttemptView(attempt);
  const gateway = deps.gateways.byName(attempt.gateway);
  if (!gateway) return toAttemptView(attempt);
  let status;
  try {
    status = await gateway.retrievePayment(attempt.gateway_payment_id);
  } catch (err) {
    deps.logger.warn({ err, attemptId }, 'could not retrieve payment status');
    return toAttemptView(attempt);
  }
  await followPaymentStatus(deps, { id: attempt.id, orderId: attempt.order_id, gateway: gateway.name }, status);
  const refreshed = await loadAttempt(deps.db, attemptId, orderId);
  return refreshed ? toAttemptView(refreshed) : undefined;
}

/**
 * Records what a gateway says about an open attempt, exactly as its webhook would: a success
 * settles the payment, a failure or cancellation closes the attempt, anything else changes
 * nothing. Safe to repeat, and to race the webhook.
 */
export async function followPaymentStatus(
  deps: RetryDeps,
  attempt: { id: string; orderId: string; gateway: string },
  status: PaymentStatus,
): Promise<void> {
  const now = deps.clock.now();
  if (status.status === 'succeeded') {
    await settleSuccess(deps, {
      gateway: attempt.gateway,
      gatewayPaymentId: status.gatewayPaymentId,
      attemptId: attempt.id,
      orderId: attempt.orderId,
      amount: status.amount,
      currency: status.currency,
      method: status.method ?? null,
      paidAt: status.paidAt ?? now,
    });
  } else if (status.status === 'failed' || status.status === 'cancelled') {
    await closeAttempt(
      deps.db,
      attempt.id,
      status.status,
      status.failureCode ?? null,
      status.failureCategory ?? null,
      now,
    );
  }
}

async function orderOfMessage(db: Db, messageId: string): Promise<string | undefined> {
  const [row] = await rows<{ order_id: string }>(db, sql`select order_id from messages where id = ${messageId}`);
  return row?.order_id;
}
