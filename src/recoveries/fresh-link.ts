import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import { nextSendTime } from '../cadences/send-window.js';
import { capCounted } from '../cadences/step-rules.js';
import type { EmailSender } from '../channels/email-sender.js';
import type { SmsSender } from '../channels/sms-sender.js';
import { findSuppressions } from '../compliance/suppressions.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import type { OrderItem } from '../db/schema.js';
import { rows } from '../db/rows.js';
import type { Channel, FailureCategory } from '../domain/vocabulary.js';
import { paymentMethods } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import type { Logger } from '../platform/logger.js';
import { chargeBasisOf, linkCharge } from '../pricing/charge.js';
import { flagRemindersAfterPayment, type ReminderAfterPaymentObserver } from '../messages/after-payment.js';
import type { MessageContext } from '../messages/message-context.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import { failureDetail } from './classify-failure.js';
import { guardedSend, type Rendered } from './guarded-send.js';
import { claimStart, defaultSendLease, type ClaimStart, type SendLease } from './send-lease.js';
import { capLookBackMs, readCapSends } from './step-store.js';
import { newRetryToken, retryUrl } from '../retry-links/retry-token.js';

export interface FreshLinkDeps {
  db: Db;
  sms: SmsSender;
  email: EmailSender;
  renderer: TemplateRenderer;
  /** The recovery's cadence gives the quiet hours and daily cap a fresh link keeps to. */
  cadences: CadenceBook;
  clock: Clock;
  /** Timezone for customers without one (DEFAULT_TIMEZONE): their local day and quiet hours. */
  defaultTimezone: string;
  publicUrl: string;
  shopName: string;
  /** How long the new link works (RETRY_LINK_TTL). */
  retryLinkTtlMs: number;
  logger: Logger;
  /** Locale for customers without one. Default `en`. */
  defaultLocale?: string;
  /** The send lease (src/recoveries/send-lease.ts). Default defaultSendLease. */
  sendLease?: SendLease;
  /** Told of a link accepted after its order's payment, once recorded (metrics, logs). */
  onReminderAfterPayment?: ReminderAfterPaymentObserver | undefined;
}

/**
 * - `sent`: a new link went out (or may have: a provider outcome that is unknown counts as sent,
 *   since it is never re-sent blindly);
 * - `too_soon`: one went out for this recovery less than `freshLinkIntervalMs` ago;
 * - `quiet_hours`: it is inside the cadence's quiet hours for the customer; they end at `until`
 *   (an instant; `timezone` is the customer's, to show it in);
 * - `daily_limit`: the customer had `freshLinksPerCustomerPerDay` fresh links today, or the
 *   cadence's daily cap is reached (both count the customer's local calendar day);
 * - `not_possible`: nothing to send (order paid or cancelled, recovery stopped, no usable or a
 *   suppressed address, the old link still works) or the provider refused it.
 */
export type FreshLinkResult =
  | { kind: 'sent' | 'too_soon' | 'daily_limit' | 'not_possible' }
  | { kind: 'quiet_hours'; until: Date; timezone: string };

function result(kind: Exclude<FreshLinkResult['kind'], 'quiet_hours'>): FreshLinkResult {
  return { kind };
}

/** At most one fresh link per recovery in this window: a button must not become an SMS cannon. */
export const freshLinkIntervalMs = 10 * 60_000;

/**
 * At most this many fresh links per customer per local calendar day, over all their recoveries:
 * the per-recovery interval alone would still allow about 144 a day to one phone.
 */
export const freshLinksPerCustomerPerDay = 3;

/** The reminder template a fresh link goes out with. */
export const freshLinkTemplate = 'nudge';

interface SourceRow {
  message_id: string;
  /** A `Channel`, or `ops` for a link ops issued by hand. */
  channel: string;
  link_expires_at: Date | null;
  link_revoked_at: Date | null;
  recovery_id: string;
  recovery_state: string;
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
  items: OrderItem[] | null;
  last_failure_code: string | null;
  customer_id: string;
  name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
}

interface Claim {
  messageId: string;
  claimId: string;
  orderId: string;
  recoveryId: string;
  customerId: string;
  channel: Channel;
  to: string;
  locale: string;
  context: MessageContext;
  claimedAt: ClaimStart;
}

/**
 * Sends a new retry link for the message behind an expired or revoked link, when the customer
 * asks for one on the expired-link page. It goes to the customer's current address on the old
 * message's channel (the other channel when that address is missing or known bad), as the
 * `nudge` template, recorded as a message outside the cadence (step NULL).
 *
 * Follows the dispatcher's rules: decided under the order's row lock, recorded as `sending` before
 * the provider call, and handed over through the same guarded send (src/recoveries/guarded-send.ts),
 * so that no link goes out after the order's payment, a STOP or a change of address was answered.
 * The button is the customer's (or anyone holding the old link's), so the recovery's cadence holds
 * for it as for a step: its quiet hours and daily cap, counted as the dispatcher counts them; and
 * `freshLinksPerCustomerPerDay` bounds the links themselves.
 */
export async function sendFreshLink(deps: FreshLinkDeps, messageId: string): Promise<FreshLinkResult> {
  const claimedAt = claimStart();
  const decided = await deps.db.transaction(async (tx): Promise<FreshLinkResult | Claim> => {
    const now = deps.clock.now();
    // The order row lock first, as everywhere: it serialises two clicks of the button too.
    const locked = await rows<{ id: string }>(
      tx,
      sql`select o.id from orders o join messages m on m.order_id = o.id where m.id = ${messageId} for update of o`,
    );
    if (locked.length === 0) return result('not_possible');
    const [row] = await rows<SourceRow>(
      tx,
      sql`select m.id as message_id, m.channel, m.link_expires_at, m.link_revoked_at,
                 r.id as recovery_id, r.state as recovery_state, r.failure_category, r.cadence_name,
                 r.cadence_version,
                 o.id as order_id, o.status as order_status, o.amount::text as amount, o.currency, o.description,
                 o.coupon_code, o.coupon_discount_amount::text as coupon_discount_amount, o.coupon_expires_at,
                 o.items, o.last_failure_code, i.amount::text as incentive_amount, i.granted_at as incentive_granted_at,
                 c.id as customer_id, c.name, c.email, c.phone, c.locale, c.timezone,
                 c.email_bad_reason, c.phone_bad_reason
          from messages m
          join recoveries r on r.id = m.recovery_id
          join orders o on o.id = m.order_id
          join customers c on c.id = o.customer_id
          left join incentives i on i.order_id = o.id
          where m.id = ${messageId}`,
    );
    if (!row || row.order_status !== 'pending') return result('not_possible');
    // Ops stopped it (and revoked its links), or it ended with the order: no new links.
    if (row.recovery_state !== 'active' && row.recovery_state !== 'exhausted') return result('not_possible');
    const stillValid = !row.link_revoked_at && row.link_expires_at !== null && row.link_expires_at > now;
    if (stillValid) return result('not_possible');

    const [recent] = await rows<{ n: number }>(
      tx,
      sql`select count(*)::int as n from messages
          where recovery_id = ${row.recovery_id} and step is null
            and status in ('sending', 'sent', 'delivered', 'unknown')
            and created_at > ${new Date(now.getTime() - freshLinkIntervalMs)}`,
    );
    if ((recent?.n ?? 0) > 0) return result('too_soon');

    const contact = currentContact(row);
    if (!contact) return result('not_possible');
    const suppressed = await findSuppressions(tx, { [contact.channel]: contact.to });
    if (suppressed.has(contact.channel)) return result('not_possible');
    if (!deps.renderer.has(freshLinkTemplate)) {
      deps.logger.error({ template: freshLinkTemplate }, 'fresh link template missing');
      return result('not_possible');
    }

    // The customer lock (taken always, not only under a cap) also serialises two orders' buttons
    // for the per-customer limit below.
    const sends = await readCapSends(tx, { customerId: row.customer_id, customer: row, now, lock: true });
    const timezone = row.timezone ?? deps.defaultTimezone;
    const freshSends = await rows<{ at: Date }>(
      tx,
      sql`select coalesce(sent_at, claimed_at) as at from messages
          where customer_id = ${row.customer_id} and step is null
            and status in ('sending', 'sent', 'delivered', 'unknown')
            and coalesce(sent_at, claimed_at) > ${new Date(now.getTime() - capLookBackMs)}`,
    );
    const customerLimit = nextSendTime(
      { timezone, maxPerDay: freshLinksPerCustomerPerDay, spreadMs: 0 },
      { planned: now, recentSends: freshSends.map((r) => r.at), jitterKey: row.recovery_id },
    );
    if (customerLimit.deferredBy) return result('daily_limit');
    // A cadence version that is gone sets no window; the limits above still hold.
    const cadence = (await deps.cadences.version(row.cadence_name, row.cadence_version, tx))?.cadence;
    const window = nextSendTime(
      { timezone, quietHours: cadence?.quietHours, maxPerDay: cadence?.maxMessagesPerDay, spreadMs: 0 },
      { planned: now, recentSends: capCounted(sends, contact.channel), jitterKey: row.recovery_id },
    );
    // Refused rather than queued: the customer is looking at the page and can ask again then.
    if (window.deferredBy === 'daily_cap') return result('daily_limit');
    if (window.deferredBy === 'quiet_hours') return { kind: 'quiet_hours', until: window.at, timezone };

    const locale = deps.renderer.resolveLocale(freshLinkTemplate, row.locale, deps.defaultLocale ?? 'en');
    const token = newRetryToken();
    const id = newId('msg');
    const claimId = randomBytes(8).toString('hex');
    await tx.execute(
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, locale, status,
                                to_address, link_token, link_expires_at, attempts, claim_id, planned_at, claimed_at,
                                lease_started_at, created_at, updated_at)
          values (${id}, ${row.recovery_id}, ${row.order_id}, ${row.customer_id}, null, ${contact.channel},
                  ${freshLinkTemplate}, ${locale}, 'sending', ${contact.to}, ${token},
                  ${new Date(now.getTime() + deps.retryLinkTtlMs)}, 1, ${claimId}, ${now},
                  ${now}, clock_timestamp(), ${now}, ${now})`,
    );
    return {
      messageId: id,
      claimId,
      claimedAt,
      orderId: row.order_id,
      recoveryId: row.recovery_id,
      customerId: row.customer_id,
      channel: contact.channel,
      to: contact.to,
      locale,
      context: {
        shop: { name: deps.shopName },
        customer: { name: row.name ?? '' },
        order: {
          id: row.order_id,
          description: row.description ?? '',
          // What the new link charges, issued now: the page shows exactly this amount.
          amount: linkCharge(chargeBasisOf(row), now).total,
          currency: row.currency,
          couponCode: row.coupon_code ?? undefined,
          items: row.items,
        },
        failureCategory: row.failure_category,
        failureDetail: failureDetail(row.failure_category, row.last_failure_code),
        offerMethods: [...paymentMethods],
        retryUrl: retryUrl(deps.publicUrl, token),
      },
    };
  });
  if ('kind' in decided) return decided;
  return send(deps, decided);
}

function currentContact(row: SourceRow): { channel: Channel; to: string } | undefined {
  const usable = (channel: Channel): string | undefined => {
    if (channel === 'sms') return row.phone && !row.phone_bad_reason ? row.phone : undefined;
    return row.email && !row.email_bad_reason ? row.email : undefined;
  };
  // The old message's channel first; a link ops issued came by neither: SMS first, then email.
  const first: Channel = row.channel === 'email' ? 'email' : 'sms';
  for (const channel of [first, first === 'sms' ? 'email' : 'sms'] as const) {
    const to = usable(channel);
    if (to) return { channel, to };
  }
  return undefined;
}

async function send(deps: FreshLinkDeps, claim: Claim): Promise<FreshLinkResult> {
  const setStatus = (status: string, reason: string | null) =>
    deps.db.execute(
      sql`update messages set status = ${status}, reason = ${reason}, claim_id = null, updated_at = ${deps.clock.now()}
          where id = ${claim.messageId} and claim_id = ${claim.claimId} and status = 'sending'`,
    );
  let rendered: Rendered;
  try {
    if (claim.channel === 'sms') {
      const sms = deps.renderer.renderSms(freshLinkTemplate, claim.locale, claim.context);
      rendered = { sms: sms.body, segments: sms.segments.segments };
    } else {
      rendered = deps.renderer.renderEmail(freshLinkTemplate, claim.locale, claim.context);
    }
  } catch (err) {
    deps.logger.error({ err, messageId: claim.messageId }, 'fresh link template failed to render');
    await setStatus('failed', 'template_error');
    return result('not_possible');
  }

  const [answer] = await guardedSend(
    {
      db: deps.db,
      sms: deps.sms,
      email: deps.email,
      logger: deps.logger,
      lease: deps.sendLease ?? defaultSendLease,
    },
    [
      {
        claim: {
          messageId: claim.messageId,
          claimId: claim.claimId,
          orderId: claim.orderId,
          recoveryId: claim.recoveryId,
          step: null,
          channel: claim.channel,
          to: claim.to,
          claimedAt: claim.claimedAt,
        },
        rendered,
      },
    ],
  );
  const outcome = await answer;
  if (!outcome || outcome.kind === 'stale' || outcome.kind === 'blocked') return result('not_possible');
  if (outcome.kind === 'refused') {
    const error = outcome.error;
    const log = { messageId: claim.messageId, channel: claim.channel, code: error.providerCode };
    if (error.outcome === 'unknown') {
      deps.logger.warn({ ...log, err: error }, 'fresh link outcome unknown; not re-sending');
      await setStatus('unknown', error.providerCode);
      return result('sent');
    }
    // `retry` too: a fresh link is not rescheduled; the customer can ask again at once.
    deps.logger.warn({ ...log, outcome: error.outcome }, 'fresh link not sent');
    await deps.db.transaction(async (tx) => {
      await tx.execute(
        sql`update messages set status = 'failed', reason = ${error.providerCode}, claim_id = null,
                                updated_at = ${deps.clock.now()}
            where id = ${claim.messageId} and claim_id = ${claim.claimId} and status = 'sending'`,
      );
      if (error.badAddress) {
        const column = claim.channel === 'sms' ? sql`phone_bad_reason` : sql`email_bad_reason`;
        const address = claim.channel === 'sms' ? sql`phone` : sql`email`;
        await tx.execute(
          sql`update customers set ${column} = ${error.badAddress}
              where id = ${claim.customerId} and ${address} = ${claim.to}`,
        );
      }
    });
    return result('not_possible');
  }
  const { receipt } = outcome;
  const now = deps.clock.now();
  const afterPayment = await deps.db.transaction(async (tx) => {
    await tx.execute(
      sql`update messages set status = 'sent', provider_id = ${receipt.providerId}, sent_at = ${receipt.acceptedAt},
                              reason = null, claim_id = null, updated_at = ${now}
          where id = ${claim.messageId} and ((status = 'sending' and claim_id = ${claim.claimId}) or status = 'unknown')`,
    );
    return flagRemindersAfterPayment(tx, [claim.messageId], now);
  });
  if (afterPayment.length > 0) deps.onReminderAfterPayment?.(afterPayment);
  deps.logger.info({ messageId: claim.messageId, channel: claim.channel }, 'fresh retry link sent');
  return result('sent');
}
