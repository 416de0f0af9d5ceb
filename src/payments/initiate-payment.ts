import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { retryingTransaction, type Tx } from '../db/tx.js';
import { opsLinkChannel, type FailureCategory, type PaymentMethod } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import { lookupRetryToken } from '../retry-links/retry-token.js';
import type { Charge } from '../pricing/charge.js';
import { storedAction } from './payment-attempts.js';
import { isGatewayError, type PaymentNextAction } from './payment-gateway.js';
import { buildView, loadLinkRow, type LinkRow, type RetryDeps } from './retry-session.js';
import { settleSuccess } from './settle-success.js';

export interface InitiateInput {
  token: string;
  method: PaymentMethod;
  /** Confirmed or corrected contact details (already validated by the route). */
  email: string | null;
  phone: string | null;
  device?: 'desktop' | 'mobile';
  /** The customer's IP address (WeChat Pay H5 needs it). */
  clientIp?: string;
}

export type InitiateResult =
  | { kind: 'next_action'; attemptId: string; gateway: string; action: PaymentNextAction; charge: Charge }
  | { kind: 'declined'; attemptId: string; category: FailureCategory | null; code: string | null }
  | { kind: 'unavailable'; attemptId: string | null }
  /** Another gateway's open payment could not be closed: nothing new was started; try again shortly. */
  | { kind: 'previous_attempt_open' }
  | { kind: 'method_not_offered' }
  | { kind: 'completed' }
  | { kind: 'closed' }
  | { kind: 'invalid' }
  | { kind: 'expired' };

interface OpenAttemptRow {
  id: string;
  attempt_number: number;
  gateway: string;
  method: string;
  gateway_payment_id: string | null;
  idempotency_key: string;
  amount: string;
  next_action: PaymentNextAction | null;
  click_id: string | null;
  message_id: string | null;
}

/**
 * The form's POST: stores the confirmed contact details, then (re-)initiates the payment.
 * Under the order's row lock, so a double submit or a refresh reuses the open attempt
 * (same idempotency key, one charge) and a payment webhook waits for it.
 */
export async function initiatePayment(deps: RetryDeps, input: InitiateInput): Promise<InitiateResult> {
  const now = deps.clock.now();
  const link = await lookupRetryToken(deps.db, input.token, now);
  if (!link.valid) return { kind: link.reason === 'expired' || link.reason === 'revoked' ? 'expired' : 'invalid' };

  // Its lock waits all come before any gateway call: a run that timed out told the gateway nothing.
  const result = await retryingTransaction(deps.db, async (tx): Promise<InitiateResult | ConflictResult> => {
    const row = await loadLinkRow(tx, link.messageId, true);
    if (!row) return { kind: 'invalid' };
    if (row.order_status === 'paid') return { kind: 'completed' };
    if (row.order_status !== 'pending') return { kind: 'closed' };

    // What the link's reminder quoted: any incentive in it was granted as it was sent.
    const view = await buildView(deps, tx, input.token, row, link.expiresAt, now);
    const gateway = view.methods.includes(input.method)
      ? deps.gateways.forMethod(input.method, row.currency)
      : undefined;
    if (!gateway) return { kind: 'method_not_offered' };

    await updateContact(tx, row, input, now);

    const [open] = await rows<OpenAttemptRow>(
      tx,
      sql`select id, attempt_number, gateway, method, gateway_payment_id, idempotency_key, amount::text as amount,
                 next_action, click_id, message_id
          from payment_attempts where order_id = ${row.order_id} and status = 'open' for update`,
    );
    const charge = view.charge;
    const reusable =
      open &&
      open.gateway === gateway.name &&
      open.method === input.method &&
      // Its return URL and expiry belong to the link it was started from.
      open.message_id === row.message_id &&
      Number(open.amount) === charge.total &&
      !isExpired(open.next_action, now);

    let attempt: { id: string; number: number; idempotencyKey: string };
    let previousGatewayPaymentId: string | undefined;
    if (open && reusable) {
      const action = storedAction(open.next_action);
      if (action) {
        return { kind: 'next_action', attemptId: open.id, gateway: gateway.name, action, charge };
      }
      // Its outcome was unknown: ask again with the same idempotency key, reaching the same payment.
      attempt = { id: open.id, number: open.attempt_number, idempotencyKey: open.idempotency_key };
    } else {
      if (open) {
        // At most one open attempt: supersede the previous one. Its own gateway does that as it
        // creates the next payment; another gateway's payment is closed first.
        if (open.gateway === gateway.name) previousGatewayPaymentId = open.gateway_payment_id ?? undefined;
        else if (!(await closedAtItsGateway(deps, open))) return { kind: 'previous_attempt_open' };
        await tx.execute(
          sql`update payment_attempts set status = 'cancelled', updated_at = ${now} where id = ${open.id}`,
        );
      } else {
        previousGatewayPaymentId = await lastGatewayPayment(tx, row.order_id, gateway.name);
      }
      const [max] = await rows<{ n: number }>(
        tx,
        sql`select coalesce(max(attempt_number), 0)::int as n from payment_attempts where order_id = ${row.order_id}`,
      );
      const number = (max?.n ?? 0) + 1;
      attempt = { id: newId('att'), number, idempotencyKey: `${row.order_id}-${number}` };
      const [click] = await rows<{ id: string }>(
        tx,
        sql`select id from clicks where message_id = ${row.message_id} order by at desc limit 1`,
      );
      await tx.execute(
        sql`insert into payment_attempts (id, order_id, source, attempt_number, gateway, method, status, amount, currency,
                                          coupon_discount_amount, incentive_amount, recovery_id, message_id, click_id,
                                          idempotency_key, occurred_at, created_at, updated_at)
            values (${attempt.id}, ${row.order_id}, 'retry_link', ${number}, ${gateway.name}, ${input.method}, 'open',
                    ${charge.total}, ${row.currency},
                    ${charge.coupon?.status === 'applied' ? charge.coupon.discountAmount : 0}, ${charge.incentiveAmount},
                    ${row.recovery_id}, ${row.message_id}, ${click?.id ?? null}, ${attempt.idempotencyKey},
                    ${now}, ${now}, ${now})`,
      );
    }

    try {
      const created = await gateway.createPayment({
        orderId: row.order_id,
        attemptId: attempt.id,
        attemptNumber: attempt.number,
        amount: charge.total,
        currency: row.currency,
        method: input.method,
        description: row.description || `${deps.shopName} ${row.order_id}`,
        customer: { email: input.email ?? row.email, phone: input.phone ?? row.phone, locale: view.locale },
        returnUrl: `${deps.publicUrl}/r/${input.token}/return?attempt=${attempt.id}`,
        expiresAt: link.expiresAt,
        idempotencyKey: attempt.idempotencyKey,
        ...(previousGatewayPaymentId ? { previousGatewayPaymentId } : {}),
        ...(input.device ? { device: input.device } : {}),
        ...(input.clientIp ? { clientIp: input.clientIp } : {}),
      });
      await tx.execute(
        sql`update payment_attempts set gateway_payment_id = ${created.gatewayPaymentId},
                                        next_action = ${JSON.stringify(created.nextAction)}::jsonb, updated_at = ${now}
            where id = ${attempt.id}`,
      );
      return { kind: 'next_action', attemptId: attempt.id, gateway: gateway.name, action: created.nextAction, charge };
    } catch (err) {
      if (isGatewayError(err, 'declined')) {
        await tx.execute(
          sql`update payment_attempts set status = 'failed', failure_code = ${err.code ?? null},
                                          failure_category = ${err.category ?? null},
                                          gateway_payment_id = coalesce(${err.gatewayPaymentId ?? null}, gateway_payment_id),
                                          updated_at = ${now}
              where id = ${attempt.id}`,
        );
        await tx.execute(
          sql`update orders set last_failure_code = ${err.code ?? null},
                                last_failure_category = coalesce(${err.category ?? null}, last_failure_category),
                                last_method = ${input.method}, last_gateway = ${gateway.name}
              where id = ${row.order_id}`,
        );
        return { kind: 'declined', attemptId: attempt.id, category: err.category ?? null, code: err.code ?? null };
      }
      if (isGatewayError(err) && err.kind === 'unavailable') {
        // The gateway certainly did not act: this attempt is over, the next submit starts another.
        await tx.execute(
          sql`update payment_attempts set status = 'failed', failure_code = ${err.code ?? 'unavailable'},
                                          failure_category = 'gateway_outage',
                                          gateway_payment_id = coalesce(${err.gatewayPaymentId ?? null}, gateway_payment_id),
                                          updated_at = ${now}
              where id = ${attempt.id}`,
        );
        return { kind: 'unavailable', attemptId: attempt.id };
      }
      if (isGatewayError(err, 'conflict')) {
        // The previous payment is paid or being processed: follow its outcome after commit.
        await tx.execute(
          sql`update payment_attempts set status = 'cancelled', failure_code = 'conflict', updated_at = ${now}
              where id = ${attempt.id}`,
        );
        const paymentId = err.gatewayPaymentId ?? previousGatewayPaymentId;
        return paymentId
          ? { kind: 'conflict', gateway: gateway.name, gatewayPaymentId: paymentId, orderId: row.order_id }
          : { kind: 'unavailable', attemptId: attempt.id };
      }
      // Unknown outcome: the attempt stays open without a next action; the next submit asks
      // the gateway again with the same idempotency key.
      deps.logger.warn({ err, attemptId: attempt.id, gateway: gateway.name }, 'payment creation outcome unknown');
      return { kind: 'unavailable', attemptId: attempt.id };
    }
  });
  if (result.kind !== 'conflict') return result;
  return followConflict(deps, result, now);
}

interface ConflictResult {
  kind: 'conflict';
  gateway: string;
  gatewayPaymentId: string;
  orderId: string;
}

/** The gateway refused a new attempt because the previous payment went through (or is going through). */
async function followConflict(deps: RetryDeps, conflict: ConflictResult, now: Date): Promise<InitiateResult> {
  const gateway = deps.gateways.byName(conflict.gateway);
  try {
    const status = await gateway?.retrievePayment(conflict.gatewayPaymentId);
    if (status?.status === 'succeeded') {
      const [attempt] = await rows<{ id: string }>(
        deps.db,
        sql`select id from payment_attempts where gateway = ${conflict.gateway}
              and gateway_payment_id = ${conflict.gatewayPaymentId}
            order by attempt_number desc nulls last limit 1`,
      );
      const settled = await settleSuccess(deps, {
        gateway: conflict.gateway,
        gatewayPaymentId: conflict.gatewayPaymentId,
        attemptId: attempt?.id ?? null,
        orderId: conflict.orderId,
        amount: status.amount,
        currency: status.currency,
        method: status.method ?? null,
        paidAt: status.paidAt ?? now,
      });
      // A payment that does not match the attempt did not pay the order (ops see it).
      if (settled.kind !== 'mismatch') return { kind: 'completed' };
    }
  } catch (err) {
    deps.logger.warn(
      { err, gatewayPaymentId: conflict.gatewayPaymentId },
      'could not retrieve the conflicting payment',
    );
  }
  return { kind: 'unavailable', attemptId: null };
}

/**
 * Closes an open attempt at its own gateway before the customer pays through another one. When
 * that gateway cannot close it now (down, or the payment is being processed), the switch waits:
 * the old page or QR code may still take the customer's money, and opening a second payment
 * beside it invites paying twice. The attempt stays open, so its webhook or the payment sweeper
 * still records it if it is paid, and the customer is asked to try again shortly.
 */
async function closedAtItsGateway(deps: RetryDeps, open: OpenAttemptRow): Promise<boolean> {
  const previous = deps.gateways.byName(open.gateway);
  // Nothing to close: no payment was created, or its gateway is no longer configured.
  if (!open.gateway_payment_id || !previous) return true;
  try {
    await previous.cancelPayment(open.gateway_payment_id);
    return true;
  } catch (err) {
    if (!isGatewayError(err)) throw err;
    deps.logger.warn(
      { err, attemptId: open.id, gateway: open.gateway },
      'could not close the previous payment attempt; the method switch waits',
    );
    return false;
  }
}

function isExpired(action: PaymentNextAction | null, now: Date): boolean {
  return action?.type === 'qr' && new Date(action.expiresAt) <= now;
}

async function lastGatewayPayment(tx: Tx, orderId: string, gateway: string): Promise<string | undefined> {
  const [row] = await rows<{ gateway_payment_id: string }>(
    tx,
    sql`select gateway_payment_id from payment_attempts
        where order_id = ${orderId} and gateway = ${gateway} and gateway_payment_id is not null
        order by attempt_number desc nulls last limit 1`,
  );
  return row?.gateway_payment_id;
}

async function updateContact(tx: Tx, row: LinkRow, input: InitiateInput, now: Date): Promise<void> {
  const changes: Record<string, { before: string | null; after: string }> = {};
  if (input.email && input.email !== row.email) changes.email = { before: row.email, after: input.email };
  if (input.phone && input.phone !== row.phone) changes.phone = { before: row.phone, after: input.phone };
  if (Object.keys(changes).length === 0) return;
  // A link ops issued by hand is used by whoever it was handed to (ops themselves, on a call): the
  // change is recorded as made through that link, not as the customer's own.
  const actor = row.channel === opsLinkChannel ? `link:${row.message_id}` : `customer:${row.customer_id}`;
  // A corrected address is used for later reminders and forgets that the old one was bad.
  await tx.execute(
    sql`update customers set
          email = coalesce(${changes.email?.after ?? null}, email),
          phone = coalesce(${changes.phone?.after ?? null}, phone),
          email_bad_reason = case when ${changes.email !== undefined} then null else email_bad_reason end,
          phone_bad_reason = case when ${changes.phone !== undefined} then null else phone_bad_reason end,
          updated_at = greatest(updated_at, ${now})
        where id = ${row.customer_id}`,
  );
  await tx.execute(
    sql`insert into audit_log (id, at, actor, action, subject, before, after)
        values (${newId('aud')}, ${now}, ${actor}, 'contact.confirmed',
                ${`customer:${row.customer_id}`},
                ${JSON.stringify(Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.before])))}::jsonb,
                ${JSON.stringify(Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.after])))}::jsonb)`,
  );
}
