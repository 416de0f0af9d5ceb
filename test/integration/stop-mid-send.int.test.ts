import { randomInt } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { rows } from '../../src/db/rows.js';
import type { ServiceOverrides } from '../../src/app/service.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 1h
switch_channel_on_failure: false
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 30m, channel: sms, template: last-call }
`;

/** An SMS provider that takes `handOverMs` to accept a message, and notes when it did. */
class SlowSender implements SmsSender {
  readonly transport = 'slow';
  readonly accepted: Array<{ to: string; at: number }> = [];
  onCall: ((message: SmsMessage) => void) | undefined;
  constructor(private readonly handOverMs: number) {}
  async send(message: SmsMessage) {
    this.onCall?.(message);
    await new Promise((resolve) => setTimeout(resolve, this.handOverMs));
    this.accepted.push({ to: message.to, at: Date.now() });
    return { providerId: `SM${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}

function uniquePhone(): string {
  return `+86136${String(randomInt(10_000_000, 99_999_999))}`;
}

/**
 * STOP and a new address are like a payment: once recoup has answered them, no reminder may be
 * accepted for that number, or at the old address. Either the send reads them before it starts,
 * or their answer waits for the send in flight.
 */
describe('STOP and a change of address while a reminder is being sent', () => {
  let svc: TestService | undefined;
  let twilio: FakeTwilio | undefined;
  afterEach(async () => {
    await svc?.close();
    await twilio?.close();
    svc = undefined;
    twilio = undefined;
  });

  async function start(sender: SlowSender, overrides: ServiceOverrides = {}) {
    twilio = await startFakeTwilio();
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
      },
      overrides: { sms: sender, ...overrides },
    });
    twilio.inboundUrl = `${svc.config.publicUrl}/webhooks/twilio/inbound`;
    return { svc, twilio };
  }

  async function suppressed(phone: string): Promise<boolean> {
    const found = await rows(
      svc!.database.db,
      sql`select 1 from suppressions where channel = 'sms' and address = ${phone}`,
    );
    return found.length > 0;
  }

  async function phoneOf(customerId: string): Promise<string | undefined> {
    const [customer] = await rows<{ phone: string | null }>(
      svc!.database.db,
      sql`select phone from customers where id = ${customerId}`,
    );
    return customer?.phone ?? undefined;
  }

  function failedPayment(phone: string) {
    const event = makeEvent();
    return makeEvent({}, { customer: { ...event.order.customer, phone, locale: 'en' } });
  }

  async function stepOf(service: TestService, orderId: string) {
    return waitFor(
      async () => {
        const order = await service.getOrder(orderId);
        const message = order.messages.find((m) => m.step === 0);
        return message && message.status !== 'sending' ? message : undefined;
      },
      { what: 'the first step to be recorded' },
    );
  }

  it('answers STOP only once the SMS already on its way was accepted', async () => {
    const sender = new SlowSender(300);
    const { svc, twilio } = await start(sender);
    const phone = uniquePhone();
    let stopAnsweredAt: number | undefined;
    let stop: Promise<{ status: number; body: string }> | undefined;
    sender.onCall = () => {
      sender.onCall = undefined;
      stop = twilio.sendInboundSms(phone, 'STOP').then((answer) => {
        stopAnsweredAt = Date.now();
        return answer;
      });
    };
    expect((await svc.post(failedPayment(phone))).status).toBe(202);
    await waitFor(() => stopAnsweredAt, { what: 'STOP to be answered' });
    expect((await stop!).body).toContain('<Message>');
    expect(sender.accepted).toHaveLength(1);
    expect(sender.accepted[0]!.at).toBeLessThanOrEqual(stopAnsweredAt!);
  });

  it('does not send to a number that replied STOP after the step was claimed', async () => {
    const sender = new SlowSender(0);
    const phone = uniquePhone();
    let stop: Promise<unknown> | undefined;
    const { svc } = await start(sender, {
      // The STOP commits between the claim and the send (its answer waits for this very send).
      faultPoint: async (point) => {
        if (point !== 'after_claim' || stop) return;
        stop = twilio!.sendInboundSms(phone, 'STOP');
        await waitFor(async () => (await suppressed(phone)) || undefined, { what: 'the STOP to commit' });
      },
    });
    const failed = failedPayment(phone);
    expect((await svc.post(failed)).status).toBe(202);
    expect(await stepOf(svc, failed.order.id)).toMatchObject({ status: 'suppressed', reason: 'stop_reply' });
    expect(await stop).toMatchObject({ status: 200 });
    expect(sender.accepted).toEqual([]);
  });

  it('does not send to the old number once the shop changed it after the step was claimed', async () => {
    const sender = new SlowSender(0);
    const oldPhone = uniquePhone();
    const newPhone = uniquePhone();
    let update: Promise<Response> | undefined;
    const failed = failedPayment(oldPhone);
    const { svc } = await start(sender, {
      // The new number commits between the claim and the send (its answer waits for this very send).
      faultPoint: async (point) => {
        if (point !== 'after_claim' || update) return;
        const change = makeEvent(
          { type: 'customer.updated', occurred_at: new Date().toISOString() },
          { ...failed.order, customer: { ...failed.order.customer, phone: newPhone } },
        );
        update = svc!.post(change);
        await waitFor(async () => ((await phoneOf(failed.order.customer.id)) === newPhone ? true : undefined), {
          what: 'the new number to commit',
        });
      },
    });
    expect((await svc.post(failed)).status).toBe(202);
    expect(await stepOf(svc, failed.order.id)).toMatchObject({ status: 'skipped', reason: 'address_changed' });
    expect((await update!).status).toBe(202);
    expect(sender.accepted).toEqual([]);
  });

  it('answers a change of number only once the SMS already on its way to the old one was accepted', async () => {
    const sender = new SlowSender(300);
    const oldPhone = uniquePhone();
    const failed = failedPayment(oldPhone);
    const { svc } = await start(sender);
    let answeredAt: number | undefined;
    sender.onCall = () => {
      sender.onCall = undefined;
      const change = makeEvent(
        { type: 'customer.updated', occurred_at: new Date().toISOString() },
        { ...failed.order, customer: { ...failed.order.customer, phone: uniquePhone() } },
      );
      void svc.post(change).then((response) => {
        expect(response.status).toBe(202);
        answeredAt = Date.now();
      });
    };
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => answeredAt, { what: 'the change to be answered' });
    expect(sender.accepted).toEqual([{ to: oldPhone, at: expect.any(Number) }]);
    expect(sender.accepted[0]!.at).toBeLessThanOrEqual(answeredAt!);
  });
});
