import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { incentiveAmount } from '../../src/pricing/incentives.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import { loadRetryLink, type RetryDeps } from '../../src/payments/retry-session.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// One step, with 10 % off capped at 5.00, and a monthly budget of 8.00 per currency; EUR
// orders take the same step without a budget, so only the per-customer guard applies to them.
const cadence = `
- name: default
  expire_after: 2h
  incentive_monthly_budget: 800
  steps:
    - { after: 1s, channel: sms, template: last-call, incentive: { percent: 10, max_amount: 500 } }
- name: unbudgeted
  match: { currencies: [EUR] }
  expire_after: 2h
  steps:
    - { after: 1s, channel: sms, template: last-call, incentive: { percent: 10, max_amount: 500 } }
`;

describe('incentives', () => {
  let svc: TestService;
  let retry: RetryDeps;

  beforeAll(async () => {
    svc = await startTestService({ cadences: cadence });
    retry = svc.service.payments!;
  });
  afterAll(async () => {
    await svc.close();
  });

  async function linkFor(customerId: string, amount: number, currency = 'CNY') {
    const event = makeEvent(
      {},
      { amount, currency, customer: { id: customerId, phone: '+8613800138000', locale: 'en' } },
    );
    await svc.post(event);
    const message = await waitFor(
      async () => {
        const [m] = await rows<{ id: string; link_token: string; status: string }>(
          svc.database.db,
          sql`select id, link_token, status from messages where order_id = ${event.order.id}`,
        );
        return m?.status === 'sent' ? m : undefined;
      },
      { what: 'the reminder' },
    );
    const sms = JSON.parse(fs.readFileSync(path.join(svc.outboxDir, `${message.id}.sms.json`), 'utf8')) as {
      body: string;
    };
    return { orderId: event.order.id, token: message.link_token, sms: sms.body };
  }

  async function chargeOf(token: string) {
    const state = await loadRetryLink(retry, token);
    if (state.kind !== 'open') throw new Error(`link ${state.kind}`);
    return state.view.charge;
  }

  it('computes percent and fixed incentives within their caps', () => {
    expect(incentiveAmount({ percent: 10 }, 12_345)).toBe(1_234);
    expect(incentiveAmount({ percent: 10, maxAmount: 500 }, 12_900)).toBe(500);
    expect(incentiveAmount({ amount: 300 }, 200)).toBe(200);
  });

  it('grants the incentive with the reminder that quotes it, charges with it, once per customer per period', async () => {
    const first = await linkFor('cus_incentive_a', 3_000);
    // The reminder quotes the discounted amount, and its link charges exactly that.
    expect(first.sms).toContain('CN¥27.00');
    expect(await chargeOf(first.token)).toMatchObject({ incentiveAmount: 300, total: 2_700 });
    expect(
      await rows(
        svc.database.db,
        sql`select amount::text as amount, status from incentives where order_id = ${first.orderId}`,
      ),
    ).toEqual([{ amount: '300', status: 'offered' }]);

    const result = await initiatePayment(retry, { token: first.token, method: 'alipay', email: null, phone: null });
    expect(result).toMatchObject({ kind: 'next_action', charge: { total: 2_700, incentiveAmount: 300 } });
    const [attempt] = await rows<{ amount: string; incentive_amount: string }>(
      svc.database.db,
      sql`select amount::text as amount, incentive_amount::text as incentive_amount from payment_attempts
          where order_id = ${first.orderId} and source = 'retry_link'`,
    );
    expect(attempt).toEqual({ amount: '2700', incentive_amount: '300' });
    const granted = await rows<{ amount: string; status: string }>(
      svc.database.db,
      sql`select amount::text as amount, status from incentives where order_id = ${first.orderId}`,
    );
    expect(granted).toEqual([{ amount: '300', status: 'offered' }]);

    // The same customer's next unpaid order gets no second incentive within the period.
    const second = await linkFor('cus_incentive_a', 3_000);
    expect(second.sms).toContain('CN¥30.00');
    expect(await chargeOf(second.token)).toMatchObject({ incentiveAmount: 0, total: 3_000 });
  });

  it('stops granting once the cadence has spent its monthly budget', async () => {
    const a = await linkFor('cus_incentive_b', 50_000); // capped at 500 → 300 + 500 = 800 spent
    expect(await chargeOf(a.token)).toMatchObject({ incentiveAmount: 500 });
    const b = await linkFor('cus_incentive_c', 5_000);
    expect(await chargeOf(b.token)).toMatchObject({ incentiveAmount: 0, total: 5_000 });
  });

  async function grantedFor(orderIds: string[]) {
    return rows<{ order_id: string; amount: string }>(
      svc.database.db,
      sql`select order_id, amount::text as amount from incentives where order_id in ${orderIds}`,
    );
  }

  it('grants one incentive when four orders of one customer are reminded at the same moment', async () => {
    const links = await Promise.all([1, 2, 3, 4].map(() => linkFor('cus_incentive_race', 1_000, 'EUR')));
    expect(await grantedFor(links.map((l) => l.orderId))).toHaveLength(1);
    // Each link charges what its own reminder quoted: one with the incentive, three without.
    const charges = await Promise.all(links.map((link) => chargeOf(link.token)));
    expect(charges.map((c) => c.total).sort((a, b) => a - b)).toEqual([900, 1_000, 1_000, 1_000]);
    for (const [i, link] of links.entries()) expect(link.sms).toContain(charges[i]!.total === 900 ? '€9.00' : '€10.00');

    const results = await Promise.all(
      links.map((link) => initiatePayment(retry, { token: link.token, method: 'alipay', email: null, phone: null })),
    );
    expect(results.map((r) => (r.kind === 'next_action' ? r.charge.total : -1)).sort((a, b) => a - b)).toEqual([
      900, 1_000, 1_000, 1_000,
    ]);
    expect(await grantedFor(links.map((l) => l.orderId))).toHaveLength(1);
  });

  it('keeps within the monthly budget when two customers are reminded at the same moment', async () => {
    // 500 each against a budget of 800: only one fits (a currency of its own, so nothing is spent yet).
    const links = await Promise.all([
      linkFor('cus_incentive_budget_a', 50_000, 'USD'),
      linkFor('cus_incentive_budget_b', 50_000, 'USD'),
    ]);
    expect(await grantedFor(links.map((l) => l.orderId))).toEqual([
      { order_id: expect.any(String) as string, amount: '500' },
    ]);
    const charges = await Promise.all(links.map((link) => chargeOf(link.token)));
    expect(charges.map((c) => c.incentiveAmount).sort((a, b) => a - b)).toEqual([0, 500]);
  });
});
