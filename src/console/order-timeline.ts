import { sql } from 'drizzle-orm';
import type { ConfiguredKey } from '../access/auth.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { opsLinkChannel } from '../domain/vocabulary.js';
import { loadOrderView, type OrderView } from '../orders/order-view.js';
import { mismatches } from '../payments/settle-success.js';
import { orderSubject } from '../recoveries/ops-actions.js';
import { actorNames } from './actor-names.js';
import { masked, maskedJson, money, utcText, type AddressFingerprint } from './format.js';
import { shopToldEntries } from './order-webhook-entries.js';

/**
 * An order's whole story for the console: the order view ops get from the API
 * (src/orders/order-view.ts), plus what only the console shows: the events the shop sent, the
 * customer, delivery details of every message (price, segments, link state), the retry-link
 * clicks, the audit entries about the order and its customer, and what the shop was told by
 * webhook (each outbound event and its deliveries). `entries` merges all of it into
 * one list in time order. Every address in it is masked already (and audit values too).
 */
export interface OrderTimeline {
  view: OrderView;
  customer: {
    id: string;
    name: string | null;
    /** Masked. */
    email: string | null;
    /** Masked. */
    phone: string | null;
    locale: string | null;
    timezone: string | null;
    emailBadReason: string | null;
    phoneBadReason: string | null;
    forgottenAt: Date | null;
  } | null;
  entries: TimelineEntry[];
}

export type TimelineKind =
  'event' | 'recovery' | 'message' | 'delivery' | 'click' | 'attempt' | 'payment' | 'refund' | 'audit' | 'webhook';

/** One line of the story: when, what kind, a title and labelled details. */
export interface TimelineEntry {
  at: Date;
  kind: TimelineKind;
  title: string;
  /** `ok`, `warn`, `bad` or `plain`: how the page colours it. */
  tone: 'ok' | 'warn' | 'bad' | 'plain';
  /** A warning shown beside the title, e.g. `accepted after payment`. */
  flag?: string | undefined;
  /** `href`: a console page the value links to (ops pages only: dropped for other readers). */
  details: Array<{ label: string; value: string; href?: string }>;
}

interface EventRow {
  id: string;
  type: string;
  occurred_at: Date;
  received_at: Date;
  outcome: string;
  failure_code: string | null;
  method: string | null;
  gateway: string | null;
}

interface FlaggedGatewayEvent {
  gateway: string;
  event_id: string;
  outcome: string;
  received_at: Date;
  gateway_payment_id: string | null;
  amount: string | null;
  currency: string | null;
}

interface MessageExtra {
  id: string;
  to_address: string | null;
  price_amount: string | null;
  price_currency: string | null;
  segments: number | null;
  link_expires_at: Date | null;
  link_revoked_at: Date | null;
  claimed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

interface ClickRow {
  id: string;
  message_id: string;
  at: Date;
  user_agent: string | null;
}

interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  subject: string;
  before: unknown;
  after: unknown;
}

// Entries at the same instant: cause before effect. A shop's own payment attempt comes with its
// event, before the recovery that event starts; recoup's attempts follow the click that made them.
const kindOrder: Record<TimelineKind, number> = {
  event: 0,
  recovery: 1,
  audit: 2,
  message: 3,
  delivery: 4,
  click: 5,
  attempt: 6,
  payment: 7,
  refund: 8,
  // What the shop was told follows the change it tells of.
  webhook: 9,
};
const shopAttemptOrder = 0.5;
// An event for the shop bears the start of the transaction that wrote it (Postgres's now()), so it
// can be stamped a little before the change it tells of (stamped later in that transaction, or by
// the app's clock): it is placed as if this much later, after its cause; its time shows unchanged.
const toldAfterMs = 1_000;

/** How audit entries are shown: who the configured keys are, and the addresses' fingerprints. */
export interface TimelineOptions {
  configuredKeys?: readonly ConfiguredKey[];
  /** Without it, audited addresses are masked only. */
  fingerprint?: AddressFingerprint;
}

export async function loadOrderTimeline(
  db: Db,
  orderId: string,
  options: TimelineOptions = {},
): Promise<OrderTimeline | undefined> {
  const view = await loadOrderView(db, orderId);
  if (!view) return undefined;
  const customerId = view.order.customer_id;
  const [customer] = await rows<{
    id: string;
    name: string | null;
    email: string | null;
    phone: string | null;
    locale: string | null;
    timezone: string | null;
    email_bad_reason: string | null;
    phone_bad_reason: string | null;
    forgotten_at: Date | null;
  }>(db, sql`select * from customers where id = ${customerId}`);
  const events = await rows<EventRow>(
    db,
    sql`select id, type, occurred_at, received_at, outcome,
               payload->'payment'->>'failure_code' as failure_code,
               payload->'payment'->>'method' as method,
               payload->'payment'->>'gateway' as gateway
        from events where order_id = ${orderId} order by occurred_at, received_at`,
  );
  const extras = await rows<MessageExtra>(
    db,
    sql`select id, to_address, price_amount::text as price_amount, price_currency, segments, link_expires_at,
               link_revoked_at, claimed_at, created_at, updated_at
        from messages where order_id = ${orderId}`,
  );
  const clicks = await rows<ClickRow>(
    db,
    sql`select id, message_id, at, user_agent from clicks where order_id = ${orderId} order by at`,
  );
  // Gateway payments that were not settled because they did not match what recoup asked for:
  // named by the order in the gateway's metadata, or paying one of the order's attempts.
  const flaggedPayments = await rows<FlaggedGatewayEvent>(
    db,
    sql`select g.gateway, g.event_id, g.outcome, g.received_at, g.gateway_payment_id,
               g.event->>'amount' as amount, g.event->>'currency' as currency
        from gateway_events g
        where g.outcome in (${sql.join(
          mismatches.map((m) => sql`${m}`),
          sql`, `,
        )})
          and (g.event->>'orderId' = ${orderId}
               or exists (select 1 from payment_attempts a
                          where a.order_id = ${orderId} and a.gateway = g.gateway
                            and a.gateway_payment_id = g.gateway_payment_id))
        order by g.received_at`,
  );
  const customerSubject = `customer:${customerId}`;
  const audits = await rows<AuditRow>(
    db,
    sql`select id, at, actor, action, subject, before, after from audit_log
        where subject in (${orderSubject(orderId)}, ${customerSubject}) or actor = ${customerSubject}
        order by at`,
  );

  const names = await actorNames(
    db,
    audits.map((a) => a.actor),
    options.configuredKeys ?? [],
  );

  const entries: TimelineEntry[] = [];
  const d = (v: string | null | undefined) => (v ? new Date(v) : null);
  const iso = utcText;

  for (const e of events) {
    entries.push({
      at: e.occurred_at,
      kind: 'event',
      title: `Shop event ${e.type}`,
      tone: e.outcome === 'stale' || e.outcome === 'order_already_final' ? 'warn' : 'plain',
      details: compact([
        ['event id', e.id],
        ['outcome', e.outcome],
        ['received', iso(e.received_at)],
        ['failure code', e.failure_code],
        ['method', e.method],
        ['gateway', e.gateway],
      ]),
    });
  }

  const recovery = view.recovery;
  if (recovery) {
    entries.push({
      at: new Date(recovery.started_at),
      kind: 'recovery',
      title: `Recovery started on ${recovery.cadence} v${recovery.cadence_version}`,
      tone: 'plain',
      details: compact([
        ['recovery id', recovery.id],
        ['failure category', recovery.failure_category],
        ['expires', iso(recovery.expires_at)],
      ]),
    });
    if (recovery.ended_at) {
      entries.push({
        at: new Date(recovery.ended_at),
        kind: 'recovery',
        title: `Recovery ended: ${recovery.state}${recovery.ended_reason ? ` (${recovery.ended_reason})` : ''}`,
        tone: recovery.state === 'recovered' ? 'ok' : recovery.state === 'stopped' ? 'warn' : 'plain',
        details: compact([['at step', String(recovery.step)]]),
      });
    }
  }

  const extraOf = new Map(extras.map((x) => [x.id, x]));
  for (const m of view.messages) {
    const x = extraOf.get(m.id);
    const sentAt = d(m.sent_at);
    const linkState = !x?.link_expires_at
      ? null
      : x.link_revoked_at
        ? `revoked ${iso(x.link_revoked_at)}`
        : `valid until ${iso(x.link_expires_at)}`;
    // The provider accepted it after the order was paid or cancelled (src/messages/after-payment.ts).
    const closedAt = view.order.paid_at ?? view.order.cancelled_at;
    const flag =
      m.after_payment_at === null ? undefined : `accepted after ${view.order.paid_at ? 'payment' : 'cancellation'}`;
    entries.push({
      at: sentAt ?? d(m.planned_at) ?? x?.created_at ?? new Date(0),
      kind: 'message',
      title:
        m.channel === opsLinkChannel
          ? 'Retry link issued by ops (nothing sent)'
          : `${m.channel === 'sms' ? 'SMS' : 'Email'} ${m.step === null ? '(fresh link)' : `step ${m.step}`} · ${m.template} · ${m.status}`,
      tone: flag ? 'bad' : messageTone(m.status),
      flag,
      details: compact([
        ['message id', m.id],
        ['status', m.status],
        ['reason', m.reason],
        ['to', masked(x?.to_address)],
        ['locale', m.locale],
        ['planned', iso(m.planned_at)],
        ['sent', iso(m.sent_at)],
        [
          flag ?? '',
          flag
            ? `accepted ${iso(m.sent_at)}, order ${view.order.paid_at ? 'paid' : 'cancelled'} ${iso(closedAt)}`
            : null,
        ],
        ['attempts', m.attempts > 1 ? String(m.attempts) : null],
        ['segments', x?.segments === null || x?.segments === undefined ? null : String(x.segments)],
        ['price', price(x)],
        ['retry link', linkState],
      ]),
    });
    // The provider's delivery callback moved it on after the send (no callback log is kept: its last word).
    if (sentAt && x && (m.status === 'delivered' || m.status === 'failed') && x.updated_at > sentAt) {
      entries.push({
        at: x.updated_at,
        kind: 'delivery',
        title: `Delivery report: ${m.status}${m.reason ? ` (${m.reason})` : ''}`,
        tone: m.status === 'delivered' ? 'ok' : 'bad',
        details: compact([
          ['message id', m.id],
          ['price', price(x)],
        ]),
      });
    }
  }

  for (const c of clicks) {
    entries.push({
      at: c.at,
      kind: 'click',
      title: 'Retry link clicked',
      tone: 'plain',
      details: compact([
        ['message id', c.message_id],
        ['click id', c.id],
        ['browser', c.user_agent ? c.user_agent.slice(0, 120) : null],
      ]),
    });
  }

  const shopAttempts = new Set<TimelineEntry>();
  for (const a of view.attempts) {
    const entry: TimelineEntry = {
      at: new Date(a.occurred_at),
      kind: 'attempt',
      title: `Payment attempt (${a.source === 'retry_link' ? 'retry link' : 'shop'}) · ${a.status}`,
      tone: a.status === 'succeeded' ? 'ok' : a.status === 'failed' ? 'bad' : 'plain',
      details: compact([
        ['attempt id', a.id],
        ['method', a.method],
        ['gateway', a.gateway],
        ['amount', money(a.amount, a.currency)],
        ['failure', a.failure_code ? `${a.failure_code} (${a.failure_category ?? 'unclassified'})` : null],
      ]),
    };
    entries.push(entry);
    if (a.source !== 'retry_link') shopAttempts.add(entry);
  }

  for (const p of view.payments) {
    entries.push({
      at: new Date(p.paid_at),
      kind: 'payment',
      title: `Payment received${p.duplicate ? ' (duplicate)' : ''} · attribution ${p.attribution}`,
      tone: p.duplicate ? 'warn' : 'ok',
      details: compact([
        ['payment id', p.id],
        ['amount', money(p.amount, p.currency)],
        ['method', p.method],
        ['gateway', p.gateway],
        ['step', p.step === null ? null : String(p.step)],
        ['channel', p.channel],
        ['message id', p.message_id],
        ['click id', p.click_id],
      ]),
    });
  }

  for (const f of flaggedPayments) {
    entries.push({
      at: f.received_at,
      kind: 'payment',
      title: `Gateway payment not settled · ${f.outcome === 'amount_mismatch' ? 'amount differs' : 'unknown attempt'}`,
      tone: 'bad',
      flag: f.outcome,
      details: compact([
        ['gateway', f.gateway],
        ['gateway payment id', f.gateway_payment_id],
        ['event id', f.event_id],
        ['paid', f.amount && f.currency ? money(Number(f.amount), f.currency) : null],
      ]),
    });
  }

  for (const r of view.refunds) {
    entries.push({
      at: new Date(r.created_at),
      kind: 'refund',
      title: `Refund ${r.status} · ${r.reason}`,
      tone: r.status === 'failed' ? 'bad' : 'warn',
      details: compact([
        ['refund id', r.id],
        ['payment id', r.payment_id],
        ['amount', money(r.amount, r.currency)],
      ]),
    });
  }

  for (const a of audits) {
    entries.push({
      at: a.at,
      kind: 'audit',
      title: `${a.action} by ${names.get(a.actor) ?? a.actor}`,
      tone: 'plain',
      details: compact([
        ['actor', a.actor],
        ['subject', a.subject],
        ['before', maskedJson(a.before, options.fingerprint)],
        ['after', maskedJson(a.after, options.fingerprint)],
      ]),
    });
  }

  entries.push(...(await shopToldEntries(db, orderId)));

  const rank = (e: TimelineEntry) => (shopAttempts.has(e) ? shopAttemptOrder : kindOrder[e.kind]);
  const placed = (e: TimelineEntry) => e.at.getTime() + (e.kind === 'webhook' ? toldAfterMs : 0);
  entries.sort((a, b) => placed(a) - placed(b) || rank(a) - rank(b));

  return {
    view,
    customer: customer
      ? {
          id: customer.id,
          name: customer.name,
          email: masked(customer.email),
          phone: masked(customer.phone),
          locale: customer.locale,
          timezone: customer.timezone,
          emailBadReason: customer.email_bad_reason,
          phoneBadReason: customer.phone_bad_reason,
          forgottenAt: customer.forgotten_at,
        }
      : null,
    entries,
  };
}

function price(x: MessageExtra | undefined): string | null {
  if (!x?.price_amount) return null;
  return x.price_currency ? money(Number(x.price_amount), x.price_currency) : `${x.price_amount} (minor units)`;
}

function messageTone(status: string): TimelineEntry['tone'] {
  if (status === 'delivered' || status === 'sent') return 'ok';
  if (status === 'failed' || status === 'unknown') return 'bad';
  if (status === 'suppressed' || status === 'skipped') return 'warn';
  return 'plain';
}

/** Labelled values, empty ones dropped. */
function compact(pairs: Array<[string, string | null | undefined]>): TimelineEntry['details'] {
  return pairs
    .filter((p): p is [string, string] => typeof p[1] === 'string' && p[1] !== '')
    .map(([label, value]) => ({ label, value }));
}
