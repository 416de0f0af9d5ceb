import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { ConnectorMapping, ConnectorRequest } from '../../src/connectors/shop-connector.js';
import {
  checkShopifyEnv,
  defaultShopifyApiVersion,
  shopifyConfig,
  shopifyEnv,
  type ShopifyConfig,
} from '../../src/connectors/shopify/shopify-config.js';
import { createShopifyConnector } from '../../src/connectors/shopify/shopify-connector.js';
import type { EventInput } from '../../src/domain/event-schema.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { shopConnectorContract, type ConnectorFixture } from '../helpers/shop-connector.contract.js';

const secret = 'shopify-app-client-secret';
const config: ShopifyConfig = { webhookSecret: secret, linkMode: 'recoup', admin: undefined };
const connector = createShopifyConnector(config);

type Payload = Record<string, unknown>;

function fixture(name: string): Payload {
  return JSON.parse(fs.readFileSync(new URL(`../fixtures/shopify/${name}.json`, import.meta.url), 'utf8')) as Payload;
}

/** A webhook as Shopify sends it: the body signed with the app's secret, base64. */
function webhook(topic: string, body: Payload | string, options: { id?: string; signWith?: string } = {}) {
  const rawBody = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const request: ConnectorRequest = {
    rawBody,
    headers: {
      'content-type': 'application/json',
      'x-shopify-topic': topic,
      'x-shopify-hmac-sha256': createHmac('sha256', options.signWith ?? secret)
        .update(rawBody)
        .digest('base64'),
      'x-shopify-shop-domain': 'snowdevil.myshopify.com',
      'x-shopify-api-version': '2026-10',
      'x-shopify-webhook-id': options.id ?? `b54557e4-bdd9-4b37-8a5f-bf7d70bcd043-${topic}`,
      'x-shopify-triggered-at': '2026-12-05T08:00:00.000000Z',
    },
  };
  return request;
}

function resign(request: ConnectorRequest, signWith: string): ConnectorRequest {
  const signature = createHmac('sha256', signWith).update(request.rawBody).digest('base64');
  return { ...request, headers: { ...request.headers, 'x-shopify-hmac-sha256': signature } };
}

async function events(request: ConnectorRequest): Promise<EventInput[]> {
  const mapping = await connector.map(request);
  if (mapping.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(mapping)}`);
  return mapping.events;
}

async function only(request: ConnectorRequest): Promise<EventInput> {
  const [first, ...rest] = await events(request);
  expect(rest).toEqual([]);
  return first!;
}

const reason = (mapping: ConnectorMapping) => ('reason' in mapping ? mapping.reason : '');

const fixtures: ConnectorFixture[] = [
  {
    name: 'an order awaiting payment (bank deposit)',
    request: webhook('orders/create', fixture('order-pending')),
    expected: { kind: 'events', types: ['order.created'] },
  },
  {
    name: 'a new order already paid',
    request: webhook('orders/create', fixture('order-paid')),
    expected: { kind: 'events', types: ['payment.succeeded'] },
  },
  {
    name: 'an order paid later',
    request: webhook('orders/paid', fixture('order-paid')),
    expected: { kind: 'events', types: ['payment.succeeded'] },
  },
  {
    name: 'a cancelled order',
    request: webhook('orders/cancelled', fixture('order-cancelled')),
    expected: { kind: 'events', types: ['order.cancelled'] },
  },
  {
    name: 'an abandoned checkout',
    request: webhook('checkouts/create', fixture('checkout-abandoned')),
    expected: { kind: 'events', types: ['order.created'] },
  },
  {
    name: 'a checkout completed after all',
    request: webhook('checkouts/update', fixture('checkout-completed')),
    expected: { kind: 'events', types: ['payment.succeeded'] },
  },
  {
    name: 'a new order only authorized',
    request: webhook('orders/create', { ...fixture('order-paid'), financial_status: 'authorized' }),
    expected: { kind: 'ignored' },
  },
  {
    name: 'a customer redact request',
    request: webhook('customers/redact', fixture('customers-redact')),
    expected: {
      kind: 'forget',
      customerIds: [
        'shopify-cus-191167',
        // A guest checkout with the same address was stored under a digest of it.
        `shopify-em-${createHash('sha256').update('john@example.com').digest('hex').slice(0, 32)}`,
      ],
    },
  },
  {
    name: 'a shop redact request',
    request: webhook('shop/redact', fixture('shop-redact')),
    expected: { kind: 'rejected' },
  },
  {
    name: 'a customer data request',
    request: webhook('customers/data_request', fixture('customers-data-request')),
    expected: { kind: 'rejected' },
  },
  {
    name: 'a checkout no one left an address on',
    request: webhook('checkouts/create', {
      ...fixture('checkout-abandoned'),
      email: null,
      customer: null,
      billing_address: null,
    }),
    expected: { kind: 'rejected' },
  },
];

shopConnectorContract('Shopify', () => ({
  connector,
  fixtures,
  forge: (request) => resign(request, 'another-secret'),
}));

describe('Shopify signatures', () => {
  const request = webhook('orders/create', fixture('order-pending'));
  const unauthorized = (bad: ConnectorRequest) => {
    let caught: unknown;
    try {
      connector.verify(bad);
    } catch (err) {
      caught = err;
    }
    return isRecoupError(caught, 'unauthorized');
  };

  it('refuses a webhook with no signature, and one whose base64 only decodes to the right bytes', () => {
    const { 'x-shopify-hmac-sha256': signature, ...unsigned } = request.headers;
    expect(unauthorized({ ...request, headers: unsigned })).toBe(true);
    // Node's decoder skips unknown characters: "AB*CD" decodes like "ABCD"; Shopify sends neither.
    const padded = `${String(signature).slice(0, 4)}*${String(signature).slice(4)}`;
    expect(unauthorized({ ...request, headers: { ...request.headers, 'x-shopify-hmac-sha256': padded } })).toBe(true);
  });

  it('names the delivery by X-Shopify-Webhook-Id, the same on Shopify retries', () => {
    expect(connector.describe(request)).toEqual({
      deliveryId: 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043-orders/create',
      topic: 'orders/create',
    });
    const { 'x-shopify-webhook-id': _id, ...headers } = request.headers;
    const withoutId = connector.describe({ ...request, headers });
    expect(withoutId.deliveryId).toMatch(/^sha256-[0-9a-f]{32}$/);
    expect(connector.describe({ ...request, headers }).deliveryId).toBe(withoutId.deliveryId);
  });
});

describe('Shopify orders', () => {
  it('maps an order awaiting payment with its cart, under the full id from admin_graphql_api_id', async () => {
    const event = await only(webhook('orders/create', fixture('order-pending')));
    expect(event).toMatchObject({
      type: 'order.created',
      occurred_at: '2026-11-30T10:14:32-05:00',
      order: {
        // The JSON number 820982911946154508 is past 2^53; the gid string keeps its digits.
        id: '820982911946154508',
        amount: 40300,
        currency: 'USD',
        description: 'Order #9999',
        customer: {
          id: 'shopify-cus-115310627314723954',
          name: 'John Smith',
          email: 'jon@example.com',
          // "555-555-SHIP" is no E.164 number: dropped, not guessed at.
          phone: null,
          locale: 'en-US',
        },
        items: [
          { name: 'IPod Nano - 8GB', quantity: 1, amount: 19900, sku: 'IPOD2008PINK' },
          { name: 'IPod Nano - 8GB', quantity: 2, amount: 19400, sku: 'IPOD2008PINK' },
        ],
      },
    });
    expect(event.order?.items?.every((item) => item.image_url === undefined)).toBe(true);
    // order_status_url is a status page, not a page to pay on.
    expect(event.order?.payment_url).toBeUndefined();
  });

  it("takes the shop's money, not the customer's presentment currency, and the E.164 phone when there is no email", async () => {
    const event = await only(webhook('orders/paid', fixture('order-paid')));
    expect(event.order).toMatchObject({
      id: '5609418817843',
      amount: 12990,
      currency: 'EUR',
      customer: { id: 'shopify-cus-6902234578211', email: null, phone: '+4915112345678', locale: 'de' },
      items: [{ name: 'Wool Scarf', quantity: 2, amount: 11990, sku: 'SCARF-GRY' }],
    });
    expect(event.payment).toEqual({ gateway: 'shopify', method: 'shopify_payments', amount: 12990 });
  });

  it('links an order to its invoice when the payload has one', async () => {
    const invoice = 'https://snowdevil.myshopify.com/1/invoices/abc';
    const event = await only(webhook('orders/create', { ...fixture('order-pending'), invoice_url: invoice }));
    expect(event.order?.payment_url).toBe(invoice);
  });

  it('ignores a new order in any other financial state, saying which', async () => {
    for (const status of ['authorized', 'partially_paid', 'refunded', 'voided']) {
      const mapping = await connector.map(
        webhook('orders/create', { ...fixture('order-pending'), financial_status: status }),
      );
      expect(mapping.kind).toBe('ignored');
      expect(reason(mapping)).toContain(status);
    }
  });

  it('converts decimal strings with the currency exponent: JPY 0 digits, KWD 3', async () => {
    const pending = fixture('order-pending');
    const inCurrency = (currency: string, total: string) => ({
      ...pending,
      currency,
      total_price: total,
      total_price_set: { shop_money: { amount: total, currency_code: currency } },
      line_items: [],
    });
    expect((await only(webhook('orders/create', inCurrency('JPY', '1200')))).order?.amount).toBe(1200);
    expect((await only(webhook('orders/create', inCurrency('JPY', '1200.00')))).order?.amount).toBe(1200);
    expect((await only(webhook('orders/create', inCurrency('KWD', '12.345')))).order?.amount).toBe(12345);
    expect((await only(webhook('orders/create', inCurrency('USD', '0.5')))).order?.amount).toBe(50);
  });

  it('rejects what it cannot carry: an unknown currency, a zero, negative, malformed or too precise total, no contact', async () => {
    const pending = fixture('order-pending');
    const cases: Array<[Payload, string]> = [
      [{ ...pending, total_price_set: { shop_money: { amount: '10.00', currency_code: 'XYZ' } } }, 'currency'],
      [{ ...pending, total_price_set: { shop_money: { amount: '0.00', currency_code: 'USD' } } }, 'total'],
      [{ ...pending, total_price_set: { shop_money: { amount: '-5.00', currency_code: 'USD' } } }, 'total'],
      [{ ...pending, total_price_set: { shop_money: { amount: '1,000.00', currency_code: 'USD' } } }, 'total'],
      [{ ...pending, total_price_set: { shop_money: { amount: '10.005', currency_code: 'USD' } } }, 'total'],
      [{ ...pending, total_price_set: undefined, total_price: 'abc', currency: 'USD' }, 'total'],
      [{ ...pending, email: 'not an address', contact_email: null, customer: null, phone: '12345' }, 'contact'],
      [{ ...pending, admin_graphql_api_id: null, id: 'x' }, 'order id'],
    ];
    for (const [payload, why] of cases) {
      const mapping = await connector.map(webhook('orders/create', payload));
      expect(mapping.kind, why).toBe('rejected');
      expect(reason(mapping)).toContain(why);
    }
  });

  it('leaves out a cart it cannot read whole, and keeps the order', async () => {
    const pending = fixture('order-pending');
    const lines = pending.line_items as Payload[];
    const event = await only(
      webhook('orders/create', { ...pending, line_items: [lines[0], { ...lines[1], price_set: null, price: 'n/a' }] }),
    );
    expect(event.order?.amount).toBe(40300);
    expect(event.order?.items).toBeUndefined();
  });

  it('gives a redelivery the same event id, and another delivery or other content another', async () => {
    const body = fixture('order-pending');
    const first = await only(webhook('orders/create', body));
    expect((await only(webhook('orders/create', body))).id).toBe(first.id);
    expect((await only(webhook('orders/create', body, { id: 'another-webhook-id' }))).id).not.toBe(first.id);
    const changed = { ...body, total_price_set: { shop_money: { amount: '404.00', currency_code: 'USD' } } };
    expect((await only(webhook('orders/create', changed))).id).not.toBe(first.id);
  });

  it('maps a cancellation at its cancelled_at', async () => {
    const event = await only(webhook('orders/cancelled', fixture('order-cancelled')));
    expect(event).toMatchObject({
      type: 'order.cancelled',
      occurred_at: '2026-12-02T16:20:00-05:00',
      order: { id: '5609418817999' },
    });
  });
});

describe('Shopify checkouts', () => {
  it('maps an open checkout under its token, with its recovery URL as the page to pay', async () => {
    const checkout = fixture('checkout-abandoned');
    const event = await only(webhook('checkouts/create', checkout));
    expect(event).toMatchObject({
      type: 'order.created',
      occurred_at: '2026-12-03T20:41:05+08:00',
      order: {
        id: '4e8d5c2a9b7f4a1c8e3d2b6a5f9c0e71',
        amount: 3600,
        currency: 'JPY',
        payment_url: checkout.abandoned_checkout_url,
        customer: {
          id: 'shopify-cus-7012345678901',
          email: 'mei.lin@example.com',
          phone: '+819012345678',
          locale: 'ja',
        },
        items: [{ name: 'Matcha Tin', quantity: 2, amount: 3600, sku: 'MATCHA-40' }],
      },
    });
  });

  it('ends the recovery of a completed checkout with a payment for its token', async () => {
    const event = await only(webhook('checkouts/update', fixture('checkout-completed')));
    expect(event).toMatchObject({
      type: 'payment.succeeded',
      occurred_at: '2026-12-04T09:15:30+08:00',
      order: { id: '4e8d5c2a9b7f4a1c8e3d2b6a5f9c0e71', amount: 3600 },
      payment: { gateway: 'shopify', method: 'shopify_payments', amount: 3600 },
    });
  });

  it('names a guest by a digest of the address, never the address, the same each time', async () => {
    const guest = { ...fixture('checkout-abandoned'), customer: null, email: 'Mei.Lin@Example.com ' };
    const first = await only(webhook('checkouts/create', guest));
    const again = await only(webhook('checkouts/update', { ...guest, email: 'mei.lin@example.com' }));
    expect(first.order?.customer.id).toMatch(/^shopify-em-[0-9a-f]{32}$/);
    expect(again.order?.customer.id).toBe(first.order?.customer.id);
    expect(first.order?.customer.email).toBe('mei.lin@example.com');
  });

  it('keeps an internationalised email, and knows the guest by it whichever way the domain is written', async () => {
    const guest = { ...fixture('checkout-abandoned'), customer: null, email: '美琳@例子.广告' };
    const first = await only(webhook('checkouts/create', guest));
    const again = await only(webhook('checkouts/update', { ...guest, email: '美琳@xn--fsqu00a.xn--4rr70v' }));
    expect(first.order?.customer.email).toBe('美琳@xn--fsqu00a.xn--4rr70v');
    expect(again.order?.customer.id).toBe(first.order?.customer.id);
  });
});

describe('Shopify privacy webhooks', () => {
  it('forgets the customer under each id it may be stored as', async () => {
    const mapping = await connector.map(webhook('customers/redact', fixture('customers-redact')));
    const guest = await only(
      webhook('checkouts/create', { ...fixture('checkout-abandoned'), customer: null, email: 'john@example.com' }),
    );
    expect(mapping).toEqual({ kind: 'forget', customerIds: ['shopify-cus-191167', guest.order?.customer.id] });
  });

  it('tells ops what a shop redact and a data request ask of them, as deliveries the console lists', async () => {
    const shop = await connector.map(webhook('shop/redact', fixture('shop-redact')));
    expect(shop.kind).toBe('rejected');
    expect(reason(shop)).toContain('snowdevil.myshopify.com');
    expect(reason(shop)).toContain('recoup customers forget');
    const data = await connector.map(webhook('customers/data_request', fixture('customers-data-request')));
    expect(reason(data)).toContain('shopify-cus-191167');
    expect(reason(data)).toContain('data request 9999');
  });

  it('ignores a topic recoup does not use', async () => {
    const mapping = await connector.map(webhook('products/update', { id: 1 }));
    expect(mapping.kind).toBe('ignored');
  });
});

describe('Shopify configuration', () => {
  const parse = (env: Record<string, string>) => {
    const schema = z.object(shopifyEnv).superRefine(checkShopifyEnv);
    return schema.safeParse(env);
  };

  it('is off without SHOPIFY_WEBHOOK_SECRET, and writes back only with a shop and a token', () => {
    expect(shopifyConfig(z.object(shopifyEnv).parse({}))).toBeUndefined();
    expect(shopifyConfig(z.object(shopifyEnv).parse({ SHOPIFY_WEBHOOK_SECRET: 's' }))).toEqual({
      webhookSecret: 's',
      linkMode: 'recoup',
      admin: undefined,
    });
    const full = parse({
      SHOPIFY_WEBHOOK_SECRET: 's',
      SHOPIFY_SHOP: 'snowdevil.myshopify.com',
      SHOPIFY_ADMIN_TOKEN: 'shpat_x',
      SHOPIFY_LINK_MODE: 'platform',
    });
    expect(full.success).toBe(true);
    expect(shopifyConfig(full.data!)).toEqual({
      webhookSecret: 's',
      linkMode: 'platform',
      admin: {
        shop: 'snowdevil.myshopify.com',
        accessToken: 'shpat_x',
        apiUrl: undefined,
        apiVersion: defaultShopifyApiVersion,
      },
    });
  });

  it('names each variable that is missing or malformed', () => {
    const paths = (env: Record<string, string>) => {
      const result = parse(env);
      return result.success ? [] : result.error.issues.map((issue) => issue.path.join('.'));
    };
    expect(paths({ SHOPIFY_SHOP: 'snowdevil.myshopify.com' })).toEqual([
      'SHOPIFY_WEBHOOK_SECRET',
      'SHOPIFY_ADMIN_TOKEN',
    ]);
    expect(
      paths({ SHOPIFY_WEBHOOK_SECRET: 's', SHOPIFY_ADMIN_TOKEN: 't', SHOPIFY_SHOP: 'https://snowdevil.com' }),
    ).toEqual(['SHOPIFY_SHOP']);
    expect(paths({ SHOPIFY_WEBHOOK_SECRET: 's', SHOPIFY_API_VERSION: 'latest' })).toEqual(['SHOPIFY_API_VERSION']);
    expect(paths({ SHOPIFY_WEBHOOK_SECRET: 's', SHOPIFY_LINK_MODE: 'shop' })).toEqual(['SHOPIFY_LINK_MODE']);
  });
});
