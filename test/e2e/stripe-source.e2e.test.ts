import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort, startTestService, type TestService } from '../helpers/service.js';
import {
  firstReminderLink,
  fixture,
  messagesOf,
  orderRow,
  pause,
  paymentsOf,
  postShopWebhook,
  recoveryOf,
  sentMessagesOf,
  stripeDelivery,
  uniqueNumber,
  type Json,
} from './helpers/shop-webhooks.js';

// The shop's own Stripe account as a source of orders, in a real recoup: a declined
// PaymentIntent starts a recovery, its later success at the shop ends it, and only Stripe's
// signature lets a delivery in.

const secret = 'whsec_stripe_source_e2e';

/** A first SMS a second after the failure; the second reminder is due two seconds after that. */
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 3s, channel: email, template: last-call }
`;

async function startShop(): Promise<TestService> {
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: {
      PORT: String(port),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      SHOP_NAME: 'Lantern & Loom',
      WEBHOOK_POLL_INTERVAL: '50ms',
      STRIPE_SOURCE_WEBHOOK_SECRET: secret,
    },
  });
  onTestFinished(() => svc.close());
  return svc;
}

/** A Stripe event from the fixtures, about a new order and customer, created now. */
function stripeEvent(name: string, orderId: string, intentId: string, contact: { email: string; phone: string }): Json {
  const event = fixture('stripe', name);
  event.id = `evt_e2e${uniqueNumber(12)}`;
  event.created = Math.floor(Date.now() / 1000);
  const intent = event.data.object as Json;
  intent.id = intentId;
  intent.metadata = { ...intent.metadata, order_id: orderId };
  const billing = intent.last_payment_error?.payment_method?.billing_details as Json | undefined;
  if (billing) Object.assign(billing, contact);
  if (intent.receipt_email) intent.receipt_email = contact.email;
  return event;
}

describe('the shop’s Stripe → recoup, end to end', () => {
  it('payment_intent.payment_failed starts a recovery and a reminder; payment_intent.succeeded ends it, nothing more is sent', async () => {
    const svc = await startShop();
    const n = uniqueNumber();
    const orderId = `lantern-${n}`;
    const intentId = `pi_e2e${n}`;
    const contact = { email: `jenny.${n}@example.com`, phone: `+1 (503) 555-${String(n).slice(0, 4)}` };

    const failed = await postShopWebhook(
      svc,
      'stripe',
      stripeDelivery(stripeEvent('payment_intent.payment_failed', orderId, intentId, contact), secret),
    );
    expect(failed.status).toBe(200);
    expect(await failed.json()).toMatchObject({ status: 'accepted', events: [{ status: 'accepted' }] });

    const view = await svc.getOrder(orderId);
    expect(view.order).toMatchObject({
      id: orderId,
      status: 'pending',
      amount: 12900,
      currency: 'USD',
      description: 'Order #1001 from Lantern & Loom',
      last_failure: { code: 'insufficient_funds' },
    });
    expect(view.recovery).toMatchObject({ state: 'active' });
    expect(await orderRow(svc, orderId)).toMatchObject({ platform: 'stripe' });

    const { message } = await firstReminderLink(svc, orderId);
    expect(message).toMatchObject({ step: 0, channel: 'sms' });

    // The customer paid again at the shop; its Stripe account reports the PaymentIntent succeeded.
    await pause(1_000); // Stripe's `created` is whole seconds: from the next one on, it is after the reminder.
    const succeeded = await postShopWebhook(
      svc,
      'stripe',
      stripeDelivery(stripeEvent('payment_intent.succeeded', orderId, intentId, contact), secret),
    );
    expect(succeeded.status).toBe(200);
    expect(await succeeded.json()).toMatchObject({ status: 'accepted', events: [{ outcome: 'order_paid' }] });
    expect((await svc.getOrder(orderId)).order).toMatchObject({ status: 'paid' });
    expect(await recoveryOf(svc, orderId)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
    expect(await paymentsOf(svc, orderId)).toEqual([
      expect.objectContaining({ gateway: 'shop', duplicate: false, attribution: 'influenced' }),
    ]);

    // Past when the second reminder was due: still only the first.
    await pause(3_500);
    expect(await sentMessagesOf(svc, orderId)).toEqual([expect.objectContaining({ id: message.id })]);
  });

  it('a delivery signed with another secret, unsigned, or changed after signing is refused 401 and changes nothing', async () => {
    const svc = await startShop();
    const n = uniqueNumber();
    const orderId = `lantern-${n}`;
    const event = stripeEvent('payment_intent.payment_failed', orderId, `pi_e2e${n}`, {
      email: `jenny.${n}@example.com`,
      phone: '+1 503 555 0143',
    });

    const forged = await postShopWebhook(svc, 'stripe', stripeDelivery(event, 'whsec_someone_else'));
    expect(forged.status).toBe(401);
    const unsigned = await postShopWebhook(svc, 'stripe', {
      body: JSON.stringify(event),
      headers: { 'content-type': 'application/json' },
    });
    expect(unsigned.status).toBe(401);

    // The same event, signed properly but with its body changed after signing.
    const genuine = stripeDelivery(event, secret);
    const tampered = { ...genuine, body: genuine.body.replace('"amount":12900', '"amount":1') };
    expect(tampered.body).not.toBe(genuine.body);
    expect((await postShopWebhook(svc, 'stripe', tampered)).status).toBe(401);

    expect(await orderRow(svc, orderId)).toBeUndefined();
    expect(await messagesOf(svc, orderId)).toEqual([]);

    // The genuine delivery itself is taken: only the signature kept the others out.
    expect((await postShopWebhook(svc, 'stripe', genuine)).status).toBe(200);
    expect(await orderRow(svc, orderId)).toMatchObject({ status: 'pending', platform: 'stripe' });
  });
});
