import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbOrTx } from '../../src/db/tx.js';
import { newId } from '../../src/platform/ids.js';
import { lookupRetryToken, newRetryToken, revokeRetryLinks } from '../../src/retry-links/retry-token.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const now = new Date('2026-11-25T12:00:00Z');
const hour = 3_600_000;

describe('lookupRetryToken', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.drop();
  });

  /** A sent message carrying a retry link, as dispatch records it. */
  async function messageWithLink(link: {
    expiresAt: Date | null;
    revokedAt?: Date;
    recoveryId?: string;
    step?: number;
  }) {
    const token = newRetryToken();
    const id = newId('msg');
    const recoveryId = link.recoveryId ?? newId('rec');
    await database.db.execute(
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                link_token, link_expires_at, link_revoked_at, attempts)
          values (${id}, ${recoveryId}, ${`ord_${id}`}, 'cus_1', ${link.step ?? 0}, 'sms', 'nudge', 'sent',
                  '+8613800138000', ${token}, ${link.expiresAt}, ${link.revokedAt ?? null}, 1)`,
    );
    return { token, id, recoveryId, orderId: `ord_${id}` };
  }

  it('answers malformed for anything that is not 22 base64url characters, without a query', async () => {
    const valid = await messageWithLink({ expiresAt: new Date(now.getTime() + hour) });
    const malformed = [
      '',
      'abc',
      valid.token.slice(0, 21),
      `${valid.token}A`,
      `${valid.token.slice(0, 21)}=`,
      `${valid.token.slice(0, 21)}/`,
      `${valid.token.slice(0, 21)}+`,
      ` ${valid.token.slice(1)}`,
      "' or 1=1 --aaaaaaaaaaa",
    ];
    // A database that fails any query: a malformed token is turned away before reaching it.
    const noQueries = {
      execute: () => Promise.reject(new Error('queried the database for a malformed token')),
    } as unknown as DbOrTx;
    for (const token of malformed) {
      expect(await lookupRetryToken(noQueries, token, now), token).toEqual({ valid: false, reason: 'malformed' });
    }
    expect(await lookupRetryToken(noQueries, valid.token, now).catch((err: Error) => err.message)).toBe(
      'queried the database for a malformed token',
    );
  });

  it('answers unknown for a well-formed token no message holds', async () => {
    expect(await lookupRetryToken(database.db, newRetryToken(), now)).toEqual({ valid: false, reason: 'unknown' });
  });

  it('resolves a live token to its message, recovery and order', async () => {
    const expiresAt = new Date(now.getTime() + hour);
    const link = await messageWithLink({ expiresAt });
    expect(await lookupRetryToken(database.db, link.token, now)).toEqual({
      valid: true,
      messageId: link.id,
      recoveryId: link.recoveryId,
      orderId: link.orderId,
      expiresAt,
    });
  });

  it('answers expired from the expiry instant on, and for a link with no expiry', async () => {
    const expiresAt = new Date(now.getTime() + hour);
    const link = await messageWithLink({ expiresAt });
    const justBefore = await lookupRetryToken(database.db, link.token, new Date(expiresAt.getTime() - 1));
    expect(justBefore.valid).toBe(true);
    const expired = { valid: false, reason: 'expired', messageId: link.id, recoveryId: link.recoveryId };
    expect(await lookupRetryToken(database.db, link.token, expiresAt)).toEqual(expired);
    expect(await lookupRetryToken(database.db, link.token, new Date(expiresAt.getTime() + 1))).toEqual(expired);

    const noExpiry = await messageWithLink({ expiresAt: null });
    expect(await lookupRetryToken(database.db, noExpiry.token, now)).toMatchObject({
      valid: false,
      reason: 'expired',
    });
  });

  it('answers revoked for a revoked link, even before its expiry', async () => {
    const link = await messageWithLink({
      expiresAt: new Date(now.getTime() + hour),
      revokedAt: new Date(now.getTime() - 1_000),
    });
    expect(await lookupRetryToken(database.db, link.token, now)).toEqual({
      valid: false,
      reason: 'revoked',
      messageId: link.id,
      recoveryId: link.recoveryId,
    });
  });

  it('revokes every link of one recovery and no other', async () => {
    const expiresAt = new Date(now.getTime() + hour);
    const first = await messageWithLink({ expiresAt });
    const second = await messageWithLink({ expiresAt, recoveryId: first.recoveryId, step: 1 });
    const other = await messageWithLink({ expiresAt });
    await revokeRetryLinks(database.db, first.recoveryId, now);
    expect(await lookupRetryToken(database.db, first.token, now)).toMatchObject({ reason: 'revoked' });
    expect(await lookupRetryToken(database.db, second.token, now)).toMatchObject({ reason: 'revoked' });
    expect(await lookupRetryToken(database.db, other.token, now)).toMatchObject({ valid: true });
  });
});
