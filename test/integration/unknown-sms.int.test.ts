import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SmsLookup, SmsLookupResult } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { UnknownSmsResolver } from '../../src/messages/unknown-sms.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const minute = 60_000;
const claimedAt = new Date('2026-11-25T04:00:00Z');

describe('UnknownSmsResolver', () => {
  let database: TestDatabase;
  const clock = new FixedClock(claimedAt);
  let answers: Map<string, SmsLookupResult | Error>;
  let asked: SmsLookup[];
  let seq = 0;

  const resolver = (batchSize?: number) =>
    new UnknownSmsResolver({
      db: database.db,
      lookup: async (query) => {
        asked.push(query);
        const answer = answers.get(query.messageId) ?? { kind: 'not_found' };
        if (answer instanceof Error) throw answer;
        return answer;
      },
      clock,
      logger: createLogger('silent'),
      afterMs: 2 * minute,
      untilMs: 24 * 60 * minute,
      ...(batchSize === undefined ? {} : { batchSize }),
    });

  async function unknownSms(options: { channel?: string; status?: string; claimed?: Date } = {}): Promise<string> {
    seq += 1;
    const id = `msg_unknown_${seq}`;
    const at = options.claimed ?? claimedAt;
    await database.db.execute(
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, reason,
                                to_address, link_token, attempts, claimed_at, created_at, updated_at)
          values (${id}, ${`rec_${seq}`}, ${`ord_${seq}`}, ${`cus_${seq}`}, 0, ${options.channel ?? 'sms'}, 'nudge',
                  ${options.status ?? 'unknown'}, 'ETIMEDOUT', '+8613800138000', ${`token_${seq}`}, 1, ${at}, ${at},
                  ${at})`,
    );
    return id;
  }

  async function message(id: string) {
    const [row] = await rows<{
      status: string;
      reason: string | null;
      provider_id: string | null;
      sent_at: Date | null;
      cost_micros: string | null;
      cost_source: string | null;
    }>(
      database.db,
      sql`select status, reason, provider_id, sent_at, cost_micros::text as cost_micros, cost_source
          from messages where id = ${id}`,
    );
    return row;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database.drop());
  beforeEach(async () => {
    await database.db.execute(sql`delete from messages`);
    await database.db.execute(sql`delete from orders`);
    await database.db.execute(sql`delete from outbound_events`);
    clock.set(claimedAt);
    answers = new Map();
    asked = [];
  });

  it('records a message the provider holds as a report of it would: status, provider id, sent time, price', async () => {
    const id = await unknownSms();
    const acceptedAt = new Date(claimedAt.getTime() + 3_500);
    answers.set(id, {
      kind: 'found',
      providerId: 'SM0123',
      acceptedAt,
      providerStatus: 'sent',
      price: { micros: 7_500, currency: 'USD' },
    });
    clock.set(new Date(claimedAt.getTime() + 3 * minute));
    expect(await resolver().runOnce()).toEqual({ looked: 1, found: 1, notSent: 0, errors: 0 });
    expect(asked).toEqual([{ messageId: id, to: '+8613800138000', claimedAt, bodyMarker: 'token_1' }]);
    expect(await message(id)).toEqual({
      status: 'sent',
      reason: null,
      provider_id: 'SM0123',
      sent_at: acceptedAt,
      cost_micros: '7500',
      cost_source: 'provider',
    });
  });

  it('flags a message the provider took after its order was paid, by the time the provider says', async () => {
    const late = await unknownSms();
    const early = await unknownSms();
    const paidAt = new Date(claimedAt.getTime() + 6_000);
    for (const id of [late, early]) {
      await database.db.execute(
        sql`insert into orders (id, customer_id, amount, currency, status, state_at, paid_at)
            select order_id, customer_id, 12900, 'CNY', 'paid', ${paidAt}, ${paidAt} from messages where id = ${id}`,
      );
    }
    // Twilio created one 8 s after the claim (after the payment), the other 3.5 s after it.
    const lateAcceptance = new Date(claimedAt.getTime() + 8_000);
    answers.set(late, {
      kind: 'found',
      providerId: 'SM0late',
      acceptedAt: lateAcceptance,
      providerStatus: 'delivered',
    });
    answers.set(early, {
      kind: 'found',
      providerId: 'SM0early',
      acceptedAt: new Date(claimedAt.getTime() + 3_500),
      providerStatus: 'delivered',
    });
    const seen: string[] = [];
    clock.set(new Date(claimedAt.getTime() + 3 * minute));
    await new UnknownSmsResolver({
      db: database.db,
      lookup: async (query) => answers.get(query.messageId) as SmsLookupResult,
      clock,
      logger: createLogger('silent'),
      afterMs: 2 * minute,
      untilMs: 24 * 60 * minute,
      onReminderAfterPayment: (reminders) => seen.push(...reminders.map((r) => r.messageId)),
    }).runOnce();

    const flags = await rows<{ id: string; after_payment_at: Date | null }>(
      database.db,
      sql`select id, after_payment_at from messages where id in (${late}, ${early}) order by id`,
    );
    expect(Object.fromEntries(flags.map((f) => [f.id, f.after_payment_at]))).toEqual({
      [late]: clock.now(),
      [early]: null,
    });
    const events = await rows<{ order_id: string; data: Record<string, unknown> }>(
      database.db,
      sql`select order_id, data from outbound_events`,
    );
    expect(events).toEqual([
      {
        order_id: `ord_${late.split('_').at(-1)}`,
        data: expect.objectContaining({
          message_id: late,
          accepted_at: lateAcceptance.toISOString(),
          paid_at: paidAt.toISOString(),
        }) as unknown,
      },
    ]);
    expect(seen).toEqual([late]);
  });

  it('asks only about unknown SMS claimed between SMS_LOOKUP_AFTER and SMS_LOOKUP_UNTIL ago', async () => {
    const due = await unknownSms();
    await unknownSms({ claimed: new Date(claimedAt.getTime() + 2 * minute) }); // too young
    await unknownSms({ claimed: new Date(claimedAt.getTime() - 24 * 60 * minute) }); // too old
    await unknownSms({ channel: 'email' });
    await unknownSms({ status: 'sent' });
    clock.set(new Date(claimedAt.getTime() + 3 * minute));
    await resolver().runOnce();
    expect(asked.map((q) => q.messageId)).toEqual([due]);
  });

  it('asks again about a message it could not settle each time its age has doubled, and never twice at once', async () => {
    const id = await unknownSms();
    const at = async (minutes: number) => {
      clock.set(new Date(claimedAt.getTime() + minutes * minute));
      asked = [];
      await Promise.all([resolver().runOnce(), resolver().runOnce()]);
      return asked.length;
    };
    expect(await at(2)).toBe(1);
    expect(await at(3)).toBe(0);
    expect(await at(4)).toBe(1);
    expect(await at(7)).toBe(0);
    expect(await at(8)).toBe(1);
    expect(await message(id)).toMatchObject({ status: 'unknown', reason: 'ETIMEDOUT', provider_id: null });
  });

  it('marks a message the provider proves it never sent as failed, and keeps one whose lookup failed', async () => {
    const neverSent = await unknownSms();
    const lookupFailed = await unknownSms();
    answers.set(neverSent, { kind: 'not_sent' });
    answers.set(lookupFailed, new ProviderError('unknown', 'ETIMEDOUT', 'no answer'));
    clock.set(new Date(claimedAt.getTime() + 12 * 60 * minute));
    expect(await resolver().runOnce()).toEqual({ looked: 2, found: 0, notSent: 1, errors: 1 });
    expect(await message(neverSent)).toMatchObject({ status: 'failed', reason: 'not_sent' });
    expect(await message(lookupFailed)).toMatchObject({ status: 'unknown', reason: 'ETIMEDOUT' });
  });

  it('looks up at most a batch per pass, those asked about longest ago first', async () => {
    for (let i = 0; i < 3; i += 1) await unknownSms();
    clock.set(new Date(claimedAt.getTime() + 3 * minute));
    expect((await resolver(2).runOnce()).looked).toBe(2);
    expect((await resolver(2).runOnce()).looked).toBe(1);
    expect(new Set(asked.map((q) => q.messageId)).size).toBe(3);
  });
});
