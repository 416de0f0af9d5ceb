import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { startFakeSmtp, type FakeSmtp, type FakeSmtpMessage } from '../helpers/fake-smtp.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

/**
 * Customer contacts end to end, through the real service and SMTP: an internationalised email
 * address is taken, stored in one form and delivered; the same address written the other way is
 * the same address for an opt-out; a premium-rate number is left out at intake and refused on the
 * retry page.
 */
const cadences = `
- name: mail-now
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1s, channel: email, template: nudge }
`;

interface MessageRow {
  id: string;
  status: string;
  reason: string | null;
  to_address: string | null;
  link_token: string | null;
}

describe('customer contacts', () => {
  let smtp: FakeSmtp;
  let svc: TestService;

  beforeAll(async () => {
    smtp = await startFakeSmtp();
    svc = await startTestService({
      cadences,
      env: {
        EMAIL_TRANSPORT: 'smtp',
        SMTP_URL: smtp.url,
        EMAIL_FROM: 'Acme <noreply@mail.acme.example>',
        RECOUP_SECRET: 'customer-contacts-test',
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
    await smtp?.close();
  });

  /** Posts an order whose customer has these details; the answer's body. */
  async function order(customer: Record<string, unknown>) {
    const base = makeEvent();
    const event = {
      ...base,
      order: { ...base.order, cadence: 'mail-now', customer: { ...base.order.customer, ...customer } },
    };
    const response = await svc.post(event);
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status, JSON.stringify(body)).toBe(202);
    return { event, body };
  }

  async function firstMessage(orderId: string): Promise<MessageRow> {
    return waitFor(
      async () => {
        const [m] = await rows<MessageRow>(
          svc.database.db,
          sql`select id, status, reason, to_address, link_token from messages where order_id = ${orderId} and step = 0`,
        );
        return m && !['scheduled', 'sending'].includes(m.status) ? m : undefined;
      },
      { what: `the first reminder of ${orderId}` },
    );
  }

  function delivered(messageId: string): Promise<FakeSmtpMessage> {
    return waitFor(() => smtp.messages.find((m) => m.recoupMessageId === messageId), {
      what: `${messageId} at the SMTP server`,
    });
  }

  function app() {
    const instance = svc.service.app;
    if (!instance) throw new Error('no HTTP role');
    return instance;
  }

  /** The retry page a reminder links to, opened like a browser. */
  async function retryPage(message: MessageRow): Promise<LightMyRequestResponse> {
    if (!message.link_token) throw new Error(`${message.id} has no retry link`);
    return app().inject({ method: 'GET', url: `/r/${message.link_token}` });
  }

  async function customer(id: string) {
    const [row] = await rows<{ email: string | null; phone: string | null }>(
      svc.database.db,
      sql`select email, phone from customers where id = ${id}`,
    );
    return row;
  }

  it('takes an IDN domain, stores it in ASCII and mails it without needing SMTPUTF8', async () => {
    const { event } = await order({ email: 'Jose@Bücher.de' });
    expect(await customer(event.order.customer.id)).toMatchObject({ email: 'jose@xn--bcher-kva.de' });
    const message = await firstMessage(event.order.id);
    expect(message).toMatchObject({ status: 'sent', to_address: 'jose@xn--bcher-kva.de' });
    const mail = await delivered(message.id);
    // An all-ASCII envelope: any mail server takes it.
    expect(mail.smtpUtf8).toBe(false);
    expect(mail.to).toBe('jose@xn--bcher-kva.de');
    expect(mail.rcptTo).toEqual(['jose@bücher.de']);
    // The retry page shows the address as its owner writes it.
    const page = await retryPage(message);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('value="jose@bücher.de"');
  });

  it('mails a UTF-8 mailbox name over SMTPUTF8', async () => {
    const { event } = await order({ email: '用户@例子.广告' });
    expect(await customer(event.order.customer.id)).toMatchObject({ email: '用户@xn--fsqu00a.xn--4rr70v' });
    const message = await firstMessage(event.order.id);
    expect(message.status).toBe('sent');
    const mail = await delivered(message.id);
    expect(mail.smtpUtf8).toBe(true);
    expect(mail.rcptTo).toEqual(['用户@例子.广告']);
  });

  it('still answers 400 naming the field for an address that is none', async () => {
    const base = makeEvent();
    const response = await svc.post({
      ...base,
      order: { ...base.order, customer: { ...base.order.customer, email: 'jose@bücher' } },
    });
    expect(response.status).toBe(400);
    const problem = (await response.json()) as { errors: Array<{ path: string; message: string }> };
    expect(problem.errors).toEqual([
      { path: 'order.customer.email', message: expect.stringContaining('the part after @ is not a valid domain name') },
    ]);
    const [stored] = await rows<{ n: number }>(
      svc.database.db,
      sql`select count(*)::int as n from orders where id = ${base.order.id}`,
    );
    expect(stored?.n).toBe(0);
  });

  it('treats the Unicode and the punycode spelling as one address for an opt-out', async () => {
    const email = 'frau@straße-münchen.de';
    const first = await order({ email });
    const message = await firstMessage(first.event.order.id);
    const url = (await delivered(message.id)).listUnsubscribeUrl;
    if (!url) throw new Error('no List-Unsubscribe');
    const unsubscribe = await fetch(`${svc.url}${new URL(url).pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(unsubscribe.status).toBeLessThan(300);

    // A guest checkout later, the shop writing the domain in its ASCII form and in capitals.
    const again = await order({
      id: `${first.event.order.customer.id}-guest`,
      email: 'FRAU@XN--STRAE-MNCHEN-O9A32B.DE',
    });
    expect(await firstMessage(again.event.order.id)).toMatchObject({
      status: 'suppressed',
      reason: 'email_unsubscribe',
    });
  });

  it('applies an event without a premium-rate phone and reminds the customer by email', async () => {
    const { event, body } = await order({ email: 'li@example.com', phone: '+19005550123' });
    expect(body).toMatchObject({
      status: 'accepted',
      warnings: [{ path: 'order.customer.phone', message: expect.stringContaining('premium_rate') }],
    });
    expect(await customer(event.order.customer.id)).toEqual({ email: 'li@example.com', phone: null });
    const message = await firstMessage(event.order.id);
    expect(message).toMatchObject({ status: 'sent', to_address: 'li@example.com' });

    // A mobile number is kept, and the answer has nothing to warn about.
    const mobile = await order({ phone: '+8613800138000' });
    expect(mobile.body).not.toHaveProperty('warnings');
    expect(await customer(mobile.event.order.customer.id)).toMatchObject({ phone: '+8613800138000' });
  });

  it('refuses a premium-rate number on the retry page with a field error', async () => {
    const { event } = await order({ email: 'li@example.com', phone: '+8613800138000', locale: 'en' });
    const message = await firstMessage(event.order.id);
    const page = await retryPage(message);
    const refused = await app().inject({
      method: 'POST',
      url: `/r/${message.link_token}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: csrfCookie(page) },
      payload: new URLSearchParams({
        csrf: csrfField(page.body),
        email: 'li@example.com',
        phone: '+1 900 555 0123',
        method: 'alipay',
      }).toString(),
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toContain(`<p class="field-error" id="phone-error">${pageStrings.en.phoneNotTexted}</p>`);
    expect(refused.body).not.toContain('id="email-error"');
    expect(await customer(event.order.customer.id)).toEqual({ email: 'li@example.com', phone: '+8613800138000' });
  });
});

function csrfCookie(response: LightMyRequestResponse): string {
  const header = response.headers['set-cookie'];
  const all = Array.isArray(header) ? header : header ? [header] : [];
  return all.find((c) => c.startsWith('recoup_csrf='))?.split(';')[0] ?? '';
}

function csrfField(html: string): string {
  return /<input type="hidden" name="csrf" value="([^"]+)">/.exec(html)?.[1] ?? '';
}
