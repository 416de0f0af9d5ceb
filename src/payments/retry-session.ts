import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { retryingTransaction, type Tx } from '../db/tx.js';
import type { FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { paymentMethods } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import type { Logger } from '../platform/logger.js';
import { customerAdvice } from '../recoveries/classify-failure.js';
import { lookupRetryToken } from '../retry-links/retry-token.js';
import type { Cadence } from '../cadences/cadence.js';
import { computeCharge, type Charge } from './charge.js';
import { eligibleIncentive, grantIncentive, type IncentiveContext } from './incentives.js';
import type { PaymentGateways } from './gateways.js';
import { isGatewayError, type PaymentNextAction, type PaymentStatus } from './payment-gateway.js';
import { recordPayment } from './record-payment.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';

export interface RetryDeps {
  db: Db;
  cadences: CadenceBook;
  gateways: PaymentGateways;
  clock: Clock;
  logger: Logger;
  publicUrl: string;
  shopName: string;
  defaultLocale: string;
  clickWindowMs: number;
  /** At most one incentive per customer within this period (INCENTIVE_PERIOD). Default 90 days. */
  incentivePeriodMs?: number;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  /** A webhook event claimed this long ago and not applied is taken over (WEBHOOK_STALE_AFTER). Default 2 min. */
  webhookStaleAfterMs?: number;
  /** Test seam for the crash test: called once a webhook's event is claimed, before it is applied. */
  faultPoint?: (point: 'after_webhook_claim', eventId: string) => Promise<void>;
}

/** Everything the retry page shows for a valid link. */
export interface RetryView {
  token: string;
  messageId: string;
  recoveryId: string;
  orderId: string;
  /** The customer's locale as stored (resolve it against the page translations). */
  locale: string;
  shopName: string;
  description: string;
  currency: string;
  charge: Charge;
  /** The last failure, for a sentence in customer language. */
  lastFailure: { category: FailureCategory; code: string | null } | null;
  /** Methods the step offered that a configured gateway takes in this currency, in the step's order. */
  methods: PaymentMethod[];
  /** Pre-selected method: never the one that just failed when the failure says "use another method". */
  defaultMethod: PaymentMethod | null;
  contact: { email: string | null; phone: string | null };
  expiresAt: Date;
}

export type RetryLinkState =
  /** Malformed or unknown token: show nothing about any order. */
  | { kind: 'invalid' }
  /** A real link that expired or was revoked: the page may offer a fresh link to the contact on file. */
  | { kind: 'expired'; messageId: string; locale: string }
  /** The order is paid: say thanks, nothing to do. */
  | { kind: 'completed'; orderId: string; locale: string }
  /** The order was cancelled. */
  | { kind: 'closed'; orderId: string; locale: string }
  | { kind: 'open'; view: RetryView };

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
  | { kind: 'method_not_offered' }
  | { kind: 'completed' }
  | { kind: 'closed' }
  | { kind: 'invalid' }
  | { kind: 'expired' };

export type AttemptStatus = 'open' | 'succeeded' | 'failed' | 'cancelled';

export interface AttemptView {
  attemptId: string;
  orderId: string;
  status: AttemptStatus;
  method: string | null;
  failureCategory: FailureCategory | null;
  failureCode: string | null;
  nextAction: PaymentNextAction | null;
}

interface LinkRow {
  message_id: string;
  step: number | null;
  recovery_id: string;
  cadence_name: string;
  cadence_version: number;
  failure_category: FailureCategory;
  order_id: string;
  order_status: string;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
  coupon_discount_amount: string | null;
  coupon_expires_at: Date | null;
  last_failure_category: FailureCategory | null;
  last_failure_code: string | null;
  last_method: string | null;
  customer_id: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
}

async function loadLinkRow(db: Db | Tx, messageId: string, lock: boolean): Promise<LinkRow | undefined> {
  const [row] = await rows<LinkRow>(
    db,
    sql`select m.id as message_id, m.step, r.id as recovery_id, r.cadence_name, r.cadence_version, r.failure_category,
               o.id as order_id, o.status as order_status, o.amount::text as amount, o.currency, o.description,
               o.coupon_code, o.coupon_discount_amount::text as coupon_discount_amount, o.coupon_expires_at,
               o.last_failure_category, o.last_failure_code, o.last_method,
               c.id as customer_id, c.email, c.phone, c.locale
        from messages m
        join recoveries r on r.id = m.recovery_id
        join orders o on o.id = m.order_id
        join customers c on c.id = o.customer_id
        where m.id = ${messageId}
        ${lock ? sql`for update of o` : sql``}`,
  );
  return row;
}

/** Resolves a retry link to what its page shows. Reads only: opening a link changes nothing. */
export async function loadRetryLink(deps: RetryDeps, token: string): Promise<RetryLinkState> {
  const now = deps.clock.now();
  const link = await lookupRetryToken(deps.db, token, now);
  if (!link.valid) {
    if (!link.messageId || (link.reason !== 'expired' && link.reason !== 'revoked')) return { kind: 'invalid' };
    const row = await loadLinkRow(deps.db, link.messageId, false);
    const locale = row?.locale ?? deps.defaultLocale;
    // Nothing to renew for an order that is settled: say so instead of offering a fresh link.
    if (row?.order_status === 'paid') return { kind: 'completed', orderId: row.order_id, locale };
    if (row && row.order_status !== 'pending') return { kind: 'closed', orderId: row.order_id, locale };
    return { kind: 'expired', messageId: link.messageId, locale };
  }
  const row = await loadLinkRow(deps.db, link.messageId, false);
  if (!row) return { kind: 'invalid' };
  const locale = row.locale ?? deps.defaultLocale;
  if (row.order_status === 'paid') return { kind: 'completed', orderId: row.order_id, locale };
  if (row.order_status !== 'pending') return { kind: 'closed', orderId: row.order_id, locale };
  return { kind: 'open', view: await buildView(deps, deps.db, token, row, link.expiresAt, now) };
}

async function buildView(
  deps: RetryDeps,
  db: Db | Tx,
  token: string,
  row: LinkRow,
  expiresAt: Date,
  now: Date,
): Promise<RetryView> {
  const version = await deps.cadences.version(row.cadence_name, row.cadence_version, db);
  const step = row.step === null ? undefined : version?.cadence.steps[row.step];
  const offered = step?.offerMethods ?? [...paymentMethods];
  const methods = offered.filter((m) => deps.gateways.forMethod(m, row.currency) !== undefined);
  const lastFailure = row.last_failure_category
    ? { category: row.last_failure_category, code: row.last_failure_code }
    : null;
  const failedMethod = paymentMethods.find((m) => m === row.last_method);
  const avoidFailed =
    lastFailure !== null &&
    failedMethod !== undefined &&
    ['use_another_method', 'no_reminders'].includes(customerAdvice(lastFailure.category));
  const defaultMethod = methods.find((m) => !(avoidFailed && m === failedMethod)) ?? methods[0] ?? null;
  const coupon = row.coupon_code
    ? {
        code: row.coupon_code,
        discountAmount: row.coupon_discount_amount === null ? null : Number(row.coupon_discount_amount),
        expiresAt: row.coupon_expires_at,
      }
    : null;
  const withoutIncentive = computeCharge({ orderAmount: Number(row.amount), coupon, now });
  const incentive = version
    ? await eligibleIncentive(db, incentiveContext(deps, row, version.cadence, withoutIncentive.total, now))
    : 0;
  return {
    token,
    messageId: row.message_id,
    recoveryId: row.recovery_id,
    orderId: row.order_id,
    locale: row.locale ?? deps.defaultLocale,
    shopName: deps.shopName,
    description: row.description ?? '',
    currency: row.currency,
    charge: computeCharge({ orderAmount: Number(row.amount), coupon, incentiveAmount: incentive, now }),
    lastFailure,
    methods,
    defaultMethod,
    contact: { email: row.email, phone: row.phone },
    expiresAt,
  };
}

function incentiveContext(deps: RetryDeps, row: LinkRow, cadence: Cadence, total: number, now: Date): IncentiveContext {
  return {
    orderId: row.order_id,
    customerId: row.customer_id,
    recoveryId: row.recovery_id,
    cadence,
    cadenceName: row.cadence_name,
    step: row.step,
    failureCategory: row.failure_category,
    currency: row.currency,
    total,
    now,
    periodMs: deps.incentivePeriodMs ?? 90 * 86_400_000,
  };
}

/** Records that a link was opened (attribution only; nothing else changes on a GET). */
export async function recordClick(deps: RetryDeps, view: RetryView, userAgent: string | undefined): Promise<string> {
  const id = newId('clk');
  await deps.db.execute(
    sql`insert into clicks (id, message_id, recovery_id, order_id, user_agent, at)
        values (${id}, ${view.messageId}, ${view.recoveryId}, ${view.orderId}, ${userAgent?.slice(0, 300) ?? null},
                ${deps.clock.now()})`,
  );
  return id;
}

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

    const view = await buildView(deps, tx, input.token, row, link.expiresAt, now);
    const gateway = view.methods.includes(input.method)
      ? deps.gateways.forMethod(input.method, row.currency)
      : undefined;
    if (!gateway) return { kind: 'method_not_offered' };

    await updateContact(tx, row, input, now);
    if (view.charge.incentiveAmount > 0) {
      const version = await deps.cadences.version(row.cadence_name, row.cadence_version, tx);
      if (version) {
        const ctx = incentiveContext(deps, row, version.cadence, view.charge.total + view.charge.incentiveAmount, now);
        await grantIncentive(tx, ctx, view.charge.incentiveAmount);
      }
    }

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
        // At most one open attempt: supersede the previous one (closing it at its gateway).
        await tx.execute(
          sql`update payment_attempts set status = 'cancelled', updated_at = ${now} where id = ${open.id}`,
        );
        if (open.gateway_payment_id) {
          if (open.gateway === gateway.name) previousGatewayPaymentId = open.gateway_payment_id;
          else await deps.gateways.byName(open.gateway)?.cancelPayment(open.gateway_payment_id);
        }
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
      await settleSuccess(deps, {
        gateway: conflict.gateway,
        gatewayPaymentId: conflict.gatewayPaymentId,
        attemptId: attempt?.id ?? null,
        orderId: conflict.orderId,
        amount: status.amount,
        currency: status.currency,
        method: status.method ?? null,
        paidAt: status.paidAt ?? now,
      });
      return { kind: 'completed' };
    }
  } catch (err) {
    deps.logger.warn(
      { err, gatewayPaymentId: conflict.gatewayPaymentId },
      'could not retrieve the conflicting payment',
    );
  }
  return { kind: 'unavailable', attemptId: null };
}

/** A next action read back from jsonb: dates come back as strings. */
function storedAction(json: PaymentNextAction | null): PaymentNextAction | null {
  if (json?.type === 'qr') return { ...json, expiresAt: new Date(json.expiresAt) };
  return json;
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
        values (${newId('aud')}, ${now}, ${`customer:${row.customer_id}`}, 'contact.confirmed',
                ${`customer:${row.customer_id}`},
                ${JSON.stringify(Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.before])))}::jsonb,
                ${JSON.stringify(Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.after])))}::jsonb)`,
  );
}

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
  if (attempt.status !== 'open' || !attempt.gateway || !attempt.gateway_payment_id) return toView(attempt);
  const gateway = deps.gateways.byName(attempt.gateway);
  if (!gateway) return toView(attempt);
  let status;
  try {
    status = await gateway.retrievePayment(attempt.gateway_payment_id);
  } catch (err) {
    deps.logger.warn({ err, attemptId }, 'could not retrieve payment status');
    return toView(attempt);
  }
  await followPaymentStatus(deps, { id: attempt.id, orderId: attempt.order_id, gateway: gateway.name }, status);
  const refreshed = await loadAttempt(deps.db, attemptId, orderId);
  return refreshed ? toView(refreshed) : undefined;
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

interface AttemptRow {
  id: string;
  order_id: string;
  status: AttemptStatus;
  gateway: string | null;
  method: string | null;
  gateway_payment_id: string | null;
  failure_category: FailureCategory | null;
  failure_code: string | null;
  next_action: PaymentNextAction | null;
  incentive_amount: string;
  click_id: string | null;
}

async function loadAttempt(db: Db | Tx, attemptId: string, orderId: string): Promise<AttemptRow | undefined> {
  const [row] = await rows<AttemptRow>(
    db,
    sql`select id, order_id, status, gateway, method, gateway_payment_id, failure_category, failure_code, next_action,
               incentive_amount::text as incentive_amount, click_id
        from payment_attempts where id = ${attemptId} and order_id = ${orderId} and source = 'retry_link'`,
  );
  return row;
}

function toView(row: AttemptRow): AttemptView {
  return {
    attemptId: row.id,
    orderId: row.order_id,
    status: row.status,
    method: row.method,
    failureCategory: row.failure_category,
    failureCode: row.failure_code,
    nextAction: storedAction(row.next_action),
  };
}

export async function closeAttempt(
  db: Db | Tx,
  attemptId: string,
  status: 'failed' | 'cancelled',
  failureCode: string | null,
  failureCategory: FailureCategory | null,
  now: Date,
): Promise<void> {
  await db.execute(
    sql`update payment_attempts set status = ${status}, failure_code = coalesce(${failureCode}, failure_code),
                                    failure_category = coalesce(${failureCategory}, failure_category), updated_at = ${now}
        where id = ${attemptId} and status = 'open'`,
  );
}

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
  | { kind: 'duplicate'; paymentId: string; refundId: string | null };

/**
 * Records a gateway's successful payment under the order lock (from a webhook or a status
 * poll, whichever comes first). A second payment for a paid order is refunded automatically:
 * a refund row is written in the same transaction, and the gateway is asked after commit.
 */
export async function settleSuccess(deps: RetryDeps, fact: SuccessFact): Promise<SettleResult> {
  const now = deps.clock.now();
  const result = await retryingTransaction(deps.db, async (tx): Promise<SettleResult> => {
    await tx.execute(sql`select id from orders where id = ${fact.orderId} for update`);
    const attempt = fact.attemptId ? await loadAttempt(tx, fact.attemptId, fact.orderId) : undefined;
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
      sql`insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, requested_by,
                               created_at, updated_at)
          values (${refundId}, ${fact.orderId}, ${recorded.paymentId}, ${fact.amount}, ${fact.currency}, 'duplicate',
                  'pending', ${`dup-${recorded.paymentId}`}, 'recoup', ${now}, ${now})`,
    );
    return { kind: 'duplicate', paymentId: recorded.paymentId, refundId };
  });
  // A reminder already on its way when the payment committed: answer once its provider answered.
  await settleInFlightSends(deps.db, { orderId: fact.orderId }, deps.inFlightWait);
  if (result.kind === 'duplicate' && result.refundId) {
    await submitRefund(deps, result.refundId);
  }
  return result;
}

/** Asks the gateway for a refund row's money back; safe to repeat (the refund key is idempotent). */
export async function submitRefund(deps: RetryDeps, refundId: string): Promise<void> {
  const [refund] = await rows<{
    id: string;
    amount: string;
    currency: string;
    reason: string;
    refund_key: string;
    status: string;
    gateway: string | null;
    external_id: string;
  }>(
    deps.db,
    sql`select f.id, f.amount::text as amount, f.currency, f.reason, f.refund_key, f.status, p.gateway, p.external_id
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
