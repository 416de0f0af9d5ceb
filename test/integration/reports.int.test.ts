import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { applyDeliveryUpdate } from '../../src/messages/delivery-status.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { loadOrderView } from '../../src/orders/order-view.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { recordPayment } from '../../src/payments/record-payment.js';
import { holdoutReport } from '../../src/reports/holdout-report.js';
import { recoveryReport, reportCsv, type ReportQuery, type ReportRow } from '../../src/reports/recovery-report.js';
import { inHoldout } from '../../src/recoveries/holdout.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

/**
 * A hand-built ledger over three days and two currencies; every expected figure below is
 * computed by hand from the story in `seed`, not by the code under test.
 *
 * CNY: A (entered Nov 1 10:00) gets an SMS and an email, clicks, pays 100.00 with a 5.00
 *      incentive; B (Nov 1 20:00) gets an SMS, pays 200.00 on Nov 2 without a click, then pays
 *      again (a duplicate) which is refunded on Nov 3; C (Nov 2 08:00) pays 50.00 before any
 *      message (organic); H (Nov 2 10:00) is in the holdout and pays 80.00 on Nov 3; E (Nov 3)
 *      gets an SMS and never pays.
 * USD: U (Nov 1 15:00, an expired card) gets an email, clicks at 16:00, pays 49.99 on Nov 3 10:00 (outside the
 *      24 h click window: influenced), 10.00 of it refunded at 11:00.
 */
const cadenceYaml = `
name: finance
expire_after: 7d
steps:
  - { after: 1m, channel: sms, template: nudge }
  - { after: 1h, channel: email, template: last-call }
`;

const at = (iso: string) => new Date(`2026-11-0${iso}Z`);

describe('recovery report over a hand-computed dataset', () => {
  let database: TestDatabase;
  const ids = {
    A: pick('A', false),
    B: pick('B', false),
    C: pick('C', false),
    H: pick('H', true),
    E: pick('E', false),
    U: pick('U', false),
  };

  /** An order id that is (or is not) in the 50 % holdout. */
  function pick(label: string, holdout: boolean): string {
    for (let i = 0; ; i += 1) {
      const id = `ord_fin_${label}${i}`;
      if (inHoldout(id, 50) === holdout) return id;
    }
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    await applyCadences(database.db, parseCadenceDocument(cadenceYaml));
    await seed();
  });
  afterAll(async () => {
    await database?.drop();
  });

  const deps = (): ApplyEventDeps => ({
    db: database.db,
    cadences: new CadenceBook(database.db, { defaultHoldoutPercent: 50 }),
    abandonAfterMs: 30 * 60_000,
    clickWindowMs: 24 * 3_600_000,
  });

  async function enter(orderId: string, currency: string, amount: number, when: Date, failureCode = 'card_declined') {
    const event = parseEvent(
      makeEvent(
        {
          id: `evt_${orderId}`,
          occurred_at: when.toISOString(),
          payment: { gateway: 'stripe', method: 'card', failure_code: failureCode },
        },
        {
          id: orderId,
          currency,
          amount,
          customer: { id: `cus_${orderId}`, email: 'x@example.com', phone: '+8613800138000' },
        },
      ),
    );
    const result = await applyEvent(deps(), event, when);
    expect(result).toMatchObject({ outcome: 'recovery_started' });
  }

  async function recoveryOf(orderId: string) {
    const [r] = await rows<{ id: string; customer_id: string }>(
      database.db,
      sql`select id, customer_id from recoveries where order_id = ${orderId}`,
    );
    return r!;
  }

  async function sent(orderId: string, step: number, channel: 'sms' | 'email', when: Date, costMicros: number) {
    const r = await recoveryOf(orderId);
    const id = `msg_${orderId}_${step}`;
    await database.db.execute(
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                provider_id, sent_at, cost_micros, cost_currency, cost_source, created_at, updated_at)
          values (${id}, ${r.id}, ${orderId}, ${r.customer_id}, ${step}, ${channel}, 'nudge', 'sent', 'x',
                  ${`SM${orderId}${step}`}, ${when}, ${costMicros}, 'USD', 'estimate', ${when}, ${when})`,
    );
    return id;
  }

  async function click(orderId: string, messageId: string, when: Date) {
    const r = await recoveryOf(orderId);
    await database.db.execute(
      sql`insert into clicks (id, message_id, recovery_id, order_id, at)
          values (${`clk_${orderId}`}, ${messageId}, ${r.id}, ${orderId}, ${when})`,
    );
  }

  async function pay(orderId: string, externalId: string, amount: number, currency: string, when: Date, incentive = 0) {
    return database.db.transaction(async (tx) => {
      await tx.execute(sql`select id from orders where id = ${orderId} for update`);
      return recordPayment(
        tx,
        { orderId, gateway: 'sandbox', externalId, amount, currency, paidAt: when, incentiveAmount: incentive },
        { now: new Date(), clickWindowMs: 24 * 3_600_000 },
      );
    });
  }

  async function refund(paymentId: string, orderId: string, amount: number, currency: string, when: Date) {
    await database.db.execute(
      sql`insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, key_version,
                               succeeded_at, created_at, updated_at)
          values (${`ref_${paymentId}`}, ${orderId}, ${paymentId}, ${amount}, ${currency}, 'test', 'succeeded',
                  ${`key_${paymentId}`}, 2, ${when}, ${when}, ${new Date()})`,
    );
  }

  async function seed() {
    await enter(ids.A, 'CNY', 10_000, at('1T10:00:00'));
    await enter(ids.B, 'CNY', 20_000, at('1T20:00:00'));
    await enter(ids.U, 'USD', 4_999, at('1T15:00:00'), 'expired_card');
    await enter(ids.C, 'CNY', 5_000, at('2T08:00:00'));
    await enter(ids.H, 'CNY', 8_000, at('2T10:00:00'));
    await enter(ids.E, 'CNY', 3_000, at('3T09:00:00'));

    const a0 = await sent(ids.A, 0, 'sms', at('1T10:01:00'), 45_000);
    await sent(ids.A, 1, 'email', at('1T11:00:00'), 400);
    await sent(ids.B, 0, 'sms', at('1T20:01:00'), 7_500);
    const u0 = await sent(ids.U, 0, 'email', at('1T15:05:00'), 400);
    await sent(ids.E, 0, 'sms', at('3T09:01:00'), 45_000);

    await click(ids.A, a0, at('1T12:00:00'));
    await click(ids.U, u0, at('1T16:00:00'));

    expect((await pay(ids.A, 'pA', 10_000, 'CNY', at('1T12:30:00'), 500)).kind).toBe('recorded');
    expect((await pay(ids.B, 'pB', 20_000, 'CNY', at('2T09:00:00'))).kind).toBe('recorded');
    const duplicate = await pay(ids.B, 'pB2', 20_000, 'CNY', at('2T09:05:00'));
    expect(duplicate.kind).toBe('duplicate');
    await refund(duplicate.paymentId, ids.B, 20_000, 'CNY', at('3T08:00:00'));
    expect((await pay(ids.C, 'pC', 5_000, 'CNY', at('2T08:30:00'))).kind).toBe('recorded');
    expect((await pay(ids.H, 'pH', 8_000, 'CNY', at('3T12:00:00'))).kind).toBe('recorded');
    const u = await pay(ids.U, 'pU', 4_999, 'USD', at('3T10:00:00'));
    await refund(u.paymentId, ids.U, 1_000, 'USD', at('3T11:00:00'));
  }

  const query = (overrides: Partial<ReportQuery> = {}): ReportQuery => ({
    from: '2026-11-01',
    to: '2026-11-03',
    groupBy: 'day',
    timezone: 'UTC',
    ...overrides,
  });

  const row = (key: string, currency: string, fields: Partial<ReportRow>): ReportRow => ({
    key,
    currency,
    orders_entered: 0,
    messaged: 0,
    clicked: 0,
    recovered_count: 0,
    recovery_rate: null,
    recovered_amount: 0,
    refunded_amount: 0,
    net_recovered_amount: 0,
    organic_amount: 0,
    incentive_amount: 0,
    messages_sent: 0,
    cost_amount: null,
    cost_currency: null,
    other_costs: [],
    median_minutes_to_recovery: null,
    ...fields,
  });

  it('attributes the ledger as the story says (the holdout order is in the control group)', async () => {
    const payments = await rows<{ order_id: string; attribution: string; duplicate: boolean }>(
      database.db,
      sql`select order_id, attribution, duplicate from payments order by paid_at`,
    );
    expect(payments).toEqual([
      { order_id: ids.A, attribution: 'clicked', duplicate: false },
      { order_id: ids.C, attribution: 'organic', duplicate: false },
      { order_id: ids.B, attribution: 'influenced', duplicate: false },
      { order_id: ids.B, attribution: 'influenced', duplicate: true },
      { order_id: ids.U, attribution: 'influenced', duplicate: false },
      { order_id: ids.H, attribution: 'organic', duplicate: false },
    ]);
    const [h] = await rows<{ holdout: boolean; step_index: number }>(
      database.db,
      sql`select holdout, step_index from recoveries where order_id = ${ids.H}`,
    );
    expect(h).toEqual({ holdout: true, step_index: 2 });
    // The order's story says so too.
    expect((await loadOrderView(database.db, ids.H))?.recovery?.holdout).toBe(true);
    expect((await loadOrderView(database.db, ids.A))?.recovery?.holdout).toBe(false);
  });

  it('reports each day and currency to the minor unit', async () => {
    const result = await recoveryReport(database.db, query(), new Date());
    expect(result).toEqual([
      row('2026-11-01', 'CNY', {
        orders_entered: 2,
        messaged: 2,
        clicked: 1,
        messages_sent: 3,
        recovered_count: 1,
        recovery_rate: 0.5,
        recovered_amount: 10_500,
        incentive_amount: 500,
        net_recovered_amount: 10_000,
        // 0.045 + 0.0004 + 0.0075 USD = 5.29 cents
        cost_amount: 5,
        cost_currency: 'USD',
        median_minutes_to_recovery: 150,
      }),
      row('2026-11-01', 'USD', {
        orders_entered: 1,
        messaged: 1,
        clicked: 1,
        messages_sent: 1,
        recovery_rate: 0,
        // 0.04 cents
        cost_amount: 0,
        cost_currency: 'USD',
      }),
      row('2026-11-02', 'CNY', {
        orders_entered: 1,
        recovered_count: 1,
        recovery_rate: 1,
        // B's payment and its duplicate; the duplicate's refund lands on Nov 3
        recovered_amount: 40_000,
        net_recovered_amount: 40_000,
        organic_amount: 5_000,
        median_minutes_to_recovery: 780,
      }),
      row('2026-11-03', 'CNY', {
        orders_entered: 1,
        messaged: 1,
        messages_sent: 1,
        recovery_rate: 0,
        refunded_amount: 20_000,
        net_recovered_amount: -20_000,
        // 4.5 cents, half up
        cost_amount: 5,
        cost_currency: 'USD',
      }),
      row('2026-11-03', 'USD', {
        recovered_count: 1,
        recovered_amount: 4_999,
        refunded_amount: 1_000,
        net_recovered_amount: 3_999,
        median_minutes_to_recovery: 2_580,
      }),
    ]);
  });

  it('groups by channel, step and failure category over the whole period', async () => {
    const byChannel = await recoveryReport(database.db, query({ groupBy: 'channel', currency: 'CNY' }), new Date());
    expect(
      byChannel.map((r) => [r.key, r.orders_entered, r.messages_sent, r.recovered_count, r.recovered_amount]),
    ).toEqual([
      // A was won by the SMS it clicked; B by its last message, an SMS (the duplicate too).
      ['email', 1, 1, 0, 0],
      ['sms', 3, 3, 2, 50_500],
    ]);
    const byStep = await recoveryReport(database.db, query({ groupBy: 'step', currency: 'CNY' }), new Date());
    expect(byStep.map((r) => [r.key, r.orders_entered, r.recovered_count, r.refunded_amount])).toEqual([
      // Steps by index, as order views and the console number them.
      ['0', 3, 2, 20_000],
      ['1', 1, 0, 0],
    ]);
    const byCategory = await recoveryReport(database.db, query({ groupBy: 'failure_category' }), new Date());
    expect(byCategory.map((r) => [r.key, r.currency, r.orders_entered, r.recovered_count])).toEqual([
      // A vague card_declined reads as insufficient funds; an expired card as card data.
      ['card_data', 'USD', 1, 1],
      ['insufficient_funds', 'CNY', 4, 2],
    ]);
  });

  it('moves day boundaries with the timezone', async () => {
    // In Shanghai (UTC+8) B's entry (Nov 1 20:00 UTC) is on Nov 2, and E's on Nov 3 17:00.
    const result = await recoveryReport(database.db, query({ timezone: 'Asia/Shanghai', currency: 'CNY' }), new Date());
    expect(result.map((r) => [r.key, r.orders_entered])).toEqual([
      ['2026-11-01', 1],
      ['2026-11-02', 2],
      ['2026-11-03', 1],
    ]);
  });

  it('compares treated with the holdout, with a 95 % interval on the difference', async () => {
    const result = await holdoutReport(database.db, { from: '2026-11-01', to: '2026-11-03', timezone: 'UTC' });
    // CNY treated: A, B, C, E — 3 paid of 4, value 105.00 + 200.00 + 50.00; control: H, 1 of 1, 80.00.
    // se = sqrt(0.75 × 0.25 / 4 + 0) = 0.216506; 1.96 se = 0.424352.
    expect(result).toEqual([
      {
        currency: 'CNY',
        treated: { orders: 4, paid: 3, rate: 0.75, paid_amount: 35_500 },
        control: { orders: 1, paid: 1, rate: 1, paid_amount: 8_000 },
        rate_difference: -0.25,
        ci95: [-0.6744, 0.1744],
        significant: false,
        incremental_amount: 35_500 - 8_000 * 4,
      },
      {
        currency: 'USD',
        treated: { orders: 1, paid: 1, rate: 1, paid_amount: 4_999 },
        control: { orders: 0, paid: 0, rate: null, paid_amount: 0 },
        rate_difference: null,
        ci95: null,
        significant: false,
        incremental_amount: null,
      },
    ]);
  });

  it('picks up a provider price and a late payment for old days on the next report', async () => {
    await recoveryReport(database.db, query(), new Date());
    // Twilio prices B's SMS at 0.05 USD instead of the 0.0075 estimate: Nov 1 CNY costs 9.54 cents.
    expect(
      await applyDeliveryUpdate(
        database.db,
        {
          providerId: `SM${ids.B}0`,
          providerStatus: 'delivered',
          price: { micros: 50_000, currency: 'USD' },
        },
        new Date(),
      ),
    ).toBe('updated');
    // E pays on Nov 3 13:00, recorded only now (a late webhook).
    await pay(ids.E, 'pE', 3_000, 'CNY', at('3T13:00:00'));

    const result = await recoveryReport(database.db, query({ currency: 'CNY' }), new Date());
    expect(result.find((r) => r.key === '2026-11-01')?.cost_amount).toBe(10);
    expect(result.find((r) => r.key === '2026-11-03')).toMatchObject({
      recovered_count: 1,
      recovered_amount: 3_000,
      refunded_amount: 20_000,
      net_recovered_amount: -17_000,
      recovery_rate: 1,
    });
  });

  it('writes CSV with a header row and one line per row', async () => {
    const result = await recoveryReport(database.db, query({ groupBy: 'month' }), new Date());
    const csv = reportCsv(result, 'month');
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]).toBe(
      'month,currency,orders_entered,messaged,clicked,recovered_count,recovery_rate,recovered_amount,refunded_amount,' +
        'net_recovered_amount,organic_amount,incentive_amount,messages_sent,cost_amount,cost_currency,other_costs,' +
        'median_minutes_to_recovery',
    );
    expect(lines.slice(1)).toEqual([
      // CNY: entered A B C E; recovered A, B (twice), E: 105.00 + 400.00 + 30.00; refunds 200.00; incentive 5.00;
      // cost 0.045 + 0.0004 + 0.05 + 0.045 USD = 14.04 cents; median of 150, 240 and 780 minutes.
      '2026-11,CNY,4,3,1,3,0.75,53500,20000,33000,5000,500,4,14,USD,,240',
      '2026-11,USD,1,1,1,1,1,4999,1000,3999,0,0,1,0,USD,,2580',
    ]);
  });
});
