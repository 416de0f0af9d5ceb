import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory } from '../domain/vocabulary.js';
import type { PaymentNextAction } from './payment-gateway.js';

export type AttemptStatus = 'open' | 'succeeded' | 'failed' | 'cancelled';

/** What an attempt's pages and the polling script are told about it. */
export interface AttemptView {
  attemptId: string;
  orderId: string;
  status: AttemptStatus;
  method: string | null;
  failureCategory: FailureCategory | null;
  failureCode: string | null;
  nextAction: PaymentNextAction | null;
}

/** A retry-link payment attempt as stored. */
export interface AttemptRow {
  id: string;
  order_id: string;
  status: AttemptStatus;
  gateway: string | null;
  method: string | null;
  gateway_payment_id: string | null;
  failure_category: FailureCategory | null;
  failure_code: string | null;
  next_action: PaymentNextAction | null;
  /** What the attempt asked the gateway for, after coupon and incentive (minor units). */
  amount: string;
  currency: string;
  incentive_amount: string;
  click_id: string | null;
}

/** The order's retry-link attempt with this id, if it is one. */
export async function loadAttempt(db: Db | Tx, attemptId: string, orderId: string): Promise<AttemptRow | undefined> {
  const [row] = await rows<AttemptRow>(
    db,
    sql`select id, order_id, status, gateway, method, gateway_payment_id, failure_category, failure_code, next_action,
               amount::text as amount, currency, incentive_amount::text as incentive_amount, click_id
        from payment_attempts where id = ${attemptId} and order_id = ${orderId} and source = 'retry_link'`,
  );
  return row;
}

export function toAttemptView(row: AttemptRow): AttemptView {
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

/** Closes an open attempt as failed or cancelled; an attempt already closed stays as it is. */
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

/** A next action read back from jsonb: dates come back as strings. */
export function storedAction(json: PaymentNextAction | null): PaymentNextAction | null {
  if (json?.type === 'qr') return { ...json, expiresAt: new Date(json.expiresAt) };
  return json;
}
