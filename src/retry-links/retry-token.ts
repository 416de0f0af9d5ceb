import { randomBase64url } from '../platform/random.js';
import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';

/**
 * Retry-link tokens are random 128-bit capabilities (22 base64url characters, so a link
 * stays short in an SMS), stored on the message they belong to. The token carries no
 * personal data; the row names the recovery and message, and holds expiry and revocation.
 */
export function newRetryToken(): string {
  return randomBase64url(16);
}

const tokenPattern = /^[A-Za-z0-9_-]{22}$/;

export function retryUrl(publicUrl: string, token: string): string {
  return `${publicUrl}/r/${token}`;
}

export type RetryLinkLookup =
  | { valid: true; messageId: string; recoveryId: string; orderId: string; expiresAt: Date }
  | { valid: false; reason: 'malformed' | 'unknown' | 'expired' | 'revoked'; messageId?: string; recoveryId?: string };

/** Resolves a token to its message; never says more about a bad token than why it is bad. */
export async function lookupRetryToken(db: DbOrTx, token: string, now: Date): Promise<RetryLinkLookup> {
  if (!tokenPattern.test(token)) return { valid: false, reason: 'malformed' };
  const [row] = await rows<{
    id: string;
    recovery_id: string;
    order_id: string;
    link_expires_at: Date | null;
    link_revoked_at: Date | null;
  }>(
    db,
    sql`select id, recovery_id, order_id, link_expires_at, link_revoked_at from messages where link_token = ${token}`,
  );
  if (!row) return { valid: false, reason: 'unknown' };
  const ids = { messageId: row.id, recoveryId: row.recovery_id };
  if (row.link_revoked_at) return { valid: false, reason: 'revoked', ...ids };
  if (!row.link_expires_at || row.link_expires_at <= now) return { valid: false, reason: 'expired', ...ids };
  return { valid: true, ...ids, orderId: row.order_id, expiresAt: row.link_expires_at };
}

/** Revokes every link of a recovery (e.g. when ops stop it). */
export async function revokeRetryLinks(db: DbOrTx, recoveryId: string, now: Date): Promise<void> {
  await db.execute(
    sql`update messages set link_revoked_at = ${now} where recovery_id = ${recoveryId} and link_revoked_at is null`,
  );
}
