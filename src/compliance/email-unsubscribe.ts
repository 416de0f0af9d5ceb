import { sql } from 'drizzle-orm';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import { findSuppressions, recordConsent, suppress } from './suppressions.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';

/** The email an unsubscribe token names. */
export interface UnsubscribeTarget {
  messageId: string;
  customerId: string;
  /** Where the email went; null once the customer was forgotten. */
  address: string | null;
  /** The email's language, for the page. */
  locale: string | null;
  alreadySuppressed: boolean;
}

/** Reads what the confirmation page shows. Changes nothing (link scanners open every link). */
export async function loadUnsubscribeTarget(db: DbOrTx, messageId: string): Promise<UnsubscribeTarget | undefined> {
  const [message] = await rows<{ id: string; customer_id: string; to_address: string | null; locale: string | null }>(
    db,
    sql`select id, customer_id, to_address, locale from messages where id = ${messageId} and channel = 'email'`,
  );
  if (!message) return undefined;
  const suppressed = message.to_address ? await findSuppressions(db, { email: message.to_address }) : new Map();
  return {
    messageId: message.id,
    customerId: message.customer_id,
    address: message.to_address,
    locale: message.locale,
    alreadySuppressed: message.to_address === null || suppressed.has('email'),
  };
}

export type UnsubscribeOutcome = 'unsubscribed' | 'already' | 'unknown_message';

/**
 * Suppresses the address the email went to and writes the consent ledger row. Repeating it
 * (a mail client retrying the one-click POST) changes nothing more.
 */
export async function unsubscribeEmail(
  deps: { db: Db; clock: Clock; inFlightWait?: InFlightWait | undefined },
  messageId: string,
  source: 'email_one_click' | 'email_page',
): Promise<{ outcome: UnsubscribeOutcome; target: UnsubscribeTarget | undefined }> {
  const result = await suppressForMessage(deps, messageId, source);
  // An email to this address already on its way: answer once its provider answered, so that
  // nothing is accepted for it after the customer was told they are unsubscribed.
  const address = result.target?.address;
  if (address) await settleInFlightSends(deps.db, { channel: 'email', address }, deps.inFlightWait);
  return result;
}

async function suppressForMessage(
  deps: { db: Db; clock: Clock },
  messageId: string,
  source: 'email_one_click' | 'email_page',
): Promise<{ outcome: UnsubscribeOutcome; target: UnsubscribeTarget | undefined }> {
  return deps.db.transaction(async (tx) => {
    const target = await loadUnsubscribeTarget(tx, messageId);
    if (!target) return { outcome: 'unknown_message', target };
    // A forgotten customer's address is gone, and with it every reminder: nothing left to stop.
    if (!target.address) return { outcome: 'already', target };
    const now = deps.clock.now();
    const added = await suppress(tx, {
      channel: 'email',
      address: target.address,
      reason: 'email_unsubscribe',
      at: now,
    });
    if (!added) return { outcome: 'already', target };
    await recordConsent(tx, {
      customerId: target.customerId,
      channel: 'email',
      address: target.address,
      action: 'opt_out',
      source,
      messageId: target.messageId,
      at: now,
    });
    return { outcome: 'unsubscribed', target: { ...target, alreadySuppressed: true } };
  });
}
