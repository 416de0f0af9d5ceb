import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EventForShop, ShopWriteBack } from '../../src/connectors/shop-connector.js';
import { createWoocommerceApi, readHoldStockMinutes } from '../../src/connectors/woocommerce/woocommerce-api.js';
import { createWoocommerceConnector } from '../../src/connectors/woocommerce/woocommerce-connector.js';
import { startFakeWoocommerce, type FakeWoocommerce } from '../helpers/fake-woocommerce.js';

let shop: FakeWoocommerce;
let writeBack: ShopWriteBack;

beforeAll(async () => {
  shop = await startFakeWoocommerce();
  writeBack = writeBackTo(shop.url);
});
afterAll(async () => {
  await shop.close();
});
beforeEach(() => shop.reset());

function writeBackTo(url: string, credentials = { key: shop.consumerKey, secret: shop.consumerSecret }): ShopWriteBack {
  const connector = createWoocommerceConnector(
    {
      webhookSecret: 'whsec',
      linkMode: 'recoup',
      api: { url, consumerKey: credentials.key, consumerSecret: credentials.secret },
    },
    // Short, so the hung request below ends quickly; nothing asserts how long anything took.
    { timeoutMs: 500 },
  );
  if (!connector.writeBack) throw new Error('write-back expected with API credentials');
  return connector.writeBack;
}

function paid(overrides: Record<string, unknown> = {}): EventForShop {
  return {
    id: 'evt_paid_1',
    type: 'payment.succeeded',
    data: {
      order_id: '727',
      customer_id: 'woo-cus-25',
      payment_id: 'pay_4f1c2a',
      gateway: 'stripe',
      gateway_payment_id: 'pi_3Pq8xY2eZvKYlo2C',
      method: 'card',
      amount: 2935,
      currency: 'USD',
      attribution: 'clicked',
      collected_by: 'recoup',
      duplicate: false,
      attempt: 2,
      paid_at: '2026-03-08T16:02:11.000Z',
      ...overrides,
    },
  };
}

function refunded(overrides: Record<string, unknown> = {}): EventForShop {
  return {
    id: 'evt_refund_1',
    type: 'refund.succeeded',
    data: {
      order_id: '727',
      refund_id: 'ref_9a8b7c',
      payment_id: 'pay_4f1c2a',
      amount: 2935,
      currency: 'USD',
      reason: 'duplicate',
      note: null,
      ...overrides,
    },
  };
}

const puts = () => shop.requests.filter((r) => r.method === 'PUT');
const notePosts = () => shop.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/notes'));

describe('WooCommerce write-back of a payment recoup collected', () => {
  it('marks the order paid with the gateway transaction, then adds a private note saying how', async () => {
    shop.addOrder(727);
    const result = await writeBack.apply(paid());
    expect(result.kind).toBe('done');
    expect(shop.requests.every((r) => r.authorized)).toBe(true);
    expect(puts().map((r) => [r.path, r.body])).toEqual([
      ['/wp-json/wc/v3/orders/727', { set_paid: true, transaction_id: 'pi_3Pq8xY2eZvKYlo2C' }],
    ]);
    expect(notePosts().map((r) => r.body)).toEqual([
      {
        note: 'Paid through recoup: card via stripe, USD 29.35, payment pay_4f1c2a, reminder attempt 2, attribution clicked',
        customer_note: false,
      },
    ]);
    expect(shop.order(727)).toMatchObject({ status: 'processing', transactionId: 'pi_3Pq8xY2eZvKYlo2C' });
  });

  it('skips a payment the shop reported itself: WooCommerce already knows', async () => {
    shop.addOrder(727, { status: 'processing' });
    expect(await writeBack.apply(paid({ collected_by: 'shop', attempt: null }))).toMatchObject({ kind: 'skipped' });
    expect(shop.requests).toEqual([]);
  });

  it('after the note failed once, the retry neither marks the order paid again nor adds a second note', async () => {
    shop.addOrder(727);
    shop.failNext(1, { status: 503, code: 'http_503', message: 'Service Unavailable' }, { method: 'POST' });
    const first = await writeBack.apply(paid());
    expect(first).toMatchObject({ kind: 'failed', status: 503 });
    expect(shop.order(727)?.status).toBe('processing');

    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'done' });
    expect(puts()).toHaveLength(1);
    expect(shop.order(727)?.notes).toHaveLength(1);
  });

  it('when WooCommerce wrote the note but its answer was lost, the retry finds the note and adds none', async () => {
    shop.addOrder(727);
    shop.failNext(1, { status: 500, message: 'upstream reset', applied: true }, { method: 'POST' });
    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'failed', status: 500 });
    expect(shop.order(727)?.notes).toHaveLength(1);

    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'done' });
    expect(notePosts()).toHaveLength(1);
    expect(shop.order(727)?.notes).toHaveLength(1);
  });

  it('when marking paid failed, the retry marks it paid and notes it once', async () => {
    shop.addOrder(727);
    shop.failNext(1, { status: 502, message: 'Bad Gateway' }, { method: 'PUT' });
    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'failed', status: 502 });
    expect(shop.order(727)).toMatchObject({ status: 'pending', notes: [] });

    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'done' });
    expect(shop.order(727)?.status).toBe('processing');
    expect(shop.order(727)?.notes).toHaveLength(1);
  });

  it('leaves an order WooCommerce already took another payment for as it is, and notes the duplicate', async () => {
    shop.addOrder(727, { status: 'completed', transactionId: 'ch_shop_own' });
    const result = await writeBack.apply(paid());
    expect(result).toMatchObject({ kind: 'done' });
    expect(result.kind === 'done' && result.detail).toContain('ch_shop_own');
    expect(puts()).toEqual([]);
    expect(shop.order(727)).toMatchObject({ status: 'completed', transactionId: 'ch_shop_own' });
    expect(shop.order(727)?.notes[0]?.note).toContain('a duplicate');
  });

  it('notes a duplicate payment without marking the order paid with it', async () => {
    shop.addOrder(727);
    expect(await writeBack.apply(paid({ duplicate: true }))).toMatchObject({ kind: 'done' });
    expect(puts()).toEqual([]);
    expect(shop.order(727)?.notes[0]?.note).toMatch(/^Paid through recoup: .*payment pay_4f1c2a.*a duplicate/);
  });

  it('says what WooCommerce answered to a 4xx, cut to 200 characters, and never the credentials', async () => {
    const missing = await writeBack.apply(paid({ order_id: '404404' }));
    expect(missing).toEqual({
      kind: 'failed',
      status: 404,
      detail: 'GET /orders/404404: WooCommerce answered 404: woocommerce_rest_shop_order_invalid_id: Invalid ID.',
    });

    shop.addOrder(727);
    shop.failNext(1, { status: 400, code: 'woocommerce_rest_invalid', message: 'x'.repeat(500) }, { method: 'PUT' });
    const invalid = await writeBack.apply(paid());
    expect(invalid).toMatchObject({ kind: 'failed', status: 400 });
    expect(invalid.kind === 'failed' && invalid.detail).toContain(`woocommerce_rest_invalid: ${'x'.repeat(200)}…`);
    expect(invalid.kind === 'failed' && invalid.detail).not.toContain('x'.repeat(201));

    const wrongKey = await writeBackTo(shop.url, { key: 'ck_wrong', secret: 'cs_wrong_secret' }).apply(paid());
    expect(wrongKey).toMatchObject({ kind: 'failed', status: 401 });
    const details = [missing, invalid, wrongKey].map((r) => (r.kind === 'failed' ? r.detail : ''));
    for (const detail of details) {
      for (const secret of [shop.consumerKey, shop.consumerSecret, 'cs_wrong_secret', 'ck_wrong']) {
        expect(detail).not.toContain(secret);
      }
      expect(detail).not.toMatch(/Basic /);
    }
  });

  it('turns a hung request, a cut connection and a refused one into failures, never a throw', async () => {
    shop.addOrder(727);
    shop.failNext(1, 'hang', { method: 'GET' });
    expect(await writeBack.apply(paid())).toMatchObject({
      kind: 'failed',
      status: null,
      detail: expect.stringContaining('no answer within'),
    });
    shop.failNext(1, 'drop', { method: 'PUT' });
    expect(await writeBack.apply(paid())).toMatchObject({ kind: 'failed', status: null });

    const closed = await startFakeWoocommerce();
    const url = closed.url;
    await closed.close();
    expect(await writeBackTo(url).apply(paid())).toMatchObject({ kind: 'failed', status: null });
  });

  it('skips an order id WooCommerce could not have given', async () => {
    expect(await writeBack.apply(paid({ order_id: 'ord_from_api' }))).toMatchObject({ kind: 'skipped' });
    expect(shop.requests).toEqual([]);
  });
});

describe('WooCommerce write-back of a refund', () => {
  it('adds a note only, once, even when the first answer was lost', async () => {
    shop.addOrder(727, { status: 'processing', transactionId: 'pi_3Pq8xY2eZvKYlo2C' });
    shop.failNext(1, { status: 504, applied: true }, { method: 'POST' });
    expect(await writeBack.apply(refunded())).toMatchObject({ kind: 'failed', status: 504 });
    expect(await writeBack.apply(refunded())).toMatchObject({ kind: 'done' });

    expect(shop.order(727)?.notes.map((n) => n.note)).toEqual([
      'Refunded by recoup: USD 29.35, refund ref_9a8b7c, payment pay_4f1c2a, a duplicate payment',
    ]);
    expect(shop.order(727)?.status).toBe('processing');
    expect(puts()).toEqual([]);
    expect(shop.requests.some((r) => r.path.includes('/refunds'))).toBe(false);
  });

  it('carries what ops wrote for a refund they asked for', async () => {
    shop.addOrder(727, { status: 'processing' });
    await writeBack.apply(
      refunded({ refund_id: 'ref_ops1', reason: 'ops', note: 'customer asked twice', amount: 1000 }),
    );
    expect(shop.order(727)?.notes[0]?.note).toBe(
      'Refunded by recoup: USD 10.00, refund ref_ops1, payment pay_4f1c2a, asked by ops: customer asked twice',
    );
  });
});

describe('WooCommerce hold-stock setting and on-hold', () => {
  const api = () =>
    createWoocommerceApi({ url: shop.url, consumerKey: shop.consumerKey, consumerSecret: shop.consumerSecret });

  it('reads how long WooCommerce holds stock for an unpaid order; empty or 0 means it never cancels', async () => {
    expect(await readHoldStockMinutes(api())).toBe(60);
    expect(shop.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /wp-json/wc/v3/settings/products/woocommerce_hold_stock_minutes',
    ]);
    shop.settings.set('products/woocommerce_hold_stock_minutes', '1440');
    expect(await readHoldStockMinutes(api())).toBe(1440);
    shop.settings.set('products/woocommerce_hold_stock_minutes', '');
    expect(await readHoldStockMinutes(api())).toBeNull();
    shop.settings.set('products/woocommerce_hold_stock_minutes', '0');
    expect(await readHoldStockMinutes(api())).toBeNull();
  });

  it('fails with what WooCommerce said when the setting cannot be read', async () => {
    shop.settings.delete('products/woocommerce_hold_stock_minutes');
    await expect(readHoldStockMinutes(api())).rejects.toMatchObject({
      status: 404,
      message: expect.stringContaining('Invalid setting.'),
    });
  });

  it('puts an order on hold, so WooCommerce does not cancel it as unpaid', async () => {
    shop.addOrder(727);
    await api().putOnHold('727');
    expect(puts().map((r) => r.body)).toEqual([{ status: 'on-hold' }]);
    expect(shop.order(727)?.status).toBe('on-hold');
  });
});

describe('WooCommerce write-back of a recovery: the hold that keeps an unpaid order from being cancelled', () => {
  const started = (): EventForShop => ({
    id: 'evt_started_1',
    type: 'recovery.started',
    data: { order_id: '727', recovery_id: 'rec_5d1e', cadence: 'default', failure_category: 'abandoned' },
  });
  const ended = (state: string): EventForShop => ({
    id: `evt_ended_${state}`,
    type: 'recovery.ended',
    data: {
      order_id: '727',
      recovery_id: 'rec_5d1e',
      state,
      reason: state === 'exhausted' ? 'cadence_exhausted' : 'stopped_by_ops',
    },
  });

  it('puts a pending order on hold with a note saying why, once, even when the first hold failed', async () => {
    shop.addOrder(727, { status: 'pending' });
    shop.failNext(1, { status: 503 }, { method: 'PUT', path: /\/orders\/727$/ });
    expect((await writeBack.apply(started())).kind).toBe('failed');
    expect((await writeBack.apply(started())).kind).toBe('done');
    expect((await writeBack.apply(started())).kind).toBe('done');
    expect(shop.order(727)?.status).toBe('on-hold');
    expect(notePosts()).toHaveLength(1);
    expect((notePosts()[0]!.body as { note: string }).note).toContain('recovery rec_5d1e');
  });

  it('leaves a failed order as it is: WooCommerce never cancels those', async () => {
    shop.addOrder(727, { status: 'failed' });
    expect((await writeBack.apply(started())).kind).toBe('skipped');
    expect(puts()).toEqual([]);
  });

  it('gives a held order back as pending when the recovery ends unpaid, and leaves it alone when it was paid', async () => {
    shop.addOrder(727, { status: 'pending' });
    await writeBack.apply(started());
    expect((await writeBack.apply(ended('recovered'))).kind).toBe('skipped');
    expect(shop.order(727)?.status).toBe('on-hold');
    expect((await writeBack.apply(ended('exhausted'))).kind).toBe('done');
    expect(shop.order(727)?.status).toBe('pending');
  });

  it("holds nothing when reminders lead to WooCommerce's own payment page, which does not take a held order", () => {
    const connector = createWoocommerceConnector({
      webhookSecret: 'whsec',
      linkMode: 'platform',
      api: { url: shop.url, consumerKey: shop.consumerKey, consumerSecret: shop.consumerSecret },
    });
    expect(connector.writeBack?.events).toEqual(['payment.succeeded', 'refund.succeeded']);
    expect(writeBack.events).toContain('recovery.started');
  });

  it('never releases a hold the shop put itself', async () => {
    shop.addOrder(727, { status: 'on-hold' });
    expect((await writeBack.apply(ended('stopped'))).kind).toBe('skipped');
    expect(shop.order(727)?.status).toBe('on-hold');
  });
});
