import { randomInt } from 'node:crypto';
import { sql } from 'drizzle-orm';
import twilio from 'twilio';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// Three SMS steps a few seconds apart: a reply can land between them.
const cadences = `
- name: switching
  expire_after: 1h
  switch_channel_on_failure: true
  steps:
    - { after: 1s, channel: sms, template: nudge }
    - { after: 4s, channel: sms, template: nudge }
    - { after: 7s, channel: sms, template: last-call }
- name: sms-only
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1s, channel: sms, template: nudge }
    - { after: 4s, channel: sms, template: last-call }
`;

/** Suppressions are per number: every test texts from its own. */
function uniquePhone(): string {
  return `+86137${String(randomInt(10_000_000, 99_999_999))}`;
}

interface MessageRow {
  id: string;
  step: number;
  channel: string;
  status: string;
  reason: string | null;
  to_address: string | null;
}

describe('SMS opt-out and opt-in (POST /webhooks/twilio/inbound)', () => {
  let svc: TestService;
  let fake: FakeTwilio;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    const port = await freePort();
    svc = await startTestService({
      cadences,
      env: {
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        SHOP_NAME: 'Acme',
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: fake.accountSid,
        TWILIO_AUTH_TOKEN: fake.authToken,
        TWILIO_MESSAGING_SERVICE_SID: 'MG00000000000000000000000000000000',
        TWILIO_API_URL: fake.url,
      },
    });
    fake.inboundUrl = `${svc.config.publicUrl}/webhooks/twilio/inbound`;
  });
  afterAll(async () => {
    await svc?.close();
    await fake?.close();
  });
  beforeEach(() => {
    fake.inboundUrl = `${svc.config.publicUrl}/webhooks/twilio/inbound`;
  });

  async function startRecovery(cadence: string, customer: Record<string, unknown>) {
    const base = makeEvent();
    const event = { ...base, order: { ...base.order, cadence, customer: { ...base.order.customer, ...customer } } };
    const response = await svc.post(event);
    expect(response.status).toBeLessThan(300);
    return event;
  }

  async function messageAt(orderId: string, step: number, done = (m: MessageRow) => m.status !== 'scheduled') {
    return waitFor(
      async () => {
        const [m] = await rows<MessageRow>(
          svc.database.db,
          sql`select id, step, channel, status, reason, to_address from messages
              where order_id = ${orderId} and step = ${step}`,
        );
        return m && m.status !== 'sending' && done(m) ? m : undefined;
      },
      { what: `step ${step} of ${orderId}` },
    );
  }

  async function suppressionsOf(phone: string) {
    return rows<{ channel: string; address: string; reason: string }>(
      svc.database.db,
      sql`select channel, address, reason from suppressions where address = ${phone}`,
    );
  }

  async function consentOf(phone: string) {
    return rows<{
      customer_id: string | null;
      channel: string;
      action: string;
      source: string;
      keyword: string | null;
      message_id: string | null;
    }>(
      svc.database.db,
      sql`select customer_id, channel, action, source, keyword, message_id from consent_events
          where address = ${phone} order by at, id`,
    );
  }

  it('STOP suppresses the number and moves the next SMS step to email; START brings SMS back', async () => {
    const phone = uniquePhone();
    const email = `stop-${phone.slice(1)}@example.com`;
    const event = await startRecovery('switching', { phone, email, locale: 'en' });
    const first = await messageAt(event.order.id, 0);
    expect(first).toMatchObject({ channel: 'sms', status: 'sent', to_address: phone });

    const stop = await fake.sendInboundSms(phone, ' stop ');
    expect(stop.status).toBe(200);
    expect(stop.contentType).toMatch(/^text\/xml/);
    expect(stop.body).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Message>' +
        'You will no longer receive payment reminders from Acme. Reply START to resubscribe.' +
        '</Message></Response>',
    );
    expect(await suppressionsOf(phone)).toEqual([{ channel: 'sms', address: phone, reason: 'stop_reply' }]);
    expect(await consentOf(phone)).toEqual([
      {
        customer_id: event.order.customer.id,
        channel: 'sms',
        action: 'opt_out',
        source: 'sms_reply',
        keyword: 'STOP',
        message_id: first.id,
      },
    ]);

    // The next SMS step of the active recovery goes by email; nothing more is sent to the number.
    const second = await messageAt(event.order.id, 1);
    expect(second).toMatchObject({ channel: 'email', status: 'sent', to_address: email });
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(1);

    const start = await fake.sendInboundSms(phone, 'START');
    expect(start.body).toContain('<Message>You will receive payment reminders from Acme again.');
    expect(await suppressionsOf(phone)).toEqual([]);
    expect((await consentOf(phone)).map((c) => [c.action, c.keyword])).toEqual([
      ['opt_out', 'STOP'],
      ['opt_in', 'START'],
    ]);

    const third = await messageAt(event.order.id, 2);
    expect(third).toMatchObject({ channel: 'sms', status: 'sent', to_address: phone });
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(2);
  });

  it('records the later SMS step as suppressed when the cadence may not switch channels', async () => {
    const phone = uniquePhone();
    const event = await startRecovery('sms-only', { phone });
    await messageAt(event.order.id, 0);
    const stop = await fake.sendInboundSms(phone, 'UNSUBSCRIBE');
    // makeEvent's customer reads Chinese: the answer is in Chinese.
    expect(stop.body).toContain('<Message>您将不再收到Acme的付款提醒。回复 START 可重新订阅。</Message>');
    const second = await messageAt(event.order.id, 1);
    expect(second).toMatchObject({ channel: 'sms', status: 'suppressed', reason: 'stop_reply', to_address: phone });
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(1);
  });

  it('ends SMS for every active recovery of customers with that number', async () => {
    const phone = uniquePhone();
    const one = await startRecovery('sms-only', { phone });
    const two = await startRecovery('sms-only', { phone });
    await messageAt(one.order.id, 0);
    await messageAt(two.order.id, 0);
    await fake.sendInboundSms(phone, 'END');
    for (const event of [one, two]) {
      expect(await messageAt(event.order.id, 1)).toMatchObject({ status: 'suppressed', channel: 'sms' });
    }
    expect(fake.messages.filter((m) => m.to === phone)).toHaveLength(2);
  });

  it('understands 退订 and answers in Chinese even from an unknown number', async () => {
    const phone = uniquePhone();
    const reply = await fake.sendInboundSms(phone, '退订');
    expect(reply.status).toBe(200);
    expect(reply.body).toContain('<Message>您将不再收到Acme的付款提醒。');
    expect(await suppressionsOf(phone)).toEqual([{ channel: 'sms', address: phone, reason: 'stop_reply' }]);
    expect(await consentOf(phone)).toEqual([
      expect.objectContaining({ action: 'opt_out', keyword: '退订', customer_id: null, message_id: null }),
    ]);
    // Twilio may deliver the same webhook twice: one suppression, one ledger row.
    await fake.sendInboundSms(phone, 'TD');
    expect(await consentOf(phone)).toHaveLength(1);
  });

  it('answers HELP without changing anything, and ignores other replies', async () => {
    const phone = uniquePhone();
    const help = await fake.sendInboundSms(phone, 'help');
    expect(help.status).toBe(200);
    expect(help.body).toContain(
      '<Message>Payment reminders from Acme. Reply STOP to unsubscribe, START to resubscribe.</Message>',
    );
    const chat = await fake.sendInboundSms(phone, 'Who is this?');
    expect(chat.body).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    expect(await suppressionsOf(phone)).toEqual([]);
    expect(await consentOf(phone)).toEqual([]);
  });

  it("records Twilio's Advanced Opt-Out keywords without answering a second time", async () => {
    const phone = uniquePhone();
    const reply = await fake.sendInboundSms(phone, 'ARRET', { optOutType: 'STOP' });
    expect(reply.body).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    expect(await suppressionsOf(phone)).toHaveLength(1);
    expect(await consentOf(phone)).toEqual([expect.objectContaining({ action: 'opt_out', keyword: 'ARRET' })]);
  });

  it('ignores a replayed message: a captured START posted again after STOP leaves the number opted out', async () => {
    const phone = uniquePhone();
    const start = await fake.sendInboundSms(phone, 'START');
    expect(start.status).toBe(200);
    expect((await fake.sendInboundSms(phone, 'STOP')).status).toBe(200);

    const replayed = await fetch(start.sent.url, {
      method: 'POST',
      headers: start.sent.headers,
      body: start.sent.body,
    });
    // Twilio expects a 2xx; the answer says nothing, and nothing changes.
    expect(replayed.status).toBe(200);
    expect(await replayed.text()).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    expect(await suppressionsOf(phone)).toEqual([{ channel: 'sms', address: phone, reason: 'stop_reply' }]);
    expect((await consentOf(phone)).map((c) => [c.action, c.keyword])).toEqual([['opt_out', 'STOP']]);
  });

  it('takes form posts only: a signed JSON body is 415 and records nothing', async () => {
    const phone = uniquePhone();
    const params = { MessageSid: `SM${phone.slice(1)}`, From: phone, To: '+15005550006', Body: 'STOP' };
    const url = fake.inboundUrl!;
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(fake.authToken, url, params),
      },
      body: JSON.stringify(params),
    });
    expect(response.status).toBe(415);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await suppressionsOf(phone)).toEqual([]);
    expect(await consentOf(phone)).toEqual([]);
  });

  it('rejects a forged or unsigned request with 403 and records nothing', async () => {
    const phone = uniquePhone();
    const forged = await fake.sendInboundSms(phone, 'STOP', { signWith: 'not-the-auth-token' });
    expect(forged.status).toBe(403);
    const unsigned = await fetch(fake.inboundUrl!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ From: phone, Body: 'STOP' }).toString(),
    });
    expect(unsigned.status).toBe(403);
    // Signed for another URL (a request replayed to another endpoint).
    fake.inboundUrl = `${svc.config.publicUrl}/webhooks/twilio/inbound?x=1`;
    const elsewhere = await fake.sendInboundSms(phone, 'STOP');
    expect(elsewhere.status).toBe(403);
    expect(await suppressionsOf(phone)).toEqual([]);
    expect(await consentOf(phone)).toEqual([]);
  });
});
