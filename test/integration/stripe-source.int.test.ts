import { readFileSync } from 'node:fs';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectorMapping, ConnectorRequest, ShopConnector } from '../../src/connectors/shop-connector.js';
import { createStripeSourceConnector } from '../../src/connectors/stripe/stripe-source-connector.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { startFakeStripe, type FakeStripe } from '../helpers/fake-stripe.js';

// The customer fetch runs through the real `stripe` SDK, against a local fake of Stripe's API.

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const customerId = 'cus_QhTzLm8Yc2VbNw';

function fixture(name: string): Json {
  return JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), 'utf8')) as Json;
}

let stripe: FakeStripe;

beforeAll(async () => {
  stripe = await startFakeStripe();
});
afterAll(async () => {
  await stripe.close();
});
beforeEach(() => {
  stripe.reset();
});

function connector(options: { secretKey?: string; timeoutMs?: number } = {}): ShopConnector {
  return createStripeSourceConnector(
    {
      webhookSecret: stripe.webhookSecret,
      secretKey: options.secretKey ?? stripe.secretKey,
      apiUrl: stripe.url,
      linkMode: 'recoup',
    },
    options.timeoutMs === undefined ? {} : { customerTimeoutMs: options.timeoutMs },
  );
}

function signed(event: Json): ConnectorRequest {
  const payload = JSON.stringify(event);
  return {
    rawBody: Buffer.from(payload),
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: stripe.webhookSecret }),
    },
  };
}

/** The declined JPY PaymentIntent that names only its customer. */
const customerOnly = () => signed(fixture('payment_intent.payment_failed.customer_only'));

async function mapOrError(request: ConnectorRequest, c = connector()): Promise<ConnectorMapping | unknown> {
  try {
    return await c.map(request);
  } catch (error) {
    return error;
  }
}

describe('Stripe as a shop source: customers fetched from Stripe', () => {
  it('fetches the customer an event names only by id, with the secret key, and maps their contact and locale', async () => {
    stripe.addCustomer({
      id: customerId,
      email: 'Haruto.Sato@example.jp',
      phone: '+81 90-1234-5678',
      name: '佐藤 陽翔',
      preferred_locales: ['ja-JP', 'en'],
    });
    const mapping = await connector().map(customerOnly());
    expect(mapping).toMatchObject({
      kind: 'events',
      events: [
        {
          type: 'payment.failed',
          order: {
            id: 'pi_3PqTzB2eZvKYlo2C1Nn4Rt7Q',
            amount: 500000,
            currency: 'JPY',
            customer: {
              id: `stripe-${customerId}`,
              email: 'haruto.sato@example.jp',
              phone: '+819012345678',
              name: '佐藤 陽翔',
              locale: 'ja-JP',
            },
          },
          payment: { gateway: 'stripe', method: 'card', failure_code: 'expired_card' },
        },
      ],
    });
    expect(stripe.requests).toHaveLength(1);
    expect(stripe.requests[0]).toMatchObject({
      method: 'GET',
      path: `/v1/customers/${customerId}`,
      operation: 'retrieve_customer',
      authorized: true,
      status: 200,
    });
  });

  it('does not call Stripe without a secret key', async () => {
    const noKey = createStripeSourceConnector({
      webhookSecret: stripe.webhookSecret,
      secretKey: undefined,
      apiUrl: stripe.url,
      linkMode: 'recoup',
    });
    expect(await noKey.map(customerOnly())).toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining(`customer ${customerId} is not fetched without STRIPE_SOURCE_SECRET_KEY`),
    });
    expect(stripe.requests).toHaveLength(0);
  });

  it('rejects, saying why, when the customer is unknown, deleted or the key refused: a redelivery would fail the same way', async () => {
    const unknown = await connector().map(customerOnly());
    expect(unknown).toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining(`fetching customer ${customerId} failed`),
    });
    expect(unknown).toMatchObject({ reason: expect.stringContaining('404') });

    stripe.addCustomer({ id: customerId, deleted: true });
    expect(await connector().map(customerOnly())).toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining('deleted'),
    });

    const refused = await connector({ secretKey: 'rk_test_revoked' }).map(customerOnly());
    expect(refused).toMatchObject({ kind: 'rejected', reason: expect.stringContaining('401') });
    expect(JSON.stringify(refused)).not.toContain('rk_test_revoked');
  });

  it('answers unavailable when Stripe fails with a 5xx, so Stripe delivers the event again; the redelivery maps', async () => {
    stripe.addCustomer({ id: customerId, email: 'haruto.sato@example.jp' });
    // The SDK retries a failed read once.
    stripe.failNext({ status: 500 }, { count: 2, on: 'retrieve_customer' });
    const error = await mapOrError(customerOnly());
    expect(isRecoupError(error, 'unavailable')).toBe(true);
    expect(stripe.requests.map((r) => r.status)).toEqual([500, 500]);
    expect(await connector().map(customerOnly())).toMatchObject({ kind: 'events' });
  });

  it('answers unavailable when the fetch times out or Stripe rate-limits', async () => {
    stripe.addCustomer({ id: customerId, email: 'haruto.sato@example.jp' });
    stripe.failNext('hang', { count: 2, on: 'retrieve_customer' });
    expect(isRecoupError(await mapOrError(customerOnly(), connector({ timeoutMs: 200 })), 'unavailable')).toBe(true);
    stripe.failNext({ status: 429 }, { count: 2, on: 'retrieve_customer' });
    expect(isRecoupError(await mapOrError(customerOnly()), 'unavailable')).toBe(true);
  });

  it('maps an event that carries its own contact even when the fetch fails, without what the customer would have added', async () => {
    stripe.addCustomer({ id: customerId, email: 'haruto.sato@example.jp', preferred_locales: ['ja-JP'] });
    stripe.failNext({ status: 503 }, { count: 2, on: 'retrieve_customer' });
    const base = fixture('payment_intent.payment_failed.customer_only');
    const event = { ...base, data: { object: { ...base.data.object, receipt_email: 'receipts@example.jp' } } };
    const mapping = await connector().map(signed(event));
    expect(mapping).toMatchObject({
      kind: 'events',
      events: [{ order: { customer: { id: `stripe-${customerId}`, email: 'receipts@example.jp' } } }],
    });
    if (mapping.kind === 'events') expect(mapping.events[0]?.order?.customer.locale).toBeUndefined();
  });

  it('ends a recovery under the Stripe customer even when the fetch fails', async () => {
    stripe.failNext({ status: 500 }, { count: 2, on: 'retrieve_customer' });
    const base = fixture('payment_intent.succeeded');
    const event = { ...base, data: { object: { ...base.data.object, receipt_email: null, customer: customerId } } };
    expect(await connector().map(signed(event))).toMatchObject({
      kind: 'events',
      events: [{ type: 'payment.succeeded', order: { customer: { id: `stripe-${customerId}` } } }],
    });
  });
});
