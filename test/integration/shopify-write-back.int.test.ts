import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventForShop, ShopWriteBack } from '../../src/connectors/shop-connector.js';
import { createShopifyConnector } from '../../src/connectors/shopify/shopify-connector.js';
import type { ShopifyConfig } from '../../src/connectors/shopify/shopify-config.js';
import { startFakeShopify, type FakeShopify } from '../helpers/fake-shopify.js';

let shopify: FakeShopify;

function writeBack(overrides: { accessToken?: string; apiUrl?: string; timeoutMs?: number } = {}): ShopWriteBack {
  const config: ShopifyConfig = {
    webhookSecret: 'secret',
    linkMode: 'recoup',
    admin: {
      shop: 'snowdevil.myshopify.com',
      accessToken: overrides.accessToken ?? shopify.accessToken,
      apiUrl: overrides.apiUrl ?? shopify.url,
      apiVersion: '2026-10',
    },
  };
  const connector = createShopifyConnector(config, { timeoutMs: overrides.timeoutMs ?? 5_000 });
  if (!connector.writeBack) throw new Error('write-back is configured');
  return connector.writeBack;
}

let sequence = 0;
/** A fresh Shopify order id per test, so one server serves them all. */
function newOrder(state?: Parameters<FakeShopify['addOrder']>[1]): string {
  sequence += 1;
  const id = String(5609418810000 + sequence);
  shopify.addOrder(id, state);
  return id;
}

function paid(orderId: string, data: Record<string, unknown> = {}): EventForShop {
  return {
    id: `evt_paid_${orderId}`,
    type: 'payment.succeeded',
    data: {
      order_id: orderId,
      payment_id: `pay_${orderId}`,
      gateway: 'stripe',
      gateway_payment_id: `pi_${orderId}`,
      method: 'card',
      amount: 40300,
      currency: 'USD',
      attribution: 'sms',
      collected_by: 'recoup',
      attempt: 1,
      paid_at: '2026-12-05T09:00:00Z',
      ...data,
    },
  };
}

function refund(orderId: string): EventForShop {
  return {
    id: `evt_refund_${orderId}`,
    type: 'refund.succeeded',
    data: {
      order_id: orderId,
      refund_id: `ref_${orderId}`,
      payment_id: `pay_${orderId}`,
      amount: 40300,
      currency: 'USD',
      reason: 'ops',
      note: 'customer asked',
    },
  };
}

/** The operations the fake saw for one order. */
function callsFor(orderId: string): string[] {
  const gid = `gid://shopify/Order/${orderId}`;
  return shopify.requests
    .filter((r) => r.variables.id === gid || (r.variables.input as { id?: string } | undefined)?.id === gid)
    .map((r) => r.operation ?? '?');
}

beforeAll(async () => {
  shopify = await startFakeShopify();
});
afterAll(async () => {
  await shopify.close();
});

describe('Shopify write-back through the Admin GraphQL API', () => {
  it('marks an order recoup collected paid, tags it and appends to the merchant note', async () => {
    const id = newOrder({ note: 'Gift wrap, please' });
    const result = await writeBack().apply(paid(id));
    expect(result).toEqual({ kind: 'done', status: 200, detail: 'marked paid, tagged recoup-recovered, noted' });
    expect(callsFor(id)).toEqual(['RecoupOrderState', 'RecoupMarkPaid', 'RecoupTagOrder', 'RecoupNoteOrder']);
    const order = shopify.order(id)!;
    expect(order.financialStatus).toBe('PAID');
    expect(order.tags).toEqual(['recoup-recovered']);
    expect(order.note).toBe(
      `Gift wrap, please\nrecoup payment pay_${id}: USD 403.00 collected through a retry link (stripe pi_${id}).`,
    );
    const last = shopify.requests.at(-1)!;
    expect(last.path).toBe('/admin/api/2026-10/graphql.json');
    expect(last.token).toBe(shopify.accessToken);
  });

  it('finishes on a retry what a failed attempt left half done, without marking or noting twice', async () => {
    const id = newOrder();
    shopify.failNext(1, { status: 503 }, { operation: 'RecoupTagOrder' });
    const first = await writeBack().apply(paid(id));
    expect(first).toMatchObject({ kind: 'failed', status: 503 });
    expect(first.kind === 'failed' && first.detail).toContain('adding the tag recoup-recovered');
    expect(shopify.order(id)?.financialStatus).toBe('PAID');

    const second = await writeBack().apply(paid(id));
    expect(second).toEqual({ kind: 'done', status: 200, detail: 'already paid, tagged recoup-recovered, noted' });
    const third = await writeBack().apply(paid(id));
    expect(third).toMatchObject({ kind: 'done', detail: 'already paid, tagged recoup-recovered, note already there' });
    expect(callsFor(id).filter((op) => op === 'RecoupMarkPaid')).toHaveLength(1);
    expect(shopify.order(id)?.tags).toEqual(['recoup-recovered']);
    expect(shopify.order(id)?.note?.match(/recoup payment/g)).toHaveLength(1);
  });

  it('takes "already paid" from orderMarkAsPaid as done: the order was paid between the read and the mark', async () => {
    const id = newOrder();
    shopify.failNext(1, { userError: 'Order has already been paid' }, { operation: 'RecoupMarkPaid' });
    expect(await writeBack().apply(paid(id))).toMatchObject({ kind: 'done' });
  });

  it("fails with Shopify's own words on any other user error", async () => {
    const id = newOrder();
    shopify.failNext(1, { userError: 'Order cannot be marked as paid' }, { operation: 'RecoupMarkPaid' });
    expect(await writeBack().apply(paid(id))).toEqual({
      kind: 'failed',
      status: 200,
      detail: 'marking the order paid: Order cannot be marked as paid',
    });
    expect(shopify.order(id)?.tags).toEqual([]);
  });

  it('fails on a GraphQL error answered 200, as Shopify throttles', async () => {
    const id = newOrder();
    shopify.failNext(1, { graphQLError: 'Throttled' }, { operation: 'RecoupOrderState' });
    const result = await writeBack().apply(paid(id));
    expect(result).toMatchObject({ kind: 'failed', status: 200 });
    expect(result.kind === 'failed' && result.detail).toContain('Throttled');
  });

  it('fails for an order the shop does not have', async () => {
    expect(await writeBack().apply(paid('999999999'))).toEqual({
      kind: 'failed',
      status: 200,
      detail: 'no order gid://shopify/Order/999999999 in the shop',
    });
  });

  it('tags a refunded order and notes the refund, keeping what is in the note', async () => {
    const id = newOrder({ financialStatus: 'PAID', note: 'VIP', tags: ['wholesale'] });
    expect(await writeBack().apply(refund(id))).toEqual({
      kind: 'done',
      status: 200,
      detail: 'tagged recoup-refunded, noted',
    });
    expect(shopify.order(id)).toEqual({
      financialStatus: 'PAID',
      tags: ['wholesale', 'recoup-refunded'],
      note: `VIP\nrecoup refund ref_${id}: USD 403.00 refunded (asked for by ops): customer asked.`,
    });
    expect(callsFor(id)).not.toContain('RecoupMarkPaid');
  });

  it('skips, without a call, what Shopify already knows or has no order for', async () => {
    const id = newOrder();
    const before = shopify.requests.length;
    const skipped = [
      await writeBack().apply(paid(id, { collected_by: 'shop', gateway: 'shop', attempt: null })),
      await writeBack().apply(paid(id, { duplicate: true })),
      await writeBack().apply(paid('4e8d5c2a9b7f4a1c8e3d2b6a5f9c0e71')),
      await writeBack().apply({ id: 'evt_x', type: 'recovery.ended', data: { order_id: id } }),
    ];
    expect(skipped.map((r) => r.kind)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
    expect(shopify.requests.length).toBe(before);
  });

  it('fails, never naming the token, when Shopify refuses the credentials', async () => {
    const id = newOrder();
    const result = await writeBack({ accessToken: 'shpat_wrong_token' }).apply(paid(id));
    expect(result).toMatchObject({ kind: 'failed', status: 401 });
    expect(JSON.stringify(result)).not.toContain('shpat_wrong_token');
    expect(shopify.requests.at(-1)?.token).toBe('shpat_wrong_token');
  });

  it('fails with no status when Shopify does not answer in time, or cannot be reached', async () => {
    const id = newOrder();
    shopify.failNext(1, 'hang', { operation: 'RecoupOrderState' });
    const timedOut = await writeBack({ timeoutMs: 200 }).apply(paid(id));
    expect(timedOut).toMatchObject({ kind: 'failed', status: null });

    const closed = await startFakeShopify();
    const url = closed.url;
    await closed.close();
    const unreachable = await writeBack({ apiUrl: url }).apply(paid(id));
    expect(unreachable).toMatchObject({ kind: 'failed', status: null });
    expect(JSON.stringify(unreachable)).not.toContain(shopify.accessToken);
  });
});
