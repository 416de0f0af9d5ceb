import { randomInt } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import { restoreDeliveries } from '../../src/webhooks/delivery.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import {
  freePort,
  makeEvent,
  startTestService,
  testApiKey,
  waitFor,
  type TestService,
  firstReminderToken,
} from '../helpers/service.js';
import { startShopReceiver, type ShopReceiver } from '../helpers/shop-receiver.js';

const cadence = `
name: default
expire_after: 2h
switch_channel_on_failure: false
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: sms, template: last-call }
`;

const fastWebhooks = {
  WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_POLL_INTERVAL: '50ms',
  WEBHOOK_RETRY_SCHEDULE: '300ms,300ms,300ms',
  WEBHOOK_TIMEOUT: '2s',
};

function uniquePhone(): string {
  return `+86137${String(randomInt(10_000_000, 99_999_999))}`;
}

interface Answer {
  status: number;
  type: string | null;
  // The fields each test reads, of the answers it reads them from.
  body: {
    id: string;
    secret: string;
    events: FeedEvent[] & string[];
    endpoints: Array<{ id: string }>;
    deliveries: DeliveryEntry[];
    enabled: boolean;
    disabled_reason: string | null;
    failing_since: string | null;
    previous_secret_until: string | null;
    next_cursor: string;
    has_more: boolean;
  };
}
interface FeedEvent {
  id: string;
  type: string;
  order_id: string | null;
  sequence: number | null;
}
interface DeliveryEntry {
  id: string;
  event_type: string;
  status: string;
  attempts: number;
  attempt_log: Array<{ attempt: number; status: number | null; excerpt: string | null; error: string | null }>;
}

async function api(svc: TestService, method: string, path: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`${svc.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${testApiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    body: (text ? JSON.parse(text) : {}) as Answer['body'],
  };
}

/** The shop registers its endpoint; the receiver verifies with the secret it was given. */
async function register(svc: TestService, receiver: ShopReceiver, events?: string[]) {
  const created = await api(svc, 'POST', '/v1/webhook-endpoints', {
    url: receiver.url,
    ...(events ? { events } : {}),
    description: 'the shop',
  });
  expect(created.status).toBe(201);
  expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
  receiver.secrets = [created.body.secret];
  return created.body;
}

/** An order's events as the shop orders them: by their sequence (deliveries run in parallel). */
function eventsOf(receiver: ShopReceiver, orderId: string) {
  return receiver
    .events()
    .filter((e) => e.data.order_id === orderId)
    .sort((a, b) => Number(a.data.sequence) - Number(b.data.sequence));
}

describe('signed webhooks to the shop', () => {
  let svc: TestService;
  let twilio: FakeTwilio;
  let receiver: ShopReceiver;
  let endpoint: { id: string; secret: string };

  beforeAll(async () => {
    twilio = await startFakeTwilio();
    receiver = await startShopReceiver();
    const port = await freePort();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: twilio.accountSid,
        TWILIO_AUTH_TOKEN: twilio.authToken,
        TWILIO_FROM: '+15005550006',
        TWILIO_API_URL: twilio.url,
        RECONCILE_GRACE: '1s',
        ...fastWebhooks,
      },
    });
    twilio.inboundUrl = `${svc.config.publicUrl}/webhooks/twilio/inbound`;
    endpoint = await register(svc, receiver, [
      'recovery.started',
      'message.sent',
      'message.failed',
      'payment.succeeded',
      'recovery.ended',
      'refund.succeeded',
      'customer.opted_out',
      'customer.opted_in',
      'reminder.after_payment',
    ]);
  });
  afterAll(async () => {
    await svc.close();
    await twilio.close();
    await receiver.close();
  });

  it('tells the shop of a recovery from its start to its payment, numbered per order', async () => {
    const phone = uniquePhone();
    const failed = makeEvent({}, { customer: { ...makeEvent().order.customer, phone, locale: 'en' } });
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => eventsOf(receiver, failed.order.id).find((e) => e.type === 'message.sent'), {
      what: 'message.sent',
    });
    const paid = makeEvent({ type: 'payment.succeeded' }, { id: failed.order.id });
    expect((await svc.post(paid)).status).toBe(202);
    const events = await waitFor(
      () => {
        // Deliveries run in parallel: wait for all four, whatever order they arrive in.
        const found = eventsOf(receiver, failed.order.id);
        return found.length >= 4 ? found : undefined;
      },
      { what: 'recovery.ended' },
    );
    expect(events.map((e) => [e.type, e.data.sequence])).toEqual([
      ['recovery.started', 1],
      ['message.sent', 2],
      ['payment.succeeded', 3],
      ['recovery.ended', 4],
    ]);
    const [started, sent, payment, ended] = events.map((e) => e.data);
    expect(started).toMatchObject({
      order_id: failed.order.id,
      customer_id: failed.order.customer.id,
      amount: failed.order.amount,
      currency: failed.order.currency,
      cadence: 'default',
      failure_category: expect.any(String) as unknown,
    });
    expect(sent).toMatchObject({ step: 0, channel: 'sms', template: 'nudge' });
    expect(sent!.to).toBe(`${phone.slice(0, 3)}${'*'.repeat(phone.length - 7)}${phone.slice(-4)}`);
    expect(payment).toMatchObject({ collected_by: 'shop', amount: failed.order.amount, attribution: 'influenced' });
    expect(ended).toMatchObject({ state: 'recovered', reason: 'paid' });
  });

  it('tells the shop of a payment recoup collected through a retry link, and of its refund', async () => {
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    const token = await firstReminderToken(svc, failed.order.id);
    const retry = svc.service.payments!;
    const started = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (started.kind !== 'next_action') throw new Error(`initiate: ${started.kind}`);
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${started.attemptId}`,
    );
    const sandbox = retry.gateways.byName('sandbox') as SandboxGateway;
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });
    const payment = await waitFor(
      () => eventsOf(receiver, failed.order.id).find((e) => e.type === 'payment.succeeded'),
      { what: 'payment.succeeded' },
    );
    expect(payment.data).toMatchObject({
      collected_by: 'recoup',
      gateway: 'sandbox',
      method: 'alipay',
      amount: failed.order.amount,
      currency: failed.order.currency,
      attempt: 1,
      duplicate: false,
    });

    const refund = await fetch(`${svc.url}/v1/orders/${failed.order.id}/refunds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 2900, reason: 'damaged item' }),
    });
    expect(refund.status).toBe(202);
    const refunded = await waitFor(
      () => eventsOf(receiver, failed.order.id).find((e) => e.type === 'refund.succeeded'),
      { what: 'refund.succeeded' },
    );
    expect(refunded.data).toMatchObject({
      amount: 2900,
      currency: failed.order.currency,
      reason: 'ops',
      note: 'damaged item',
      payment_id: payment.data.payment_id,
    });
    await waitFor(() => (eventsOf(receiver, failed.order.id).length >= 5 ? true : undefined), {
      what: 'every event of the order',
    });
    expect(eventsOf(receiver, failed.order.id).map((e) => e.type)).toEqual([
      'recovery.started',
      'message.sent',
      'payment.succeeded',
      'recovery.ended',
      'refund.succeeded',
    ]);
  });

  it('tells the shop of a reminder the provider refused for good', async () => {
    const phone = uniquePhone();
    twilio.failNext(1, { status: 400, code: 21211, message: 'invalid number' }, { to: phone });
    const failed = makeEvent({}, { customer: { ...makeEvent().order.customer, phone, locale: 'en' } });
    expect((await svc.post(failed)).status).toBe(202);
    const event = await waitFor(() => eventsOf(receiver, failed.order.id).find((e) => e.type === 'message.failed'), {
      what: 'message.failed',
    });
    expect(event.data).toMatchObject({ step: 0, channel: 'sms' });
  });

  it('tells the shop when a customer opts out by STOP and back in by START', async () => {
    const phone = uniquePhone();
    const failed = makeEvent({}, { customer: { ...makeEvent().order.customer, phone, locale: 'en' } });
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => eventsOf(receiver, failed.order.id).find((e) => e.type === 'message.sent'), {
      what: 'message.sent',
    });
    expect((await twilio.sendInboundSms(phone, 'STOP')).status).toBe(200);
    expect((await twilio.sendInboundSms(phone, 'START')).status).toBe(200);
    const consent = await waitFor(
      () => {
        // A customer's events carry no order sequence: the shop orders them by when they happened.
        const found = receiver
          .events()
          .filter((e) => e.type.startsWith('customer.') && e.data.customer_id === failed.order.customer.id)
          .sort((a, b) => Date.parse(String(a.data.at)) - Date.parse(String(b.data.at)));
        return found.length === 2 ? found : undefined;
      },
      { what: 'the opt-out and the opt-in' },
    );
    expect(consent.map((e) => [e.type, e.data.channel, e.data.how])).toEqual([
      ['customer.opted_out', 'sms', 'sms_reply'],
      ['customer.opted_in', 'sms', 'sms_reply'],
    ]);
  });

  it('retries an endpoint that answered 503 under the same webhook-id, and logs both attempts', async () => {
    const failed = makeEvent();
    let refused = false;
    receiver.answer = (delivery) => {
      if (!refused && delivery.verified?.data.order_id === failed.order.id) {
        refused = true;
        return 503;
      }
      return 200;
    };
    try {
      expect((await svc.post(failed)).status).toBe(202);
      const attempts = await waitFor(
        () => {
          const found = receiver.received.filter((r) => r.verified?.data.order_id === failed.order.id);
          return found.some((r) => r.answered === 200) ? found : undefined;
        },
        { what: 'the retry' },
      );
      expect(attempts.map((r) => r.answered)).toEqual([503, 200]);
      expect(attempts[1]!.id).toBe(attempts[0]!.id);
      expect(attempts[1]!.body).toBe(attempts[0]!.body);

      // The shop has answered; recoup records the answer once it has it.
      const delivery = await waitFor(
        async () => {
          const log = await api(svc, 'GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries?limit=200`);
          expect(log.status).toBe(200);
          const found = log.body.deliveries.find((d) => d.id === attempts[0]!.id);
          return found?.status === 'delivered' ? found : undefined;
        },
        { what: 'the delivery to be recorded as delivered' },
      );
      expect(delivery).toMatchObject({ event_type: 'recovery.started', status: 'delivered', attempts: 2 });
      expect(delivery!.attempt_log.map((a) => [a.attempt, a.status, a.excerpt])).toEqual([
        [2, 200, 'ok'],
        [1, 503, 'not now'],
      ]);

      const resent = await api(
        svc,
        'POST',
        `/v1/webhook-endpoints/${endpoint.id}/deliveries/${attempts[0]!.id}/resend`,
      );
      expect(resent.status).toBe(202);
      await waitFor(() => (receiver.received.filter((r) => r.id === attempts[0]!.id).length === 3 ? true : undefined), {
        what: 'the resend',
      });
    } finally {
      receiver.answer = () => 200;
    }
  });

  it('restores a delivery whose wake-up was lost, once per grace period', async () => {
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    const started = await waitFor(
      () => eventsOf(receiver, failed.order.id).find((e) => e.type === 'recovery.started'),
      { what: 'recovery.started' },
    );
    // Due again, under a wake-up no queue job holds (as if Redis had lost it).
    const lost = started.id;
    await svc.database.db.execute(
      sql`update webhook_deliveries set status = 'pending', wake_seq = wake_seq + 1,
            next_attempt_at = clock_timestamp() - interval '5 seconds'
          where id = ${lost}`,
    );
    await waitFor(
      () => (receiver.received.filter((r) => r.id === lost && r.answered === 200).length === 2 ? true : undefined),
      {
        what: 'the lost delivery to go out',
      },
    );
    // Restored deliveries are due now: a second pass does not wake them again before the grace.
    await svc.database.db.execute(
      sql`update webhook_deliveries set status = 'pending', next_attempt_at = clock_timestamp() - interval '5 seconds'
          where id = ${lost}`,
    );
    const first = await restoreDeliveries(svc.database.db, 1_000);
    const second = await restoreDeliveries(svc.database.db, 1_000);
    expect(first.map((w) => w.deliveryId)).toContain(lost);
    expect(second.map((w) => w.deliveryId)).not.toContain(lost);
  });

  it('signs so that a tampered body or another secret fails verification', async () => {
    const delivery = await waitFor(() => receiver.received.find((r) => r.verified), { what: 'a delivery' });
    const headers = {
      'webhook-id': delivery.id,
      'webhook-timestamp': delivery.timestamp,
      'webhook-signature': delivery.signature,
    };
    expect(() => new Webhook(endpoint.secret).verify(delivery.body, headers)).not.toThrow();
    const tampered = delivery.body.replace(/"amount":\d+/, '"amount":1');
    expect(tampered).not.toBe(delivery.body);
    expect(() => new Webhook(endpoint.secret).verify(tampered, headers)).toThrow();
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(24, 7).toString('base64')}`).verify(delivery.body, headers),
    ).toThrow();
  });

  it('signs with the old and the new secret while a rotation overlaps', async () => {
    const old = endpoint.secret;
    const rotated = await api(svc, 'POST', `/v1/webhook-endpoints/${endpoint.id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(old);
    expect(rotated.body.previous_secret_until).toEqual(expect.any(String));
    endpoint.secret = rotated.body.secret;
    receiver.secrets = [endpoint.secret];
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    const delivery = await waitFor(() => receiver.received.find((r) => r.verified?.data.order_id === failed.order.id), {
      what: 'a delivery after the rotation',
    });
    expect(delivery.signature.split(' ')).toHaveLength(2);
    const headers = {
      'webhook-id': delivery.id,
      'webhook-timestamp': delivery.timestamp,
      'webhook-signature': delivery.signature,
    };
    expect(() => new Webhook(old).verify(delivery.body, headers)).not.toThrow();
    expect(() => new Webhook(endpoint.secret).verify(delivery.body, headers)).not.toThrow();
  });

  it('serves the same events as a feed, page by page after a cursor', async () => {
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    expect((await svc.post(makeEvent({ type: 'order.cancelled' }, { id: failed.order.id }))).status).toBe(202);
    const seen: FeedEvent[] = [];
    let cursor = '0';
    await waitFor(
      async () => {
        for (;;) {
          const page = await api(svc, 'GET', `/v1/outbound-events?after=${cursor}&limit=3`);
          expect(page.status).toBe(200);
          expect(page.body.events.length).toBeLessThanOrEqual(3);
          seen.push(...page.body.events);
          cursor = page.body.next_cursor;
          if (!page.body.has_more) break;
        }
        return seen.some((e) => e.order_id === failed.order.id && e.type === 'recovery.ended') ? true : undefined;
      },
      { what: 'the cancellation in the feed' },
    );
    const ids = seen.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(seen.filter((e) => e.order_id === failed.order.id).map((e) => [e.type, e.sequence])).toEqual([
      ['recovery.started', 1],
      ['recovery.ended', 2],
    ]);
    const again = await api(svc, 'GET', `/v1/outbound-events?after=${cursor}`);
    expect(again.body).toMatchObject({ next_cursor: cursor, has_more: false });
    expect((await api(svc, 'GET', '/v1/outbound-events?after=abc')).status).toBe(400);
  });

  it('refuses endpoints it cannot deliver to with a problem naming the field', async () => {
    for (const body of [
      { url: 'ftp://shop.example/hooks' },
      { url: '/hooks' },
      { url: 'https://user:pass@shop.example/hooks' },
      { url: 'https://shop.example/hooks', events: ['order.teleported'] },
      { url: 'https://shop.example/hooks', events: [] },
      { url: 'https://shop.example/hooks', colour: 'blue' },
    ]) {
      const answer = await api(svc, 'POST', '/v1/webhook-endpoints', body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.type).toContain('application/problem+json');
    }
    expect((await api(svc, 'GET', '/v1/webhook-endpoints/ep_nope')).status).toBe(404);
    expect((await api(svc, 'PATCH', '/v1/webhook-endpoints/ep_nope', { enabled: false })).status).toBe(404);
    const listed = await api(svc, 'GET', '/v1/webhook-endpoints');
    expect(listed.body.endpoints.map((e) => e.id)).toContain(endpoint.id);
    expect(JSON.stringify(listed.body)).not.toContain('whsec_');
  });
});

describe('an endpoint on a private address', () => {
  let svc: TestService;
  let receiver: ShopReceiver;
  beforeAll(async () => {
    receiver = await startShopReceiver();
    svc = await startTestService({
      cadences: cadence,
      env: {
        ...fastWebhooks,
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'false',
        WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms',
        WEBHOOK_DISABLE_AFTER: '500ms',
      },
    });
  });
  afterAll(async () => {
    await svc.close();
    await receiver.close();
  });

  it('is never delivered to unless private networks are allowed, and is disabled once failing long enough', async () => {
    const endpoint = await register(svc, receiver);
    expect(endpoint.events).not.toContain('message.sent');
    expect((await svc.post(makeEvent())).status).toBe(202);
    const disabled = await waitFor(
      async () => {
        const answer = await api(svc, 'GET', `/v1/webhook-endpoints/${endpoint.id}`);
        return answer.body.enabled === false ? answer.body : undefined;
      },
      { what: 'the endpoint to be disabled' },
    );
    expect(disabled).toMatchObject({ disabled_reason: 'failing', failing_since: expect.any(String) as unknown });
    const log = await api(svc, 'GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries`);
    const attempts = log.body.deliveries.flatMap((d) => d.attempt_log);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    for (const attempt of attempts) expect(attempt.error).toMatch(/^refused_address/);
    expect(receiver.received).toEqual([]);

    // Enabled again by ops: failing is forgotten, its pending deliveries go out again at once.
    const enabled = await api(svc, 'PATCH', `/v1/webhook-endpoints/${endpoint.id}`, { enabled: true });
    expect(enabled.body).toMatchObject({ enabled: true, disabled_reason: null, failing_since: null });
  });
});
