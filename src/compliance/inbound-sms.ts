import { sql } from 'drizzle-orm';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';
import { parseSmsReply, replyLocale, type ReplyLocale, type SmsCommand } from './sms-keywords.js';
import { normaliseAddress, recordConsent, suppress, unsuppress } from './suppressions.js';

export interface InboundSms {
  /** Twilio's `MessageSid`: a message already acted on is not acted on again. */
  messageSid: string;
  /** The customer's number (Twilio's `From`, E.164). */
  from: string;
  body: string;
  /** Twilio's `OptOutType` (STOP / START / HELP): set when Advanced Opt-Out already answered. */
  optOutType?: string | undefined;
}

export interface InboundSmsResult {
  command: SmsCommand | 'none';
  /** The language to answer in. */
  locale: ReplyLocale;
  /** The opt-out or opt-in changed the suppression list (false for a repeated STOP). */
  changed: boolean;
  /** This very message was acted on before (a webhook delivered twice, or replayed): nothing was done. */
  repeat: boolean;
}

/**
 * Acts on a customer's reply. STOP (and the other opt-out keywords) suppresses the number at
 * once: the dispatcher checks suppressions when each step fires, so every active recovery of
 * every customer with this number stops using SMS (a later step goes by email where the cadence
 * allows switching, else it is recorded `suppressed`). START opts back in. Both are written to
 * the consent ledger with the keyword and the last message sent to the number. Only changes
 * are recorded, so a webhook Twilio delivers twice leaves one ledger row. A message whose SID was
 * seen before is ignored: the signature never expires, so a captured START replayed after a later
 * STOP would otherwise opt the customer back in.
 */
export async function handleInboundSms(
  deps: { db: Db; clock: Clock; defaultLocale: string; inFlightWait?: InFlightWait | undefined },
  sms: InboundSms,
): Promise<InboundSmsResult> {
  const result = await actOnReply(deps, sms);
  // An SMS to this number already on its way: answer the STOP once its provider answered, so that
  // nothing is accepted for the number after the customer was told they will get no more.
  if (result.command === 'opt_out') {
    await settleInFlightSends(deps.db, { channel: 'sms', address: sms.from }, deps.inFlightWait);
  }
  return result;
}

async function actOnReply(deps: { db: Db; clock: Clock; defaultLocale: string }, sms: InboundSms) {
  const parsed = parseSmsReply(sms.body, sms.optOutType);
  const from = normaliseAddress('sms', sms.from);
  return deps.db.transaction(async (tx): Promise<InboundSmsResult> => {
    // In the transaction that acts: a message whose effect failed is not marked seen, and a
    // concurrent copy waits here for the first one's commit.
    const fresh = await rows<{ message_sid: string }>(
      tx,
      sql`insert into inbound_sms_seen (message_sid, received_at) values (${sms.messageSid}, ${deps.clock.now()})
          on conflict do nothing returning message_sid`,
    );
    // The reminder the customer is answering: its language is the one they read.
    const [last] = await rows<{ id: string; customer_id: string; locale: string | null }>(
      tx,
      sql`select id, customer_id, locale from messages
          where channel = 'sms' and to_address = ${from} and status in ('sent', 'delivered', 'failed', 'unknown')
          order by coalesce(sent_at, created_at) desc limit 1`,
    );
    const [customer] = await rows<{ id: string; locale: string | null }>(
      tx,
      last
        ? sql`select id, locale from customers where id = ${last.customer_id}`
        : sql`select id, locale from customers where phone = ${from} order by updated_at desc limit 1`,
    );
    const locale =
      replyLocale(last?.locale) ??
      replyLocale(customer?.locale) ??
      parsed?.locale ??
      replyLocale(deps.defaultLocale) ??
      'en';
    if (fresh.length === 0) return { command: 'none', locale, changed: false, repeat: true };
    if (!parsed) return { command: 'none', locale, changed: false, repeat: false };

    const now = deps.clock.now();
    const consent = {
      customerId: customer?.id ?? last?.customer_id ?? null,
      channel: 'sms' as const,
      address: from,
      source: 'sms_reply' as const,
      keyword: parsed.keyword,
      messageId: last?.id ?? null,
      at: now,
    };
    let changed = false;
    if (parsed.command === 'opt_out') {
      changed = await suppress(tx, { channel: 'sms', address: from, reason: 'stop_reply', at: now });
      if (changed) await recordConsent(tx, { ...consent, action: 'opt_out' });
    } else if (parsed.command === 'opt_in') {
      changed = await unsuppress(tx, { channel: 'sms', address: from });
      // A STOP Twilio saw first (error 21610) marked the number unusable; START at Twilio lifts that too.
      const cleared = await rows<{ id: string }>(
        tx,
        sql`update customers set phone_bad_reason = null
            where phone = ${from} and phone_bad_reason = 'unsubscribed' returning id`,
      );
      changed ||= cleared.length > 0;
      if (changed) await recordConsent(tx, { ...consent, action: 'opt_in' });
    }
    return { command: parsed.command, locale, changed, repeat: false };
  });
}
