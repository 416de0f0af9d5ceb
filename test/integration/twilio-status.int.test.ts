import { sql } from 'drizzle-orm';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TwilioSmsSender } from '../../src/channels/twilio-sms-sender.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { UnknownSmsResolver } from '../../src/messages/unknown-sms.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 3s, channel: sms, template: last-call }
`;

describe('Twilio delivery callbacks', () => {
  let svc: TestService;
  let fake: FakeTwilio;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    const port = await freePort();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: fake.accountSid,
        TWILIO_AUTH_TOKEN: fake.authToken,
        TWILIO_MESSAGING_SERVICE_SID: 'MG00000000000000000000000000000000',
        TWILIO_API_URL: fake.url,
        // Short, so that a creation the fake delays is one the client has given up on.
        PROVIDER_TIMEOUT: '1s',
      },
    });
  });
  afterAll(async () => {
    await svc.close();
    await fake.close();
  });

  async function firstMessage(orderId: string) {
    return waitFor(
      async () => {
        const [m] = await rows<{ id: string; status: string; provider_id: string | null; reason: string | null }>(
          svc.database.db,
          sql`select id, status, provider_id, reason from messages where order_id = ${orderId} and step = 0`,
        );
        return m?.status === 'sent' ? m : undefined;
      },
      { what: 'the first SMS' },
    );
  }

  /** An order whose customer has a number of its own, so faults aimed at it hit no other test's sends. */
  let phones = 0;
  function eventWithOwnPhone() {
    phones += 1;
    const phone = `+86138001390${String(phones).padStart(2, '0')}`;
    const event = makeEvent();
    event.order.customer.phone = phone;
    return { event, phone };
  }

  async function stepZero(orderId: string, status: string) {
    return waitFor(
      async () => {
        const [m] = await rows<{
          id: string;
          status: string;
          reason: string | null;
          provider_id: string | null;
          sent_at: Date | null;
          cost_micros: string | null;
          cost_source: string | null;
        }>(
          svc.database.db,
          sql`select id, status, reason, provider_id, sent_at, cost_micros::text as cost_micros, cost_source
              from messages where order_id = ${orderId} and step = 0`,
        );
        return m?.status === status ? m : undefined;
      },
      { what: `the first SMS to be ${status}` },
    );
  }

  async function statusOf(id: string) {
    const [m] = await rows<{ status: string; reason: string | null }>(
      svc.database.db,
      sql`select status, reason from messages where id = ${id}`,
    );
    return m;
  }

  it('sends through the Twilio SDK with the status callback URL and records the SID', async () => {
    const event = makeEvent();
    await svc.post(event);
    const message = await firstMessage(event.order.id);
    const accepted = fake.message(message.provider_id ?? '');
    expect(accepted).toMatchObject({
      to: '+8613800138000',
      messagingServiceSid: 'MG00000000000000000000000000000000',
      statusCallback: `${svc.config.publicUrl}/webhooks/twilio/status/${message.id}`,
    });
  });

  it('records a message Twilio creates after the client gave up as unknown, then sent when its callback names it', async () => {
    const { event, phone } = eventWithOwnPhone();
    fake.failNext(1, { createAfterMs: 1_500 }, { to: phone });
    await svc.post(event);
    const unknown = await stepZero(event.order.id, 'unknown');
    expect(unknown).toMatchObject({ reason: 'ETIMEDOUT', provider_id: null, sent_at: null });

    const created = await waitFor(() => fake.messages.find((m) => m.to === phone), { what: 'the late creation' });
    expect(created.statusCallback).toBe(`${svc.config.publicUrl}/webhooks/twilio/status/${unknown.id}`);
    expect(await fake.sendStatusCallback(created.sid, 'sent', { price: '-0.00750' })).toBe(204);
    const sent = await statusOf(unknown.id);
    expect(sent).toMatchObject({ status: 'sent', reason: null });
    const [row] = await rows<{ provider_id: string; sent_at: Date | null; cost_micros: string; cost_source: string }>(
      svc.database.db,
      sql`select provider_id, sent_at, cost_micros::text as cost_micros, cost_source from messages
          where id = ${unknown.id}`,
    );
    expect(row).toMatchObject({ provider_id: created.sid, cost_micros: '7500', cost_source: 'provider' });
    expect(row?.sent_at).toBeInstanceOf(Date);

    // Forward only from there, by SID as well as by message id.
    expect(await fake.sendStatusCallback(created.sid, 'delivered')).toBe(204);
    expect(await statusOf(unknown.id)).toMatchObject({ status: 'delivered' });
    expect(await fake.sendStatusCallback(created.sid, 'queued')).toBe(204);
    expect(await statusOf(unknown.id)).toMatchObject({ status: 'delivered' });
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(1);
  });

  it('records a 502 after creation as unknown without sending again, then sent once a lookup finds it', async () => {
    const { event, phone } = eventWithOwnPhone();
    fake.failNext(1, { status: 502, created: true }, { to: phone });
    await svc.post(event);
    const unknown = await stepZero(event.order.id, 'unknown');
    expect(unknown).toMatchObject({ reason: '502', provider_id: null });
    const created = fake.messages.find((m) => m.to === phone);
    if (!created) throw new Error('the fake created no message');
    Object.assign(created, { status: 'sent', price: '-0.00750' });

    const lookups = new TwilioSmsSender({
      accountSid: fake.accountSid,
      authToken: fake.authToken,
      apiUrl: fake.url,
      from: '+15005550006',
      timeoutMs: 5_000,
    });
    try {
      const resolver = new UnknownSmsResolver({
        db: svc.database.db,
        lookup: (query) => lookups.lookup(query),
        clock: { now: () => new Date(Date.now() + 3 * 60_000) },
        logger: createLogger('silent'),
        afterMs: 2 * 60_000,
        untilMs: 24 * 3_600_000,
      });
      expect(await resolver.runOnce()).toMatchObject({ found: 1 });
    } finally {
      await lookups.close();
    }
    const sent = await stepZero(event.order.id, 'sent');
    expect(sent).toMatchObject({ provider_id: created.sid, cost_micros: '7500', cost_source: 'provider' });
    expect(sent.sent_at?.getTime()).toBe(Math.floor(created.acceptedAt.getTime() / 1000) * 1000);
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(1);
  });

  it('moves status forward only', async () => {
    const event = makeEvent();
    await svc.post(event);
    const message = await firstMessage(event.order.id);
    expect(await fake.sendStatusCallback(message.provider_id!, 'delivered', { price: '-0.00750' })).toBe(204);
    expect(await statusOf(message.id)).toMatchObject({ status: 'delivered' });
    const [price] = await rows<{ price_amount: string; price_currency: string }>(
      svc.database.db,
      sql`select price_amount::text as price_amount, price_currency from messages where id = ${message.id}`,
    );
    expect(price).toEqual({ price_amount: '1', price_currency: 'USD' });
    expect(await fake.sendStatusCallback(message.provider_id!, 'sent')).toBe(204);
    expect(await statusOf(message.id)).toMatchObject({ status: 'delivered' });
    expect(await fake.sendStatusCallback(message.provider_id!, 'undelivered', { errorCode: 30003 })).toBe(204);
    expect(await statusOf(message.id)).toMatchObject({ status: 'delivered' });
  });

  it('marks an unusable number bad so the next step goes by email', async () => {
    const event = makeEvent();
    await svc.post(event);
    const message = await firstMessage(event.order.id);
    expect(await fake.sendStatusCallback(message.provider_id!, 'failed', { errorCode: 30005 })).toBe(204);
    expect(await statusOf(message.id)).toMatchObject({ status: 'failed', reason: '30005' });
    const next = await waitFor(
      async () => {
        const [m] = await rows<{ channel: string; status: string }>(
          svc.database.db,
          sql`select channel, status from messages where order_id = ${event.order.id} and step = 1`,
        );
        return m?.status === 'sent' ? m : undefined;
      },
      { what: 'the second step' },
    );
    expect(next.channel).toBe('email');
  });

  it('rejects a forged or unsigned callback and changes nothing', async () => {
    const event = makeEvent();
    await svc.post(event);
    const message = await firstMessage(event.order.id);
    const url = `${svc.config.publicUrl}/webhooks/twilio/status`;
    const params = { MessageSid: message.provider_id!, MessageStatus: 'failed', ErrorCode: '30005' };
    const forged = twilio.getExpectedTwilioSignature('not-the-token', url, params);
    const attempts: Array<Record<string, string>> = [{ 'x-twilio-signature': forged }, {}];
    for (const headers of attempts) {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(params).toString(),
      });
      expect(response.status).toBe(403);
    }
    expect(await statusOf(message.id)).toMatchObject({ status: 'sent' });
  });
});
