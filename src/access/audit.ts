import type { Principal } from './auth.js';
import { auditLog } from '../db/schema.js';
import type { DbOrTx } from '../db/tx.js';
import { newId } from '../platform/ids.js';

/** One admin change: who did what to which thing, with its state before and after. */
export interface AuditEntry {
  /**
   * Who: `key:<key id>` (see `principalActor`), `cli:<os user>`, `customer:<id>`, or `link:<message id>`
   * (whoever held a retry link ops issued by hand).
   */
  actor: string;
  /** What, as `<thing>.<past tense>`: `key.created`, `key.revoked`, `cadence.activated`. */
  action: string;
  /** Which thing, as `<kind>:<id>`: `key:key_…`, `cadence:default`. */
  subject: string;
  /** The subject's state before and after the change; never secrets. Omitted: null. */
  before?: unknown;
  after?: unknown;
  at: Date;
}

/**
 * Appends one row to `audit_log`. Pass the transaction that makes the change, so the change and
 * its record commit (or roll back) together. Returns the row's id.
 */
export async function audit(db: DbOrTx, entry: AuditEntry): Promise<string> {
  const id = newId('aud');
  await db.insert(auditLog).values({
    id,
    at: entry.at,
    actor: entry.actor,
    action: entry.action,
    subject: entry.subject,
    before: entry.before ?? null,
    after: entry.after ?? null,
  });
  return id;
}

/** The audit actor for a caller: `key:<key id>`, whether it came with a bearer key or a console session. */
export function principalActor(principal: Principal): string {
  return `key:${principal.keyId}`;
}
