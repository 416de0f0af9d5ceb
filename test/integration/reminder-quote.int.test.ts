import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { formatAmount } from '../../src/platform/format-amount.js';
import { startRetryHarness, type Link, type RetryHarness } from '../helpers/retry-harness.js';

// The amount a reminder quotes is exactly what its link's page charges, whenever the customer opens
// it while the link works: an expired coupon's discount is added back in the reminder too, a coupon
// still valid when the reminder went out is honoured for the link's lifetime, and an incentive is
// quoted by the reminder that grants it.

const cadences = `
name: default
expire_after: 3d
steps:
  - { after: 1m, channel: sms, template: nudge }
  - { after: 2h, channel: email, template: last-call, incentive: { amount: 500 } }
`;

const money = (minor: number) => formatAmount(minor, 'CNY', 'en');
const hour = 3_600_000;

describe('what a reminder quotes and what its page charges', () => {
  let h: RetryHarness;

  beforeAll(async () => {
    h = await startRetryHarness({ cadences, start: '2026-11-25T12:00:00Z' });
  });
  afterAll(async () => {
    await h?.close();
  });

  /** The page's "total to pay", and what paying through it asks the gateway for. */
  async function charged(link: Link): Promise<{ shown: string; attempt: number }> {
    const page = (await h.get(`/r/${link.token}`)).body;
    const shown = /<div class="total"><dt>[^<]*<\/dt><dd>([^<]+)<\/dd>/.exec(page)?.[1];
    const paid = await h.submit(link.token, { method: 'alipay' });
    expect(paid.statusCode).toBe(303);
    const [attempt] = await rows<{ amount: string }>(
      h.database.db,
      sql`select amount::text as amount from payment_attempts
          where order_id = ${link.orderId} and status = 'open' and message_id = ${link.messageId}`,
    );
    return { shown: shown ?? '(no total)', attempt: Number(attempt?.amount) };
  }

  const coupon = (expiresAt: Date) => ({ code: 'SAVE10', discount_amount: 1000, expires_at: expiresAt.toISOString() });
  const english = { locale: 'en' };

  it('quotes the full amount when the coupon had expired before the reminder, and the page charges it', async () => {
    // ¥129.00 after a ¥10.00 coupon that expired an hour ago: the link charges ¥139.00.
    const link = await h.remind({ coupon: coupon(new Date(h.clock.now().getTime() - hour)) }, {}, english);
    expect(link.message.text).toContain(money(13_900));
    expect(link.message.text).not.toContain(money(12_900));
    expect(await charged(link)).toEqual({ shown: money(13_900), attempt: 13_900 });
  });

  it('honours a coupon valid when the reminder went out for the link lifetime, even once it expired', async () => {
    const link = await h.remind({ coupon: coupon(new Date(h.clock.now().getTime() + hour)) }, {}, english);
    expect(link.message.text).toContain(money(12_900));
    // The customer opens the link a day later: the coupon has expired since, the link still works.
    h.clock.advance(24 * hour);
    expect(await charged(link)).toEqual({ shown: money(12_900), attempt: 12_900 });
  });

  it('quotes an incentive in the reminder that grants it; each link charges what its own reminder said', async () => {
    const first = await h.remind({}, {}, english);
    expect(first.message.text).toContain(money(12_900));
    const second = await h.next(first.recoveryId);
    if (!second) throw new Error('the second reminder was not sent');
    expect(second.message.text).toContain(`Amount due: ${money(12_400)}`);

    expect(await charged(second)).toEqual({ shown: money(12_400), attempt: 12_400 });
    // The first reminder said ¥129.00 before any incentive existed: its link keeps charging that.
    expect(await charged(first)).toEqual({ shown: money(12_900), attempt: 12_900 });
  });
});
