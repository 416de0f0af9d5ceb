import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { OrderItem } from '../db/schema.js';
import { rows } from '../db/rows.js';
import { maskAddress } from '../platform/logger.js';

/** The timeline ops read for one order (GET /v1/orders/:id). Addresses are masked. */
export interface OrderView {
  order: {
    id: string;
    status: string;
    amount: number;
    currency: string;
    description: string | null;
    coupon_code: string | null;
    /** The cart lines, as the latest event that carried them had them. */
    items: OrderItem[] | null;
    /** The shop platform whose connector brought the order in; null through /v1/events. */
    platform: string | null;
    /** The shop's own page for paying it. */
    payment_url: string | null;
    customer_id: string;
    last_failure: { code: string | null; category: string | null; message: string | null } | null;
    paid_at: string | null;
    cancelled_at: string | null;
    created_at: string;
  };
  recovery: {
    id: string;
    state: string;
    cadence: string;
    cadence_version: number;
    failure_category: string;
    step: number;
    next_run_at: string | null;
    started_at: string;
    expires_at: string;
    ended_at: string | null;
    ended_reason: string | null;
    /** In the control group: tracked, never messaged. */
    holdout: boolean;
  } | null;
  messages: Array<{
    id: string;
    /** null for a fresh link sent at the customer's request. */
    step: number | null;
    channel: string;
    template: string;
    locale: string | null;
    status: string;
    reason: string | null;
    to: string | null;
    attempts: number;
    planned_at: string | null;
    sent_at: string | null;
    /**
     * Set when the provider accepted the message (`sent_at`) after the order was paid or cancelled:
     * when recoup found out.
     */
    after_payment_at: string | null;
    /**
     * The message's retry link: its state and expiry, never the link itself, which is a bearer
     * credential (it shows the customer's contact unmasked and lets its holder change it).
     */
    link: { state: 'open' | 'expired' | 'revoked'; expires_at: string | null } | null;
  }>;
  /** Money received (the ledger), with attribution. */
  payments: Array<{
    id: string;
    gateway: string | null;
    method: string | null;
    amount: number;
    currency: string;
    paid_at: string;
    duplicate: boolean;
    attribution: string;
    step: number | null;
    channel: string | null;
    message_id: string | null;
    click_id: string | null;
  }>;
  refunds: Array<{
    id: string;
    payment_id: string;
    amount: number;
    currency: string;
    reason: string;
    status: string;
    created_at: string;
  }>;
  attempts: Array<{
    id: string;
    source: string;
    method: string | null;
    gateway: string | null;
    status: string;
    amount: number;
    currency: string;
    failure_code: string | null;
    failure_category: string | null;
    occurred_at: string;
  }>;
}

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

export async function loadOrderView(db: Db, orderId: string): Promise<OrderView | undefined> {
  const [order] = await rows<Record<string, unknown> & { amount: string }>(
    db,
    sql`select *, amount::text as amount from orders where id = ${orderId}`,
  );
  if (!order) return undefined;
  const [recovery] = await rows<Record<string, unknown>>(db, sql`select * from recoveries where order_id = ${orderId}`);
  const messageRows = await rows<Record<string, unknown>>(
    db,
    sql`select *, case when link_revoked_at is not null then 'revoked'
                       when link_expires_at <= now() then 'expired' else 'open' end as link_state
        from messages where order_id = ${orderId} order by step, created_at`,
  );
  const attemptRows = await rows<Record<string, unknown> & { amount: string }>(
    db,
    sql`select *, amount::text as amount from payment_attempts where order_id = ${orderId} order by occurred_at, created_at`,
  );
  const paymentRows = await rows<Record<string, unknown> & { amount: string }>(
    db,
    sql`select *, amount::text as amount from payments where order_id = ${orderId} order by paid_at, created_at`,
  );
  const refundRows = await rows<Record<string, unknown> & { amount: string }>(
    db,
    sql`select *, amount::text as amount from refunds where order_id = ${orderId} order by created_at`,
  );
  const s = (v: unknown) => (v === null || v === undefined ? null : String(v));
  const d = (v: unknown) => iso(v as Date | null);
  return {
    order: {
      id: String(order.id),
      status: String(order.status),
      amount: Number(order.amount),
      currency: String(order.currency),
      description: s(order.description),
      coupon_code: s(order.coupon_code),
      items: (order.items as OrderItem[] | null) ?? null,
      platform: s(order.platform),
      payment_url: s(order.payment_url),
      customer_id: String(order.customer_id),
      last_failure:
        order.last_failure_code || order.last_failure_category
          ? {
              code: s(order.last_failure_code),
              category: s(order.last_failure_category),
              message: s(order.last_failure_message),
            }
          : null,
      paid_at: d(order.paid_at),
      cancelled_at: d(order.cancelled_at),
      created_at: d(order.created_at) ?? '',
    },
    recovery: recovery
      ? {
          id: String(recovery.id),
          state: String(recovery.state),
          cadence: String(recovery.cadence_name),
          cadence_version: Number(recovery.cadence_version),
          failure_category: String(recovery.failure_category),
          step: Number(recovery.step_index),
          next_run_at: d(recovery.next_run_at),
          started_at: d(recovery.started_at) ?? '',
          expires_at: d(recovery.expires_at) ?? '',
          ended_at: d(recovery.ended_at),
          ended_reason: s(recovery.ended_reason),
          holdout: recovery.holdout === true,
        }
      : null,
    messages: messageRows.map((m) => ({
      id: String(m.id),
      step: m.step === null || m.step === undefined ? null : Number(m.step),
      channel: String(m.channel),
      template: String(m.template),
      locale: s(m.locale),
      status: String(m.status),
      reason: s(m.reason),
      to: maskAddress(s(m.to_address)),
      attempts: Number(m.attempts),
      planned_at: d(m.planned_at),
      sent_at: d(m.sent_at),
      after_payment_at: d(m.after_payment_at),
      link: m.link_token
        ? { state: m.link_state as 'open' | 'expired' | 'revoked', expires_at: d(m.link_expires_at) }
        : null,
    })),
    payments: paymentRows.map((p) => ({
      id: String(p.id),
      gateway: s(p.gateway),
      method: s(p.method),
      amount: Number(p.amount),
      currency: String(p.currency),
      paid_at: d(p.paid_at) ?? '',
      duplicate: Boolean(p.duplicate),
      attribution: String(p.attribution),
      step: p.step === null || p.step === undefined ? null : Number(p.step),
      channel: s(p.channel),
      message_id: s(p.message_id),
      click_id: s(p.click_id),
    })),
    refunds: refundRows.map((r) => ({
      id: String(r.id),
      payment_id: String(r.payment_id),
      amount: Number(r.amount),
      currency: String(r.currency),
      reason: String(r.reason),
      status: String(r.status),
      created_at: d(r.created_at) ?? '',
    })),
    attempts: attemptRows.map((a) => ({
      id: String(a.id),
      source: String(a.source),
      method: s(a.method),
      gateway: s(a.gateway),
      status: String(a.status),
      amount: Number(a.amount),
      currency: String(a.currency),
      failure_code: s(a.failure_code),
      failure_category: s(a.failure_category),
      occurred_at: d(a.occurred_at) ?? '',
    })),
  };
}
