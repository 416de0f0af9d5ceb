import { markReportDirty } from '../reports/rollup.js';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { BadAddressReason } from '../channels/provider-error.js';

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
  providerId: string;
  providerStatus: string;
  errorCode?: string | undefined;
  /** Set when the error says the number itself is unusable. */
  badAddress?: BadAddressReason | undefined;
  /** What the provider charged, when it says: minor units (rounded up) and exact micros. */
  price?: { amount: number; micros: number; currency: string } | undefined;
}

/**
 * Applies a provider's delivery callback to the message it names. Returns what happened,
 * so the webhook can answer 200 either way (an unknown SID is not the provider's problem).
 */
export async function applyDeliveryUpdate(
  db: Db,
  update: DeliveryUpdate,
  now: Date,
): Promise<'updated' | 'unchanged' | 'unknown_message'> {
  const next = twilioToRecoup[update.providerStatus];
  return db.transaction(async (tx) => {
    const [message] = await rows<{
      id: string;
      status: string;
      to_address: string | null;
      customer_id: string;
      sent_at: Date | null;
    }>(
      tx,
      sql`select id, status, to_address, customer_id, sent_at from messages
          where provider_id = ${update.providerId} for update`,
    );
    if (!message) return 'unknown_message';
    if (update.price) {
      // The price arrives on a late callback, whatever the status it carries. It replaces the
      // configured estimate, so the report bucket of the send must be rebuilt.
      await tx.execute(
        sql`update messages set price_amount = ${update.price.amount}, price_currency = ${update.price.currency},
                                cost_micros = ${update.price.micros}, cost_currency = ${update.price.currency},
                                cost_source = 'provider', updated_at = ${now}
            where id = ${message.id}`,
      );
      if (message.sent_at) await markReportDirty(tx, message.sent_at);
    }
    if (!next || (rank[next] ?? 0) <= (rank[message.status] ?? 3)) return 'unchanged';
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
    return 'updated';
  });
}
