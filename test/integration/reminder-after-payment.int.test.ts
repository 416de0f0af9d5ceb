import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { startShopReceiver, type ShopReceiver } from '../helpers/shop-receiver.js';
import {
  freePort,
  makeEvent,
  signIn,
  startTestService,
  testApiKey,
  waitFor,
  type TestService,
} from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: sms, template: last-call }
`;

// A 1.5 s window to start the provider call and a 3.5 s send lease (src/recoveries/send-lease.ts);
// a payment waits for a message whose call timed out until 4.5 s after its claim.
const env = { PROVIDER_TIMEOUT: '1s', JOB_LOCK_DURATION: '3s', PROVIDER_ACCEPT_GRACE: '1s' };
// Twilio creates the message this long after the request: past the lease and the grace.
const lateCreationMs = 6_000;

interface OutboundRow {
  type: string;
  order_id: string;
  sequence: number;
  data: Record<string, unknown>;
}

describe('a reminder its provider accepted after the order was paid', () => {
  let svc: TestService;
  let fake: FakeTwilio;
  let shop: ShopReceiver;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    shop = await startShopReceiver();
    const port = await freePort();
    svc = await startTestService({
      cadences: cadence,
      env: {
        ...env,
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: fake.accountSid,
        TWILIO_AUTH_TOKEN: fake.authToken,
        TWILIO_MESSAGING_SERVICE_SID: 'MG00000000000000000000000000000000',
        TWILIO_API_URL: fake.url,
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true',
        WEBHOOK_POLL_INTERVAL: '50ms',
      },
    });
    const endpoint = await fetch(`${svc.url}/v1/webhook-endpoints`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: shop.url }),
    });
    shop.secrets = [((await endpoint.json()) as { secret: string }).secret];
  });
  afterAll(async () => {
    await svc.close();
    await fake.close();
    await shop.close();
  });

  let phones = 0;
  function eventWithOwnPhone() {
    phones += 1;
    const event = makeEvent();
    event.order.customer.phone = `+86138001470${String(phones).padStart(2, '0')}`;
    return { event, phone: event.order.customer.phone };
  }

  async function stepZero(orderId: string, status: string) {
    return waitFor(
      async () => {
        const [m] = await rows<{ id: string; status: string; provider_id: string | null }>(
          svc.database.db,
          sql`select id, status, provider_id from messages where order_id = ${orderId} and step = 0`,
        );
        return m?.status === status ? m : undefined;
      },
      { what: `the first SMS to be ${status}`, timeoutMs: 10_000 },
    );
  }

  async function flagOf(messageId: string) {
    const [m] = await rows<{ status: string; sent_at: Date | null; after_payment_at: Date | null }>(
      svc.database.db,
      sql`select status, sent_at, after_payment_at from messages where id = ${messageId}`,
    );
    return m;
  }

  /** The order's reminder.after_payment events, once the service's workers numbered them all. */
  const outbound = async (orderId: string) => {
    await waitFor(
      async () => {
        const [open] = await rows<{ n: number }>(
          svc.database.db,
          sql`select count(*)::int as n from outbound_events where order_id = ${orderId} and position is null`,
        );
        return open?.n === 0 ? true : undefined;
      },
      { what: "the order's events to be numbered" },
    );
    return rows<OutboundRow>(
      svc.database.db,
      sql`select type, order_id, sequence, data from outbound_events
          where order_id = ${orderId} and type = 'reminder.after_payment' order by sequence`,
    );
  };

  async function counted(): Promise<number> {
    const text = await (
      await fetch(`${svc.url}/metrics`, { headers: { authorization: `Bearer ${testApiKey}` } })
    ).text();
    const line = /^recoup_reminders_after_payment_total\{channel="sms"\} (\d+)$/m.exec(text);
    if (!line) throw new Error('no recoup_reminders_after_payment_total{channel="sms"} in /metrics');
    return Number(line[1]);
  }

  function pay(order: ReturnType<typeof makeEvent>['order']) {
    return svc.post(makeEvent({ type: 'payment.succeeded', occurred_at: new Date().toISOString() }, order));
  }

  it('flags it on the order, records one reminder.after_payment event, counts it and shows it to ops', async () => {
    expect(await counted()).toBe(0);
    const { event, phone } = eventWithOwnPhone();
    fake.failNext(1, { createAfterMs: lateCreationMs }, { to: phone });
    expect((await svc.post(event)).status).toBe(202);
    const unknown = await stepZero(event.order.id, 'unknown');

    // The payment waits out the lease and the accept grace of the unknown message, then is answered…
    expect((await pay(event.order)).status).toBe(202);
    const answeredAt = Date.now();
    // …and only then does Twilio create the message, whose status callback names it.
    const created = await waitFor(() => fake.messages.find((m) => m.to === phone), {
      what: 'the late creation',
      timeoutMs: lateCreationMs + 5_000,
    });
    expect(created.acceptedAt.getTime()).toBeGreaterThan(answeredAt);
    expect(await fake.sendStatusCallback(created.sid, 'sent')).toBe(204);

    const flagged = await flagOf(unknown.id);
    expect(flagged?.status).toBe('sent');
    expect(flagged?.after_payment_at).toBeInstanceOf(Date);
    const [paid] = await rows<{ paid_at: Date }>(
      svc.database.db,
      sql`select paid_at from orders where id = ${event.order.id}`,
    );
    const paidAt = paid!.paid_at.toISOString();
    expect(flagged!.sent_at!.getTime()).toBeGreaterThan(Date.parse(paidAt));

    const events = await outbound(event.order.id);
    expect(events).toEqual([
      {
        type: 'reminder.after_payment',
        order_id: event.order.id,
        sequence: expect.any(Number) as unknown,
        data: {
          order_id: event.order.id,
          customer_id: event.order.customer.id,
          amount: event.order.amount,
          currency: event.order.currency,
          order_status: 'paid',
          message_id: unknown.id,
          channel: 'sms',
          to: '+86*******7001',
          template: 'nudge',
          step: 0,
          accepted_at: flagged!.sent_at!.toISOString(),
          paid_at: paidAt,
          cancelled_at: null,
        },
      },
    ]);
    expect(await counted()).toBe(1);
    // The shop is told, signed, so it can apologise.
    const told = await waitFor(
      () => shop.events().find((e) => e.type === 'reminder.after_payment' && e.data.order_id === event.order.id),
      { what: 'the shop to be told' },
    );
    expect(told.data).toMatchObject({ message_id: unknown.id, order_status: 'paid', channel: 'sms' });

    // Later reports on the same message flag nothing twice.
    expect(await fake.sendStatusCallback(created.sid, 'delivered')).toBe(204);
    expect((await flagOf(unknown.id))?.status).toBe('delivered');
    expect(await outbound(event.order.id)).toHaveLength(1);
    expect(await counted()).toBe(1);

    // The order story in the API and on the console.
    const story = await svc.getOrder(event.order.id);
    expect(story.messages.find((m) => m.id === unknown.id)?.after_payment_at).toBe(
      flagged!.after_payment_at!.toISOString(),
    );
    const { cookie } = await signIn(svc, ['ops']);
    const page = await svc.service.app!.inject({
      method: 'GET',
      url: `/console/orders/${encodeURIComponent(event.order.id)}`,
      headers: { accept: 'text/html', cookie },
    });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<span class="badge bad flag" data-flag>accepted after payment</span>');
    expect(page.body).toContain(`accepted ${utc(flagged!.sent_at!)}, order paid ${utc(new Date(paidAt))}`);
  }, 30_000);

  it('does not flag a reminder accepted before the payment', async () => {
    const { event } = eventWithOwnPhone();
    expect((await svc.post(event)).status).toBe(202);
    const sent = await stepZero(event.order.id, 'sent');
    expect((await pay(event.order)).status).toBe(202);
    expect(await fake.sendStatusCallback(sent.provider_id!, 'delivered')).toBe(204);
    expect(await flagOf(sent.id)).toMatchObject({ status: 'delivered', after_payment_at: null });
    expect(await outbound(event.order.id)).toEqual([]);
    const page = await svc.service.app!.inject({
      method: 'GET',
      url: `/console/orders/${encodeURIComponent(event.order.id)}`,
      headers: { accept: 'text/html', cookie: (await signIn(svc, ['ops'])).cookie },
    });
    expect(page.statusCode).toBe(200);
    expect(page.body).not.toContain('data-flag');
  });
});

/** The console's UTC text of a time: `2026-11-25 10:00:03 UTC`. */
function utc(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
