import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';

/**
 * The suppression list and the consent ledger.
 *
 * A suppression row holds either the address itself (normalised: trimmed, emails lower-cased,
 * phone separators removed) or, once its customer was forgotten, `sha256:<hex>` of that
 * normalised address. Lookups always match both, so an erased customer stays opted out
 * without recoup keeping the address. Storing only the hash for everybody would work too, but
 * the suppression list would then be unreadable for ops; the hash is the forgotten case only.
 */

/** Why an address is suppressed; shown as the reason of a `suppressed` message. */
export type SuppressionReason = 'stop_reply' | 'email_unsubscribe';

/** opt_out | opt_in */
export type ConsentAction = 'opt_out' | 'opt_in';
/** How the customer told us (the `consent_events.source` values). */
export type ConsentSource = 'sms_reply' | 'email_one_click' | 'email_page' | 'ops';

export { addressForms, addressHash, hashPrefix, isHashedAddress, normaliseAddress } from '../domain/addresses.js';
import { addressForms, normaliseAddress } from '../domain/addresses.js';

/**
 * The suppressed channels among a customer's current addresses, with the suppression's reason.
 * Used by the dispatcher before it chooses a channel.
 */
export async function findSuppressions(
  db: DbOrTx,
  contacts: Partial<Record<Channel, string | null | undefined>>,
): Promise<Map<Channel, string>> {
  const conditions = (Object.entries(contacts) as Array<[Channel, string | null | undefined]>)
    .filter((entry): entry is [Channel, string] => typeof entry[1] === 'string' && entry[1].length > 0)
    .map(([channel, address]) => sql`(channel = ${channel} and address in ${inList(addressForms(channel, address))})`);
  const found = new Map<Channel, string>();
  if (conditions.length === 0) return found;
  const matches = await rows<{ channel: Channel; reason: string }>(
    db,
    sql`select channel, reason from suppressions where ${sql.join(conditions, sql` or `)} order by created_at`,
  );
  for (const match of matches) if (!found.has(match.channel)) found.set(match.channel, match.reason);
  return found;
}

/** Adds the address to the suppression list. True when it was not suppressed before. */
export async function suppress(
  db: DbOrTx,
  entry: { channel: Channel; address: string; reason: SuppressionReason; at: Date },
): Promise<boolean> {
  const existing = await findSuppressions(db, { [entry.channel]: entry.address });
  if (existing.has(entry.channel)) return false;
  const inserted = await rows<{ address: string }>(
    db,
    sql`insert into suppressions (channel, address, reason, created_at)
        values (${entry.channel}, ${normaliseAddress(entry.channel, entry.address)}, ${entry.reason}, ${entry.at})
        on conflict (channel, address) do nothing
        returning address`,
  );
  return inserted.length > 0;
}

/** Removes every form of the address from the suppression list. True when one was removed. */
export async function unsuppress(db: DbOrTx, entry: { channel: Channel; address: string }): Promise<boolean> {
  const deleted = await rows<{ address: string }>(
    db,
    sql`delete from suppressions
        where channel = ${entry.channel} and address in ${inList(addressForms(entry.channel, entry.address))}
        returning address`,
  );
  return deleted.length > 0;
}

/** One row of the consent ledger: when, how and in answer to which message. */
export async function recordConsent(
  db: DbOrTx,
  entry: {
    customerId: string | null;
    channel: Channel;
    address: string;
    action: ConsentAction;
    source: ConsentSource;
    keyword?: string | null;
    messageId?: string | null;
    at: Date;
  },
): Promise<string> {
  const id = `con_${randomBytes(12).toString('hex')}`;
  await db.execute(
    sql`insert into consent_events (id, customer_id, channel, address, action, source, keyword, message_id, at)
        values (${id}, ${entry.customerId}, ${entry.channel}, ${normaliseAddress(entry.channel, entry.address)},
                ${entry.action}, ${entry.source}, ${entry.keyword ?? null}, ${entry.messageId ?? null}, ${entry.at})`,
  );
  return id;
}

/** `(a, b, c)` for an `in` clause; callers never pass an empty list. */
function inList(values: string[]) {
  return sql`(${sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  )})`;
}
