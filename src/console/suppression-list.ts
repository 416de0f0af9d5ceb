import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { audit } from '../access/audit.js';
import {
  addressForms,
  isHashedAddress,
  normaliseAddress,
  recordConsent,
  unsuppress,
} from '../compliance/suppressions.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import { channels, type Channel } from '../domain/vocabulary.js';
import { RecoupError } from '../platform/errors.js';
import { masked } from './format.js';

/**
 * The suppression list as ops see it, and taking an address off it on a customer's behalf.
 * Rows are named on the page by `ref`, a hash of channel and address, so neither the page nor
 * its forms carry the address itself.
 */

export interface SuppressionRow {
  ref: string;
  channel: Channel;
  /** Masked, or "erased (forgotten customer)". */
  address: string;
  reason: string;
  createdAt: Date;
  /** Forgotten customers' suppressions hold a hash only; they stay (nobody can opt that address back in). */
  removable: boolean;
}

export interface SuppressionPage {
  rows: SuppressionRow[];
  total: number;
}

/** `sha256(channel ":" address)` in hex: how a page names a row without showing the address. */
export function suppressionRef(channel: string, address: string): string {
  return createHash('sha256').update(`${channel}:${address}`, 'utf8').digest('hex');
}

/** Newest first; `q` (an exact email or phone) narrows to that address. */
export async function listSuppressions(
  db: DbOrTx,
  options: { q?: string; limit?: number } = {},
): Promise<SuppressionPage> {
  const q = options.q?.trim() ?? '';
  const where =
    q === ''
      ? sql`true`
      : sql`(channel = 'email' and address in ${inList(addressForms('email', q))})
            or (channel = 'sms' and address in ${inList(addressForms('sms', q))})`;
  const found = await rows<{ channel: Channel; address: string; reason: string; created_at: Date }>(
    db,
    sql`select channel, address, reason, created_at from suppressions where ${where}
        order by created_at desc, channel, address limit ${options.limit ?? 200}`,
  );
  const [count] = await rows<{ total: number }>(
    db,
    sql`select count(*)::int as total from suppressions where ${where}`,
  );
  return {
    total: count?.total ?? 0,
    rows: found.map((r) => ({
      ref: suppressionRef(r.channel, r.address),
      channel: r.channel,
      address: masked(r.address) ?? '',
      reason: r.reason,
      createdAt: r.created_at,
      removable: !isHashedAddress(r.address),
    })),
  };
}

export interface RemovedSuppression {
  channel: Channel;
  /** Masked. */
  address: string;
  customerIds: string[];
}

/**
 * Opts an address back in on the customer's behalf (they asked ops, e.g. by phone): removes the
 * suppression, lifts an `unsubscribed` bad-address mark as a START reply would, records an `opt_in`
 * with source `ops` in the consent ledger (per customer holding the address, or one without a
 * customer) and audits `suppression.removed`, all in one transaction.
 *
 * Throws `not_found` for an unknown ref and `conflict` for a forgotten customer's hashed entry.
 */
export async function removeSuppression(
  db: Db,
  ref: string,
  change: { actor: string; at: Date },
): Promise<RemovedSuppression> {
  if (!/^[0-9a-f]{64}$/.test(ref)) throw new RecoupError('not_found', 'No such suppression');
  return db.transaction(async (tx) => {
    const [row] = await rows<{ channel: Channel; address: string; reason: string; created_at: Date }>(
      tx,
      sql`select channel, address, reason, created_at from suppressions
          where encode(sha256(convert_to(channel || ':' || address, 'UTF8')), 'hex') = ${ref}
          for update`,
    );
    const channel = channels.find((c) => c === row?.channel);
    if (!row || !channel) throw new RecoupError('not_found', 'No such suppression (removed already?)');
    if (isHashedAddress(row.address)) {
      throw new RecoupError(
        'conflict',
        "A forgotten customer's opt-out cannot be undone: recoup no longer knows the address",
      );
    }
    await unsuppress(tx, { channel, address: row.address });
    const column = channel === 'sms' ? sql`phone` : sql`email`;
    const badColumn = channel === 'sms' ? sql`phone_bad_reason` : sql`email_bad_reason`;
    const value = normaliseAddress(channel, row.address);
    const holders = await rows<{ id: string }>(
      tx,
      channel === 'email'
        ? sql`select id from customers where lower(${column}) = ${value} order by id`
        : sql`select id from customers where ${column} = ${value} order by id`,
    );
    if (holders.length > 0) {
      await tx.execute(
        sql`update customers set ${badColumn} = null
            where id in ${inList(holders.map((h) => h.id))} and ${badColumn} = 'unsubscribed'`,
      );
    }
    for (const customerId of holders.length > 0 ? holders.map((h) => h.id) : [null]) {
      await recordConsent(tx, {
        customerId,
        channel,
        address: row.address,
        action: 'opt_in',
        source: 'ops',
        at: change.at,
      });
    }
    const shown = masked(row.address) ?? '';
    const subjects = holders.length > 0 ? holders.map((h) => `customer:${h.id}`) : [`suppression:${channel}`];
    for (const subject of subjects) {
      await audit(tx, {
        actor: change.actor,
        action: 'suppression.removed',
        subject,
        // Masked: the consent ledger holds the address; the audit log only says which one it was.
        before: { channel, address: shown, reason: row.reason, suppressed_at: row.created_at.toISOString() },
        after: { channel, address: shown, opted_in_by: 'ops' },
        at: change.at,
      });
    }
    return { channel, address: shown, customerIds: holders.map((h) => h.id) };
  });
}

function inList(values: string[]) {
  return sql`(${sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  )})`;
}
