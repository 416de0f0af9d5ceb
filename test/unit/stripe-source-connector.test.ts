import { readFileSync } from 'node:fs';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { ConnectorMapping, ConnectorRequest } from '../../src/connectors/shop-connector.js';
import {
  checkStripeSourceEnv,
  stripeSourceConfig,
  stripeSourceEnv,
  type StripeSourceConfig,
} from '../../src/connectors/stripe/stripe-source-config.js';
import { createStripeSourceConnector } from '../../src/connectors/stripe/stripe-source-connector.js';
import type { EventInput } from '../../src/domain/event-schema.js';
import { FixedClock } from '../../src/platform/clock.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { classifyFailure } from '../../src/recoveries/classify-failure.js';
import { shopConnectorContract, type ConnectorFixture } from '../helpers/shop-connector.contract.js';

const webhookSecret = 'whsec_source_0123456789abcdef';
const config: StripeSourceConfig = { webhookSecret, secretKey: undefined, apiUrl: undefined, linkMode: 'recoup' };

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function fixture(name: string): Json {
  return JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), 'utf8')) as Json;
}

/** A delivery as Stripe sends it: the event's JSON, signed with `Stripe-Signature`. */
function signed(event: unknown, options: { secret?: string; timestamp?: number } = {}): ConnectorRequest {
  const payload = typeof event === 'string' ? event : JSON.stringify(event);
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? webhookSecret,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  });
  return {
    rawBody: Buffer.from(payload),
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature },
  };
}

function forge(request: ConnectorRequest): ConnectorRequest {
  return signed(request.rawBody.toString('utf8'), { secret: 'whsec_someone_else' });
}

function only(mapping: ConnectorMapping): EventInput {
  if (mapping.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(mapping)}`);
  expect(mapping.events).toHaveLength(1);
  return mapping.events[0]!;
}

/** A fixture with some of its object's fields replaced. */
function withObject(name: string, fields: Json, event: Json = {}): Json {
  const base = fixture(name);
  return { ...base, ...event, data: { object: { ...base.data.object, ...fields } } };
}

async function mapped(event: Json): Promise<ConnectorMapping> {
  return createStripeSourceConnector(config).map(signed(event));
}

shopConnectorContract('Stripe as a shop source', () => {
  const connector = createStripeSourceConnector(config);
  const fixtures: ConnectorFixture[] = [
    {
      name: 'a PaymentIntent declined for insufficient funds',
      request: signed(fixture('payment_intent.payment_failed')),
      expected: { kind: 'events', types: ['payment.failed'] },
    },
    {
      name: 'a declined PaymentIntent naming only its customer, and no key to fetch it',
      request: signed(fixture('payment_intent.payment_failed.customer_only')),
      expected: { kind: 'rejected' },
    },
    {
      name: 'a PaymentIntent that succeeded',
      request: signed(fixture('payment_intent.succeeded')),
      expected: { kind: 'events', types: ['payment.succeeded'] },
    },
    {
      name: 'a PaymentIntent cancelled',
      request: signed(fixture('payment_intent.canceled')),
      expected: { kind: 'events', types: ['order.cancelled'] },
    },
    {
      name: 'a Checkout Session that expired unpaid',
      request: signed(fixture('checkout.session.expired')),
      expected: { kind: 'events', types: ['order.created'] },
    },
    {
      name: 'a Checkout Session paid',
      request: signed(fixture('checkout.session.completed')),
      expected: { kind: 'events', types: ['payment.succeeded'] },
    },
    {
      name: 'a charge, which recoup follows through its PaymentIntent',
      request: signed(fixture('charge.succeeded')),
      expected: { kind: 'ignored' },
    },
  ];
  return { connector, fixtures, forge };
});

describe('Stripe as a shop source: PaymentIntents', () => {
  it("maps a declined PaymentIntent to payment.failed with Stripe's decline code, the card and the billing contact", async () => {
    const event = only(await mapped(fixture('payment_intent.payment_failed')));
    expect(event).toMatchObject({
      id: 'stripe-evt_3PqRfA2eZvKYlo2C0zKxk7Yp',
      type: 'payment.failed',
      occurred_at: '2024-08-22T09:00:00.000Z',
      order: {
        id: '1001',
        amount: 12900,
        currency: 'USD',
        description: 'Order #1001 from Lantern & Loom',
        customer: { name: 'Jenny Rosen', email: 'jenny.rosen@example.com', phone: '+15035550143' },
      },
      payment: {
        gateway: 'stripe',
        method: 'card',
        failure_code: 'insufficient_funds',
        failure_message: 'Your card has insufficient funds.',
      },
    });
    expect(event.order?.items).toBeUndefined();
    expect(event.order?.payment_url).toBeUndefined();
  });

  it('gives a guest the same customer id, derived from the normalised email, on every event', async () => {
    const failed = only(await mapped(fixture('payment_intent.payment_failed')));
    const succeeded = only(await mapped(fixture('payment_intent.succeeded')));
    expect(failed.order?.customer.id).toMatch(/^stripe-email-[0-9a-f]{32}$/);
    expect(succeeded.order?.customer.id).toBe(failed.order?.customer.id);
    expect(failed.order?.customer.id).not.toContain('jenny');
  });

  it.each([
    [{ code: 'card_declined', decline_code: 'insufficient_funds' }, 'insufficient_funds', 'insufficient_funds'],
    [{ code: 'expired_card', decline_code: null }, 'expired_card', 'card_data'],
    [
      { code: 'card_declined', decline_code: 'authentication_required' },
      'authentication_required',
      'authentication_required',
    ],
    [{ code: 'card_declined', decline_code: 'stolen_card' }, 'stolen_card', 'fraud_suspected'],
  ])(
    'takes the decline code before the error code: %o → %s, which recoup classifies as %s',
    async (codes, code, category) => {
      const base = fixture('payment_intent.payment_failed').data.object.last_payment_error as Json;
      const event = only(
        await mapped(withObject('payment_intent.payment_failed', { last_payment_error: { ...base, ...codes } })),
      );
      expect(event.payment?.failure_code).toBe(code);
      expect(classifyFailure({ gateway: event.payment?.gateway ?? undefined, code })).toBe(category);
    },
  );

  it("takes the method from the failed payment method, else the PaymentIntent's first type", async () => {
    const error = fixture('payment_intent.payment_failed').data.object.last_payment_error as Json;
    const methodOf = async (fields: Json) =>
      only(await mapped(withObject('payment_intent.payment_failed', { receipt_email: 'jenny@example.com', ...fields })))
        .payment?.method;
    expect(
      await methodOf({ last_payment_error: { ...error, payment_method: { ...error.payment_method, type: 'alipay' } } }),
    ).toBe('alipay');
    expect(
      await methodOf({
        last_payment_error: { ...error, payment_method: null },
        payment_method_types: ['wechat_pay', 'card'],
      }),
    ).toBe('wechat_pay');
    // Not one of recoup's own methods: kept as Stripe names it.
    expect(
      await methodOf({ last_payment_error: { ...error, payment_method: null }, payment_method_types: ['link'] }),
    ).toBe('link');
  });

  it('uses the PaymentIntent id as the order id when the shop put no order_id in its metadata', async () => {
    const event = only(await mapped(withObject('payment_intent.payment_failed', { metadata: {} })));
    expect(event.order?.id).toBe('pi_3PqRfA2eZvKYlo2C0vJ8a1Bc');
  });

  it('reports a success with the amount received, and a cancellation under the Stripe customer', async () => {
    const succeeded = only(await mapped(fixture('payment_intent.succeeded')));
    expect(succeeded).toMatchObject({
      type: 'payment.succeeded',
      order: { id: '1001', amount: 12900, currency: 'USD' },
      payment: { gateway: 'stripe', method: 'card', amount: 12900 },
    });
    expect(succeeded.payment?.failure_code).toBeUndefined();
    const cancelled = only(await mapped(fixture('payment_intent.canceled')));
    expect(cancelled).toMatchObject({
      type: 'order.cancelled',
      order: {
        id: 'pi_3PqSaC2eZvKYlo2C1Aa3Bb5C',
        amount: 4999,
        currency: 'EUR',
        customer: {
          id: 'stripe-cus_QhSaKp3Lm4Nq5R',
          email: 'marie.dupont@example.fr',
          name: 'Marie Dupont',
          phone: '+33612345678',
        },
      },
    });
  });

  it("ignores the PaymentIntents recoup's own Stripe gateway created for a retry", async () => {
    const mapping = await mapped(
      withObject('payment_intent.payment_failed', { metadata: { order_id: '1001', attempt_id: 'att_0123456789ab' } }),
    );
    expect(mapping.kind).toBe('ignored');
  });

  it('rejects a failure it cannot reach the customer about, and keeps a success that names its Stripe customer', async () => {
    const error = fixture('payment_intent.payment_failed').data.object.last_payment_error as Json;
    const anonymous = {
      receipt_email: null,
      last_payment_error: { ...error, payment_method: { ...error.payment_method, billing_details: null } },
    };
    const failed = await mapped(withObject('payment_intent.payment_failed', anonymous));
    expect(failed).toMatchObject({ kind: 'rejected', reason: expect.stringContaining('no email or phone') });
    // A malformed address counts as none.
    const malformed = await mapped(
      withObject('payment_intent.payment_failed', { ...anonymous, receipt_email: 'jenny at example' }),
    );
    expect(malformed.kind).toBe('rejected');
    const succeeded = only(
      await mapped(withObject('payment_intent.succeeded', { receipt_email: null, customer: 'cus_QhTzLm8Yc2VbNw' })),
    );
    expect(succeeded.order?.customer).toEqual({ id: 'stripe-cus_QhTzLm8Yc2VbNw' });
  });

  it('keeps only phone numbers with a country code', async () => {
    const error = fixture('payment_intent.payment_failed').data.object.last_payment_error as Json;
    const phoneOf = async (phone: string) =>
      only(
        await mapped(
          withObject('payment_intent.payment_failed', {
            last_payment_error: {
              ...error,
              payment_method: { ...error.payment_method, billing_details: { email: 'a@example.com', phone } },
            },
          }),
        ),
      ).order?.customer.phone;
    expect(await phoneOf('0044 20 7946 0958')).toBe('+442079460958');
    expect(await phoneOf('(503) 555-0143')).toBeUndefined();
  });
});

describe('Stripe as a shop source: amounts and currencies', () => {
  const amountOf = async (amount: unknown, currency: unknown) =>
    mapped(withObject('payment_intent.payment_failed', { amount, currency }));

  it("takes Stripe's minor units as they are where they are recoup's (JPY 0 decimals, KWD 3)", async () => {
    expect(only(await amountOf(500000, 'jpy')).order).toMatchObject({ amount: 500000, currency: 'JPY' });
    expect(only(await amountOf(5120, 'kwd')).order).toMatchObject({ amount: 5120, currency: 'KWD' });
  });

  it('rescales the currencies Stripe keeps two-decimal where recoup counts whole units (ISK 100 = 1 króna)', async () => {
    expect(only(await amountOf(50000, 'isk')).order).toMatchObject({ amount: 500, currency: 'ISK' });
    expect(only(await amountOf(1234500, 'huf')).order).toMatchObject({ amount: 12345, currency: 'HUF' });
    expect(await amountOf(12345, 'isk')).toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining('fraction'),
    });
  });

  it('rejects an unknown currency and a zero, negative or malformed amount', async () => {
    for (const [amount, currency] of [
      [12900, 'xyz'],
      [12900, null],
      [0, 'usd'],
      [-100, 'usd'],
      [12.5, 'usd'],
      ['12900', 'usd'],
    ] as const) {
      const mapping = await amountOf(amount, currency);
      expect(mapping.kind, `${String(amount)} ${String(currency)}`).toBe('rejected');
    }
  });
});

describe('Stripe as a shop source: Checkout Sessions', () => {
  it("maps an expired session to an abandoned order whose payment URL is Stripe's recovery URL", async () => {
    const event = only(await mapped(fixture('checkout.session.expired')));
    expect(event).toMatchObject({
      id: 'stripe-evt_1PqUbD2eZvKYlo2CxYz9Ab1C',
      type: 'order.created',
      order: {
        id: 'cs_test_a1Jk9Lm2Np3Qr4St5Uv6Wx7Yz8Ab9Cd0Ef1Gh2Ij3Kl4Mn5Op6',
        amount: 8800,
        currency: 'GBP',
        payment_url: 'https://buy.stripe.com/r/test_5kA9Bc2Dd3Ee4Ff5Gg6Hh7Ii',
        customer: { email: 'oliver.smith@example.co.uk' },
      },
    });
    expect(event.payment).toBeUndefined();
    // `auto` is no locale.
    expect(event.order?.customer.locale).toBeUndefined();
    const withoutRecovery = only(await mapped(withObject('checkout.session.expired', { after_expiration: null })));
    expect(withoutRecovery.order?.payment_url).toBeUndefined();
  });

  it("ends the expired session's order when the session made from its recovery URL is paid", async () => {
    const expired = only(await mapped(fixture('checkout.session.expired')));
    const completed = only(await mapped(fixture('checkout.session.completed')));
    expect(completed).toMatchObject({
      type: 'payment.succeeded',
      order: { id: expired.order?.id, amount: 8800, currency: 'GBP', customer: { id: expired.order?.customer.id } },
      payment: { gateway: 'stripe', amount: 8800 },
    });
  });

  it('names the order by metadata.order_id, else the PaymentIntent, else the session', async () => {
    const idOf = async (fields: Json) => only(await mapped(withObject('checkout.session.completed', fields))).order?.id;
    expect(await idOf({ metadata: { order_id: 'A-77' } })).toBe('A-77');
    expect(await idOf({ recovered_from: null })).toBe('pi_3PqVcD2eZvKYlo2C0Ef3Gh4I');
    expect(await idOf({ recovered_from: null, payment_intent: null })).toBe(
      'cs_test_b2Kl0Mn1Op2Qr3St4Uv5Wx6Yz7Ab8Cd9Ef0Gh1Ij2Kl3Mn4Op5',
    );
  });

  it('ignores a completed session not paid yet, and an expired one whose customer declined promotions', async () => {
    expect((await mapped(withObject('checkout.session.completed', { payment_status: 'unpaid' }))).kind).toBe('ignored');
    expect(
      (
        await mapped(
          withObject('checkout.session.expired', { consent: { promotions: 'opt_out', terms_of_service: null } }),
        )
      ).kind,
    ).toBe('ignored');
  });

  it('rejects an expired session without an email or phone', async () => {
    const mapping = await mapped(
      withObject('checkout.session.expired', {
        customer_details: { address: null, email: null, name: null, phone: null, tax_exempt: 'none', tax_ids: null },
      }),
    );
    expect(mapping.kind).toBe('rejected');
  });
});

describe('Stripe as a shop source: deliveries', () => {
  it("names a delivery by Stripe's event id and type, and maps it to the same event id every time", async () => {
    const connector = createStripeSourceConnector(config);
    const event = fixture('payment_intent.payment_failed');
    expect(connector.describe(signed(event))).toEqual({
      deliveryId: 'evt_3PqRfA2eZvKYlo2C0zKxk7Yp',
      topic: 'payment_intent.payment_failed',
    });
    // A retry is signed again (a new timestamp) and carries the same event.
    const [first, retry] = [
      only(await connector.map(signed(event))),
      only(await connector.map(signed(event, { timestamp: 1 }))),
    ];
    expect(retry.id).toBe(first.id);
    expect(connector.describe(signed('not json')).deliveryId).toMatch(/^body-[0-9a-f]{16}$/);
  });

  it('refuses a delivery without a signature, or signed too long ago, as unauthorized', () => {
    const clock = new FixedClock('2024-08-22T09:00:00Z');
    const connector = createStripeSourceConnector(config, { clock });
    const signedAt = Math.floor(clock.now().getTime() / 1000);
    const request = signed(fixture('payment_intent.payment_failed'), { timestamp: signedAt });
    expect(() => connector.verify(request)).not.toThrow();
    clock.advance(6 * 60_000);
    const expectUnauthorized = (r: ConnectorRequest) => {
      let caught: unknown;
      try {
        connector.verify(r);
      } catch (error) {
        caught = error;
      }
      expect(isRecoupError(caught, 'unauthorized')).toBe(true);
    };
    expectUnauthorized(request);
    expectUnauthorized({ ...request, headers: { 'content-type': 'application/json' } });
  });

  it('accepts a signed body that is not JSON, and rejects it when mapping', async () => {
    const connector = createStripeSourceConnector(config);
    const request = signed('not json');
    expect(() => connector.verify(request)).not.toThrow();
    expect((await connector.map(request)).kind).toBe('rejected');
  });

  it("has no write-back: the shop's Stripe account already knows its payments", () => {
    expect(createStripeSourceConnector(config).writeBack).toBeUndefined();
    expect(createStripeSourceConnector(config).platform).toBe('stripe');
  });
});

describe('Stripe as a shop source: configuration', () => {
  const schema = z.object(stripeSourceEnv).superRefine(checkStripeSourceEnv);

  it('is off without a webhook secret, and links to recoup by default', () => {
    expect(stripeSourceConfig(schema.parse({}))).toBeUndefined();
    expect(
      stripeSourceConfig(schema.parse({ STRIPE_SOURCE_WEBHOOK_SECRET: 'whsec_x', STRIPE_SOURCE_LINK_MODE: '' })),
    ).toEqual({
      webhookSecret: 'whsec_x',
      secretKey: undefined,
      apiUrl: undefined,
      linkMode: 'recoup',
    });
    expect(
      stripeSourceConfig(
        schema.parse({
          STRIPE_SOURCE_WEBHOOK_SECRET: 'whsec_x',
          STRIPE_SOURCE_SECRET_KEY: 'rk_test_1',
          STRIPE_SOURCE_LINK_MODE: 'platform',
        }),
      ),
    ).toMatchObject({ secretKey: 'rk_test_1', linkMode: 'platform' });
  });

  it('refuses an unknown link mode, and a key without the webhook secret', () => {
    expect(schema.safeParse({ STRIPE_SOURCE_WEBHOOK_SECRET: 'whsec_x', STRIPE_SOURCE_LINK_MODE: 'shop' }).success).toBe(
      false,
    );
    const keyOnly = schema.safeParse({ STRIPE_SOURCE_SECRET_KEY: 'rk_test_1' });
    expect(keyOnly.success).toBe(false);
    expect(keyOnly.error?.issues.map((issue) => issue.path)).toEqual([['STRIPE_SOURCE_WEBHOOK_SECRET']]);
  });
});
