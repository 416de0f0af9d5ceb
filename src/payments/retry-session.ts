import { sql } from 'drizzle-orm';
import type { CountryCode } from 'libphonenumber-js/max';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import type { OrderItem } from '../db/schema.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { paymentMethods } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import type { Logger } from '../platform/logger.js';
import type { InFlightWait } from '../messages/in-flight.js';
import { lookupRetryToken } from '../retry-links/retry-token.js';
import { chargeBasisOf, linkCharge, type Charge } from '../pricing/charge.js';
import type { PaymentGateways } from './gateways.js';
import { customerCountry, methodsInCustomerOrder, preselectedMethod } from './method-choice.js';

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
  /** Where the customer most likely is (number on file, locale, currency), when anything tells. */
  country: CountryCode | undefined;
  shopName: string;
  description: string;
  /** The cart lines the shop sent (event `order.items`); empty when it sent none. */
  items: OrderItem[];
  currency: string;
  charge: Charge;
  /** The last failure, for a sentence in customer language. */
  lastFailure: { category: FailureCategory; code: string | null } | null;
  /**
   * Methods the step offered that a configured gateway takes in this currency, in the order the
   * customer most likely pays with (src/payments/method-choice.ts).
   */
  methods: PaymentMethod[];
  /** Pre-selected method, or none: never one that the last failure says cannot work. */
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

/** The row behind a retry link: its message, recovery, order and customer. */
export interface LinkRow {
  message_id: string;
  step: number | null;
  /** `sms` or `email`; `ops` for a link ops issued by hand. */
  channel: string;
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
  incentive_amount: string | null;
  incentive_granted_at: Date | null;
  /** When the link was issued (its message's claim): the link charges what its reminder quoted then. */
  link_issued_at: Date | null;
  items: OrderItem[] | null;
  last_failure_category: FailureCategory | null;
  last_failure_code: string | null;
  last_method: string | null;
  customer_id: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
}

/** Loads a link's row; `lock` takes the order's row lock (inside a transaction). */
export async function loadLinkRow(db: Db | Tx, messageId: string, lock: boolean): Promise<LinkRow | undefined> {
  const [row] = await rows<LinkRow>(
    db,
    sql`select m.id as message_id, m.step, m.channel, m.claimed_at as link_issued_at,
               r.id as recovery_id, r.cadence_name, r.cadence_version, r.failure_category,
               o.id as order_id, o.status as order_status, o.amount::text as amount, o.currency, o.description,
               o.coupon_code, o.coupon_discount_amount::text as coupon_discount_amount, o.coupon_expires_at, o.items,
               o.last_failure_category, o.last_failure_code, o.last_method,
               i.amount::text as incentive_amount, i.granted_at as incentive_granted_at,
               c.id as customer_id, c.email, c.phone, c.locale
        from messages m
        join recoveries r on r.id = m.recovery_id
        join orders o on o.id = m.order_id
        join customers c on c.id = o.customer_id
        left join incentives i on i.order_id = o.id
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

/**
 * The page's view of an open link (also read under the order's lock when a payment starts). It
 * charges what the link's reminder quoted (linkCharge, src/pricing/charge.ts).
 */
export async function buildView(
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
  const locale = row.locale ?? deps.defaultLocale;
  const country = customerCountry({ phone: row.phone, locale, currency: row.currency });
  const methods = methodsInCustomerOrder(
    offered.filter((m) => deps.gateways.forMethod(m, row.currency) !== undefined),
    country,
  );
  const lastFailure = row.last_failure_category
    ? { category: row.last_failure_category, code: row.last_failure_code }
    : null;
  const failedMethod = paymentMethods.find((m) => m === row.last_method);
  const defaultMethod = preselectedMethod(methods, lastFailure && { ...lastFailure, method: failedMethod });
  return {
    token,
    messageId: row.message_id,
    recoveryId: row.recovery_id,
    orderId: row.order_id,
    locale,
    country,
    shopName: deps.shopName,
    description: row.description ?? '',
    items: row.items ?? [],
    currency: row.currency,
    charge: linkCharge(chargeBasisOf(row), row.link_issued_at ?? now),
    lastFailure,
    methods,
    defaultMethod,
    contact: { email: row.email, phone: row.phone },
    expiresAt,
  };
}

/**
 * Records that a person clicked the link: its page's script reported the page open, or the page
 * posted a form. A GET alone never gets here (link scanners and prefetchers fetch every link).
 * One click per message: later reports return the first click's id and change nothing.
 */
export async function recordClick(deps: RetryDeps, view: RetryView, userAgent: string | undefined): Promise<string> {
  return deps.db.transaction(async (tx) => {
    // Two tabs, or the script's report racing the form's POST, must not both insert.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`recoup:click:${view.messageId}`}))`);
    const [existing] = await rows<{ id: string }>(
      tx,
      // The order's index finds them; a message belongs to one order.
      sql`select id from clicks where order_id = ${view.orderId} and message_id = ${view.messageId}
          order by at, id limit 1`,
    );
    if (existing) return existing.id;
    const id = newId('clk');
    await tx.execute(
      sql`insert into clicks (id, message_id, recovery_id, order_id, user_agent, at)
          values (${id}, ${view.messageId}, ${view.recoveryId}, ${view.orderId}, ${userAgent?.slice(0, 300) ?? null},
                  ${deps.clock.now()})`,
    );
    return id;
  });
}
