import { markReportDirty } from '../reports/rollup.js';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { BadAddressReason } from '../channels/provider-error.js';
import type { ProviderPrice } from '../channels/sms-sender.js';
import {
  flagRemindersAfterPayment,
  type ReminderAfterPayment,
  type ReminderAfterPaymentObserver,
} from './after-payment.js';
import { minorUnitDigits } from '../platform/format-amount.js';

/** Twilio's message statuses, mapped onto recoup's. Earlier ones change nothing we record. */
const twilioToRecoup: Record<string, 'sent' | 'delivered' | 'failed' | undefined> = {
  queued: 'sent',
  accepted: 'sent',
  scheduled: 'sent',
  sending: 'sent',
  sent: 'sent',
  delivered: 'delivered',
  undelivered: 'failed',
  failed: 'failed',
};

// Forward only: a late `sent` callback never undoes `delivered`, and final states stay final.
const rank: Record<string, number> = { sending: 0, unknown: 0, sent: 1, delivered: 2, failed: 2 };

export interface DeliveryUpdate {
  /** recoup's message id, when the report names it (a callback URL that carries it, a lookup). */
  messageId?: string | undefined;
  providerId: string;
  providerStatus: string;
  errorCode?: string | undefined;
  /** Set when the error says the number itself is unusable. */
  badAddress?: BadAddressReason | undefined;
  /** What the provider charged, when it says. */
  price?: ProviderPrice | undefined;
  /**
   * When the provider took the message, if the report says (a lookup does, a callback does not: then
   * the time of the report). Used only for a message whose acceptance recoup never heard of.
   */
  acceptedAt?: Date | undefined;
}

/**
 * Applies a provider's report on one of its messages (a delivery callback, a lookup) to the message
 * it names: by recoup's message id when the report carries it, else by the provider's id. Returns
 * what happened, so the webhook can answer 200 either way (an unknown SID is not the provider's problem).
 *
 * A report for a message still `unknown` (the provider's answer was lost) or `sending` (its worker
 * died mid-send) is the proof that the provider took it: its provider id and sent time are recorded
 * with the status.
 */
export async function applyDeliveryUpdate(
  db: Db,
  update: DeliveryUpdate,
  now: Date,
  onReminderAfterPayment?: ReminderAfterPaymentObserver,
): Promise<'updated' | 'unchanged' | 'unknown_message'> {
  const { result, afterPayment } = await applyInTransaction(db, update, now);
  if (afterPayment.length > 0) onReminderAfterPayment?.(afterPayment);
  return result;
}

async function applyInTransaction(
  db: Db,
  update: DeliveryUpdate,
  now: Date,
): Promise<{ result: 'updated' | 'unchanged' | 'unknown_message'; afterPayment: ReminderAfterPayment[] }> {
  const next = twilioToRecoup[update.providerStatus];
  const none: ReminderAfterPayment[] = [];
  return db.transaction(async (tx) => {
    const [message] = await rows<{
      id: string;
      status: string;
      provider_id: string | null;
      to_address: string | null;
      customer_id: string;
      sent_at: Date | null;
    }>(
      tx,
      sql`select id, status, provider_id, to_address, customer_id, sent_at from messages
          where ${update.messageId === undefined ? sql`provider_id = ${update.providerId}` : sql`id = ${update.messageId}`}
          for update`,
    );
    if (!message) return { result: 'unknown_message', afterPayment: none };
    // One message, one provider message: a report on another one under the same id is not about this one.
    if (message.provider_id !== null && message.provider_id !== update.providerId) {
      return { result: 'unknown_message', afterPayment: none };
    }

    let sentAt = message.sent_at;
    let result: 'updated' | 'unchanged' = 'unchanged';
    if (message.provider_id === null && (message.status === 'unknown' || message.status === 'sending')) {
      sentAt = sentAt ?? update.acceptedAt ?? now;
      await tx.execute(
        sql`update messages set provider_id = ${update.providerId}, sent_at = ${sentAt}, updated_at = ${now}
            where id = ${message.id}`,
      );
      // Counted as sent from now on, in the bucket of its sending (src/reports/rollup.ts).
      await markReportDirty(tx, sentAt);
      result = 'updated';
    }
    if (update.price) {
      // The price arrives on a late callback, whatever the status it carries. It replaces the
      // configured estimate, so the report bucket of the send must be rebuilt.
      const { micros, currency } = update.price;
      const amount = Math.ceil(micros / 10 ** (6 - minorUnitDigits(currency)));
      await tx.execute(
        sql`update messages set price_amount = ${amount}, price_currency = ${currency},
                                cost_micros = ${micros}, cost_currency = ${currency},
                                cost_source = 'provider', updated_at = ${now}
            where id = ${message.id}`,
      );
      if (sentAt) await markReportDirty(tx, sentAt);
    }
    if (!next || (rank[next] ?? 0) <= (rank[message.status] ?? 3)) return { result, afterPayment: none };
    await tx.execute(
      sql`update messages set status = ${next}, reason = ${next === 'failed' ? (update.errorCode ?? 'undelivered') : null},
                              updated_at = ${now}
          where id = ${message.id}`,
    );
    if (next === 'failed' && update.badAddress && message.to_address) {
      await tx.execute(
        sql`update customers set phone_bad_reason = ${update.badAddress}
            where id = ${message.customer_id} and phone = ${message.to_address}`,
      );
    }
    // Now sent or delivered: accepted after its order's payment, maybe (the late acceptance a lost answer hides).
    return { result: 'updated', afterPayment: await flagRemindersAfterPayment(tx, [message.id], now) };
  });
}
