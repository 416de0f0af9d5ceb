import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { ConnectorMapping, ConnectorRequest } from '../../src/connectors/shop-connector.js';
import {
  checkWoocommerceEnv,
  woocommerceConfig,
  woocommerceEnv,
  type WoocommerceConfig,
} from '../../src/connectors/woocommerce/woocommerce-config.js';
import { createWoocommerceConnector } from '../../src/connectors/woocommerce/woocommerce-connector.js';
import { decimalToMinor as toMinor } from '../../src/platform/format-amount.js';
import { toE164 } from '../../src/connectors/woocommerce/woocommerce-phone.js';
import type { EventInput } from '../../src/domain/event-schema.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { classifyFailure } from '../../src/recoveries/classify-failure.js';
import { shopConnectorContract, type ConnectorFixture } from '../helpers/shop-connector.contract.js';

const secret = 'whsec-woo-test';
const config: WoocommerceConfig = { webhookSecret: secret, linkMode: 'recoup', api: undefined };
const connector = createWoocommerceConnector(config);

type WooOrderJson = Record<string, unknown> & { billing: Record<string, unknown> };

function fixture(name: string): WooOrderJson {
  return JSON.parse(
    readFileSync(new URL(`../fixtures/woocommerce/${name}.json`, import.meta.url), 'utf8'),
  ) as WooOrderJson;
}

function sign(rawBody: Buffer, key: string): string {
  return createHmac('sha256', key).update(rawBody).digest('base64');
}

/** A delivery as WooCommerce sends it: compact JSON, its topic and delivery id, signed. */
function delivery(
  body: unknown,
  options: { topic?: string; deliveryId?: string; key?: string } = {},
): ConnectorRequest {
  const rawBody = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const topic = options.topic ?? 'order.updated';
  return {
    rawBody,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)',
      'x-wc-webhook-source': 'https://shop.example.com/',
      'x-wc-webhook-topic': topic,
      'x-wc-webhook-resource': topic.split('.')[0],
      'x-wc-webhook-event': topic.split('.')[1],
      'x-wc-webhook-signature': sign(rawBody, options.key ?? secret),
      'x-wc-webhook-id': '12',
      'x-wc-webhook-delivery-id': options.deliveryId ?? 'a5c8bf30b8d0e0e0c2e3f4a5b6c7d8e9',
    },
  };
}

/** The ping WooCommerce posts when a webhook is saved: form-encoded, unsigned. */
const ping: ConnectorRequest = {
  rawBody: Buffer.from('webhook_id=12'),
  headers: {
    'content-type': 'application/x-www-form-urlencoded',
    'user-agent': 'WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)',
  },
};

function forge(request: ConnectorRequest): ConnectorRequest {
  return {
    ...request,
    headers: { ...request.headers, 'x-wc-webhook-signature': sign(request.rawBody, 'not-the-secret') },
  };
}

function onlyEvent(mapping: ConnectorMapping): EventInput {
  if (mapping.kind !== 'events') throw new Error(`expected events, got ${mapping.kind}: ${JSON.stringify(mapping)}`);
  expect(mapping.events).toHaveLength(1);
  return mapping.events[0]!;
}

const contractFixtures: ConnectorFixture[] = [
  {
    name: 'a guest places an order that is not paid yet (order.created, pending)',
    request: delivery(fixture('order-pending'), { topic: 'order.created' }),
    expected: { kind: 'events', types: ['order.created'] },
  },
  {
    name: "a registered customer's card payment failed",
    request: delivery(fixture('order-failed')),
    expected: { kind: 'events', types: ['payment.failed'] },
  },
  {
    name: 'the order was paid (processing)',
    request: delivery(fixture('order-processing')),
    expected: { kind: 'events', types: ['payment.succeeded'] },
  },
  {
    name: 'the order was cancelled',
    request: delivery(fixture('order-cancelled')),
    expected: { kind: 'events', types: ['order.cancelled'] },
  },
  {
    name: 'the order is on hold (a bank transfer awaited)',
    request: delivery(fixture('order-on-hold')),
    expected: { kind: 'ignored' },
  },
  { name: "WooCommerce's ping on saving a webhook", request: ping, expected: { kind: 'ignored' } },
  {
    name: 'a topic recoup does not use',
    request: delivery({ id: 25, email: 'jane@example.co.uk' }, { topic: 'customer.created' }),
    expected: { kind: 'ignored' },
  },
  {
    name: 'an order with neither an email nor a usable phone',
    request: delivery({
      ...fixture('order-pending'),
      billing: { ...fixture('order-pending').billing, email: '', phone: 'call me' },
    }),
    expected: { kind: 'rejected' },
  },
  {
    name: 'an order in a currency that does not exist',
    request: delivery({ ...fixture('order-pending'), currency: 'XYZ' }),
    expected: { kind: 'rejected' },
  },
  {
    name: 'an order of nothing (total 0.00)',
    request: delivery({ ...fixture('order-pending'), total: '0.00' }),
    expected: { kind: 'rejected' },
  },
];

shopConnectorContract('WooCommerce connector', () => ({ connector, fixtures: contractFixtures, forge }));

describe('WooCommerce webhook signatures', () => {
  it('refuses a delivery without a signature, and a ping-like body that is not exactly a ping', () => {
    const unsigned = delivery(fixture('order-pending'));
    delete (unsigned.headers as Record<string, unknown>)['x-wc-webhook-signature'];
    for (const request of [
      unsigned,
      { ...ping, rawBody: Buffer.from('webhook_id=12&status=paid') },
      { ...ping, rawBody: Buffer.from('{"webhook_id":12}') },
    ]) {
      let caught: unknown;
      try {
        connector.verify(request);
      } catch (err) {
        caught = err;
      }
      expect(isRecoupError(caught, 'unauthorized')).toBe(true);
    }
  });

  it('refuses a signature that is not base64 of the right length', () => {
    const request = delivery(fixture('order-pending'));
    expect(() =>
      connector.verify({ ...request, headers: { ...request.headers, 'x-wc-webhook-signature': 'short' } }),
    ).toThrow(/signature/);
  });

  it('names the delivery by its delivery id and topic, and the ping by its webhook', () => {
    expect(connector.describe(delivery(fixture('order-failed'), { deliveryId: 'd-1' }))).toEqual({
      deliveryId: 'd-1',
      topic: 'order.updated',
    });
    expect(connector.describe(ping)).toEqual({ deliveryId: 'ping-12', topic: 'ping' });
  });
});

describe('WooCommerce orders → recoup events', () => {
  it('maps a pending guest order: amount in cents, normalised contact, cart lines, payment page', async () => {
    const event = onlyEvent(await connector.map(delivery(fixture('order-pending'), { topic: 'order.created' })));
    expect(event.type).toBe('order.created');
    expect(event.occurred_at).toBe('2026-03-08T15:28:09.000Z');
    expect(event.payment).toBeUndefined();
    const order = event.order!;
    expect(order).toMatchObject({ id: '727', amount: 2935, currency: 'USD' });
    expect(order.customer).toMatchObject({
      name: 'John Doe',
      email: 'john.doe@example.com',
      phone: '+15555555555',
      locale: 'en',
    });
    expect(order.customer.id).toMatch(/^woo-guest-[0-9a-f]{24}$/);
    expect(order.items).toEqual([
      {
        name: 'Woo Single #1',
        quantity: 2,
        amount: 600,
        sku: 'WOO-SINGLE-1',
        image_url: 'https://shop.example.com/wp-content/uploads/2026/01/single-1.jpg',
      },
      // Served over http, the image is left out: a page served over https could not load it.
      {
        // WordPress's HTML entities decoded: recoup's templates escape text themselves.
        name: 'Ship Your Idea – Color: Black, Size: M Test',
        quantity: 1,
        amount: 1200,
        sku: undefined,
        image_url: undefined,
      },
    ]);
    expect(order.payment_url).toBe(
      'https://shop.example.com/checkout/order-pay/727/?pay_for_order=true&key=wc_order_58d2d042d1d',
    );
  });

  it('gives the same guest the same customer id on every order, whatever the case of the email', async () => {
    const first = onlyEvent(await connector.map(delivery(fixture('order-pending'))));
    const other = {
      ...fixture('order-pending'),
      id: 900,
      billing: { ...fixture('order-pending').billing, email: 'john.doe@EXAMPLE.com' },
    };
    const second = onlyEvent(await connector.map(delivery(other)));
    expect(second.order!.customer.id).toBe(first.order!.customer.id);
  });

  it("maps a failed payment with WooCommerce's customer id, its gateway, and a failure code recoup classifies", async () => {
    const event = onlyEvent(await connector.map(delivery(fixture('order-failed'))));
    expect(event.type).toBe('payment.failed');
    expect(event.order).toMatchObject({ id: '728', amount: 2935, currency: 'GBP' });
    expect(event.order!.customer).toMatchObject({
      id: 'woo-cus-25',
      phone: '+442079460018',
      email: 'jane@example.co.uk',
    });
    expect(event.order!.customer.locale).toBeUndefined();
    expect(event.payment).toMatchObject({ gateway: 'stripe', failure_code: 'payment_declined' });
    expect(event.payment!.failure_message).toContain('Credit Card (Stripe)');
    // A generic decline: remind to try again later or with another method.
    expect(classifyFailure({ gateway: 'stripe', code: event.payment!.failure_code })).toBe('insufficient_funds');
  });

  it.each([
    ['pending', 'order.created'],
    ['failed', 'payment.failed'],
    ['processing', 'payment.succeeded'],
    ['completed', 'payment.succeeded'],
    ['cancelled', 'order.cancelled'],
    ['refunded', 'order.cancelled'],
    ['trash', 'order.cancelled'],
  ])('maps status %s to %s', async (status, type) => {
    expect(onlyEvent(await connector.map(delivery({ ...fixture('order-pending'), status }))).type).toBe(type);
  });

  it.each(['on-hold', 'checkout-draft', 'wc-custom-status'])('ignores status %s', async (status) => {
    expect((await connector.map(delivery({ ...fixture('order-pending'), status }))).kind).toBe('ignored');
  });

  it('takes order.restored like order.updated, and ignores order.deleted (its body is only the id)', async () => {
    expect(onlyEvent(await connector.map(delivery(fixture('order-pending'), { topic: 'order.restored' }))).type).toBe(
      'order.created',
    );
    expect((await connector.map(delivery({ id: 727 }, { topic: 'order.deleted' }))).kind).toBe('ignored');
  });

  it('derives event ids from the delivery id and the content: a resend with another body is a new event', async () => {
    const body = fixture('order-failed');
    const id = async (request: ConnectorRequest) => onlyEvent(await connector.map(request)).id;
    const original = await id(delivery(body, { deliveryId: 'd-1' }));
    expect(await id(delivery(body, { deliveryId: 'd-1' }))).toBe(original);
    expect(await id(delivery({ ...body, date_modified_gmt: '2026-03-08T15:45:00' }, { deliveryId: 'd-1' }))).not.toBe(
      original,
    );
    expect(await id(delivery(body, { deliveryId: 'd-2' }))).not.toBe(original);
  });

  it("converts totals with the currency's own minor unit, and refuses what does not fit it", async () => {
    const total = async (currency: string, value: string) =>
      connector.map(delivery({ ...fixture('order-pending'), currency, total: value, line_items: [] }));
    expect(onlyEvent(await total('JPY', '1500')).order!.amount).toBe(1500);
    expect(onlyEvent(await total('JPY', '1500.00')).order!.amount).toBe(1500);
    expect(onlyEvent(await total('KWD', '12.345')).order!.amount).toBe(12345);
    expect(onlyEvent(await total('usd', '29.3')).order).toMatchObject({ amount: 2930, currency: 'USD' });
    for (const [currency, value] of [
      ['USD', '12.345'],
      ['USD', '-5.00'],
      ['USD', '1e3'],
      ['USD', ''],
      ['JPY', '0'],
    ] as const) {
      expect((await total(currency, value)).kind, `${value} ${currency}`).toBe('rejected');
    }
    expect(toMinor('19.99', 'EUR')).toBe(1999);
  });

  it('keeps the email and drops a phone that cannot be made E.164 for sure', async () => {
    const order = {
      ...fixture('order-pending'),
      billing: { ...fixture('order-pending').billing, phone: '555-5555 ext 2' },
    };
    const customer = onlyEvent(await connector.map(delivery(order))).order!.customer;
    expect(customer.email).toBe('john.doe@example.com');
    expect(customer.phone).toBeUndefined();
  });

  it('keeps an internationalised email, its domain in ASCII, and knows the guest by it either way', async () => {
    const withEmail = (email: string) => ({
      ...fixture('order-pending'),
      billing: { ...fixture('order-pending').billing, email },
    });
    const unicode = onlyEvent(await connector.map(delivery(withEmail('José@Bücher.de')))).order!.customer;
    const ascii = onlyEvent(await connector.map(delivery(withEmail('josé@xn--bcher-kva.de')))).order!.customer;
    expect(unicode.email).toBe('josé@xn--bcher-kva.de');
    expect(ascii.id).toBe(unicode.id);
  });

  it('takes a phone alone when the email is missing or not an address', async () => {
    const billing = { ...fixture('order-failed').billing, email: 'not-an-email' };
    const customer = onlyEvent(await connector.map(delivery({ ...fixture('order-failed'), billing }))).order!.customer;
    expect(customer).toMatchObject({ email: undefined, phone: '+442079460018' });
  });

  it('leaves out cart lines it cannot read rather than refusing the order', async () => {
    const order = {
      ...fixture('order-pending'),
      line_items: [{ name: 'Mystery', quantity: 0, total: '1.00' }, { name: '', quantity: 1, total: '1.00' }, 'junk'],
    };
    const mapped = onlyEvent(await connector.map(delivery(order))).order!;
    expect(mapped.items).toBeUndefined();
    expect(mapped.amount).toBe(2935);
  });

  it('rejects an order with no readable date rather than inventing one', async () => {
    const order = { ...fixture('order-pending'), date_modified_gmt: null, date_created_gmt: 'yesterday' };
    expect((await connector.map(delivery(order))).kind).toBe('rejected');
  });
});

describe('billing phones → E.164', () => {
  it.each([
    ['+86 138-0013-8000', 'CN', '+8613800138000'],
    ['13800138000', 'CN', '+8613800138000'],
    ['010 6552 9988', 'CN', '+861065529988'],
    ['+44 (0)20 7946 0018', 'GB', '+442079460018'],
    ['020 7946 0018', 'GB', '+442079460018'],
    ['07911 123456', 'GB', '+447911123456'],
    ['0044 7911 123456', 'DE', '+447911123456'],
    ['(415) 555-2671', 'US', '+14155552671'],
    ['1-415-555-2671', 'US', '+14155552671'],
    ['+1 415 555 2671', undefined, '+14155552671'],
    ['030 901820', 'DE', '+4930901820'],
  ])('%s (%s) → %s', (phone, country, expected) => {
    expect(toE164(phone, country)).toBe(expected);
  });

  it.each([
    ['020 7946 0018', undefined, 'no country: the calling code is unknown'],
    ['020 7946 0018', 'BR', 'a country outside the table'],
    ['415 555 267', 'US', 'too short'],
    ['123 456 7890', 'US', 'a North American number never starts with 1'],
    ['+0 123 456 789', 'US', 'no calling code starts with 0'],
    ['555-1234 ext. 5', 'US', 'an extension'],
    ['+1 (415) CALL-NOW', 'US', 'letters'],
    ['', 'US', 'empty'],
  ])('%s (%s) is dropped: %s', (phone, country, _why) => {
    expect(toE164(phone, country)).toBeUndefined();
  });
});

describe('WooCommerce configuration', () => {
  const schema = z.object(woocommerceEnv).superRefine(checkWoocommerceEnv);
  const full = {
    WOOCOMMERCE_WEBHOOK_SECRET: 'whsec',
    WOOCOMMERCE_URL: 'https://shop.example.com/',
    WOOCOMMERCE_CONSUMER_KEY: 'ck_1',
    WOOCOMMERCE_CONSUMER_SECRET: 'cs_1',
  };

  it('is off without the webhook secret', () => {
    expect(woocommerceConfig(schema.parse({}))).toBeUndefined();
    expect(woocommerceConfig(schema.parse({ WOOCOMMERCE_WEBHOOK_SECRET: '' }))).toBeUndefined();
  });

  it('turns the write-back on only with the address, key and secret together', () => {
    expect(woocommerceConfig(schema.parse(full))).toEqual({
      webhookSecret: 'whsec',
      linkMode: 'recoup',
      api: { url: 'https://shop.example.com', consumerKey: 'ck_1', consumerSecret: 'cs_1' },
    });
    const webhooksOnly = woocommerceConfig(
      schema.parse({ WOOCOMMERCE_WEBHOOK_SECRET: 'whsec', WOOCOMMERCE_LINK_MODE: 'platform' }),
    );
    expect(webhooksOnly).toEqual({ webhookSecret: 'whsec', linkMode: 'platform', api: undefined });
    expect(createWoocommerceConnector(webhooksOnly!).writeBack).toBeUndefined();
    // With the default link mode its write-back also holds pending orders while they are recovered.
    expect(createWoocommerceConnector(woocommerceConfig(schema.parse(full))!).writeBack?.events).toEqual([
      'recovery.started',
      'recovery.ended',
      'payment.succeeded',
      'refund.succeeded',
    ]);
  });

  it('names every missing variable of a partial set, and an address that is not http(s)', () => {
    const partial = schema.safeParse({ ...full, WOOCOMMERCE_CONSUMER_SECRET: undefined });
    expect(partial.success).toBe(false);
    expect(partial.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['WOOCOMMERCE_CONSUMER_SECRET']);
    const noSecret = schema.safeParse({ ...full, WOOCOMMERCE_WEBHOOK_SECRET: undefined });
    expect(noSecret.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['WOOCOMMERCE_WEBHOOK_SECRET']);
    const badUrl = schema.safeParse({ ...full, WOOCOMMERCE_URL: 'shop.example.com' });
    expect(badUrl.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['WOOCOMMERCE_URL']);
    expect(schema.safeParse({ WOOCOMMERCE_LINK_MODE: 'elsewhere' }).success).toBe(false);
  });
});
