import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { simpleParser, type ParsedMail } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const cadences = `
- name: mail-first
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1s, channel: email, template: nudge }
    - { after: 4s, channel: email, template: last-call }
`;

interface MessageRow {
  id: string;
  channel: string;
  status: string;
  reason: string | null;
}

describe('email unsubscribe (List-Unsubscribe, /u/:token)', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startTestService({
      cadences,
      env: { SHOP_NAME: 'Acme', EMAIL_FROM: 'Acme <noreply@mail.acme.example>', RECOUP_SECRET: 'unsubscribe-test' },
    });
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** A recovery for a customer with an address of its own; resolves once its first email is written. */
  async function firstEmail(locale = 'en') {
    const email = `u-${randomBytes(5).toString('hex')}@example.com`;
    const base = makeEvent();
    const event = {
      ...base,
      order: { ...base.order, cadence: 'mail-first', customer: { ...base.order.customer, email, locale } },
    };
    expect((await svc.post(event)).status).toBeLessThan(300);
    const message = await messageAt(event.order.id, 0);
    expect(message).toMatchObject({ channel: 'email', status: 'sent' });
    const file = path.join(svc.outboxDir, `${message.id}.eml`);
    const parsed = await simpleParser(fs.readFileSync(file));
    const header = parsed.headerLines.find((h) => h.key === 'list-unsubscribe')?.line ?? '';
    const url = /<(https:\/\/[^>]+)>/.exec(header)?.[1];
    if (!url) throw new Error(`no https List-Unsubscribe in ${header}`);
    // PUBLIC_URL is https://pay.example-shop.com; the test talks to the service directly.
    const local = `${svc.url}${new URL(url).pathname}`;
    return { event, email, message, parsed, header, url, local, token: new URL(url).pathname.slice(3) };
  }

  async function messageAt(orderId: string, step: number) {
    return waitFor(
      async () => {
        const [m] = await rows<MessageRow>(
          svc.database.db,
          sql`select id, channel, status, reason from messages where order_id = ${orderId} and step = ${step}`,
        );
        return m && !['scheduled', 'sending'].includes(m.status) ? m : undefined;
      },
      { what: `step ${step} of ${orderId}` },
    );
  }

  async function ledger(email: string) {
    const suppressions = await rows<{ channel: string; reason: string }>(
      svc.database.db,
      sql`select channel, reason from suppressions where address = ${email}`,
    );
    const consent = await rows<{ action: string; source: string; message_id: string | null; customer_id: string }>(
      svc.database.db,
      sql`select action, source, message_id, customer_id from consent_events where address = ${email}`,
    );
    return { suppressions, consent };
  }

  it('puts List-Unsubscribe (https + mailto) and List-Unsubscribe-Post on every reminder, and the link in the footer', async () => {
    const { parsed, header, url, token, message } = await firstEmail();
    expect(url).toBe(`https://pay.example-shop.com/u/${token}`);
    expect(token).toMatch(new RegExp(`^${message.id}\\.[A-Za-z0-9_-]{22}$`));
    expect(header).toContain(`<mailto:unsubscribe@mail.acme.example?subject=unsubscribe%20${token}>`);
    const post = parsed.headerLines.find((h) => h.key === 'list-unsubscribe-post');
    expect(post?.line).toBe('List-Unsubscribe-Post: List-Unsubscribe=One-Click');
    expect(parsed.headers.get('list')).toMatchObject({
      unsubscribe: { url, mail: `unsubscribe@mail.acme.example?subject=unsubscribe%20${token}` },
    });
    expect(htmlOf(parsed)).toContain(`href="${url}"`);
    expect(parsed.text).toContain(`Stop payment reminders: ${url}`);
  });

  it('one-click POST unsubscribes at once without a cookie, and the next email step is suppressed', async () => {
    const { event, email, message, local } = await firstEmail();
    const response = await fetch(local, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(await ledger(email)).toEqual({
      suppressions: [{ channel: 'email', reason: 'email_unsubscribe' }],
      consent: [
        {
          action: 'opt_out',
          source: 'email_one_click',
          message_id: message.id,
          customer_id: event.order.customer.id,
        },
      ],
    });
    // A provider retrying the POST changes nothing more.
    expect(
      (await fetch(local, { method: 'POST', body: new URLSearchParams({ 'List-Unsubscribe': 'One-Click' }) })).status,
    ).toBe(200);
    expect((await ledger(email)).consent).toHaveLength(1);

    expect(await messageAt(event.order.id, 1)).toMatchObject({
      channel: 'email',
      status: 'suppressed',
      reason: 'email_unsubscribe',
    });
    expect(fs.existsSync(path.join(svc.outboxDir, `${(await messageAt(event.order.id, 1)).id}.eml`))).toBe(false);
  });

  it('accepts the one-click POST as multipart/form-data', async () => {
    const { email, local } = await firstEmail();
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    const response = await fetch(local, { method: 'POST', body: form });
    expect(response.status).toBe(200);
    expect((await ledger(email)).consent).toEqual([expect.objectContaining({ source: 'email_one_click' })]);
  });

  it('GET shows a confirmation page and changes nothing; its button unsubscribes', async () => {
    const { email, local, message } = await firstEmail('zh-CN');
    for (let i = 0; i < 2; i++) {
      const page = await fetch(local);
      expect(page.status).toBe(200);
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(await page.text()).toContain('不再接收付款提醒？');
    }
    expect(await fetch(local, { method: 'HEAD' }).then((r) => r.status)).toBe(200);
    expect(await ledger(email)).toEqual({ suppressions: [], consent: [] });

    const page = await fetch(local);
    const cookie = page.headers.get('set-cookie')?.split(';')[0] ?? '';
    const html = await page.text();
    expect(html).toContain(`action="/u/${local.split('/u/')[1]}"`);
    expect(html).toContain(`u***@example.com`);
    expect(html).not.toContain(email);
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

    // Without the cookie (a cross-site form, a lost cookie): asked again, nothing recorded.
    const forged = await fetch(local, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }).toString(),
    });
    expect(forged.status).toBe(403);
    expect(await forged.text()).toContain('请再按一次按钮确认');
    expect(await ledger(email)).toEqual({ suppressions: [], consent: [] });

    const done = await fetch(local, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: new URLSearchParams({ csrf }).toString(),
      redirect: 'manual',
    });
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('您已退订');
    expect((await ledger(email)).consent).toEqual([
      expect.objectContaining({ action: 'opt_out', source: 'email_page', message_id: message.id }),
    ]);
    // Coming back shows "already unsubscribed", still without a change.
    expect(await (await fetch(local)).text()).toContain('您已经退订');
    expect((await ledger(email)).consent).toHaveLength(1);
  });

  it('stores an email trimmed and lower-cased, so an unsubscribe from one spelling holds for another', async () => {
    const local = `u-${randomBytes(5).toString('hex')}`;
    const email = `${local}@example.com`;
    async function start(address: string) {
      const base = makeEvent();
      const event = {
        ...base,
        order: { ...base.order, cadence: 'mail-first', customer: { ...base.order.customer, email: address } },
      };
      expect((await svc.post(event)).status).toBeLessThan(300);
      return event;
    }
    const first = await start(`${local.toUpperCase()}@Example.COM `);
    const [customer] = await rows<{ email: string }>(
      svc.database.db,
      sql`select email from customers where id = ${first.order.customer.id}`,
    );
    expect(customer?.email).toBe(email);
    const sent = await messageAt(first.order.id, 0);
    expect(sent).toMatchObject({ status: 'sent' });
    const [address] = await rows<{ to_address: string }>(
      svc.database.db,
      sql`select to_address from messages where id = ${sent.id}`,
    );
    expect(address?.to_address).toBe(email);

    // Unsubscribed from the email sent to the first spelling; another customer record types it otherwise.
    const parsed = await simpleParser(fs.readFileSync(path.join(svc.outboxDir, `${sent.id}.eml`)));
    const url = /<(https:\/\/[^>]+)>/.exec(
      parsed.headerLines.find((h) => h.key === 'list-unsubscribe')?.line ?? '',
    )?.[1];
    const oneClick = await fetch(`${svc.url}${new URL(url ?? '').pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(oneClick.status).toBe(200);
    const second = await start(` ${local}@EXAMPLE.com`);
    expect(await messageAt(second.order.id, 0)).toMatchObject({ status: 'suppressed', reason: 'email_unsubscribe' });
  });

  it('refuses a forged or altered token', async () => {
    const { email, local, message } = await firstEmail();
    const altered = local.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await fetch(altered)).status).toBe(404);
    const oneClick = await fetch(altered, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(oneClick.status).toBe(404);
    // A retry-link-shaped token or a bare message id is no unsubscribe token.
    expect((await fetch(`${svc.url}/u/${message.id}`)).status).toBe(404);
    expect(await ledger(email)).toEqual({ suppressions: [], consent: [] });
  });
});

function htmlOf(parsed: ParsedMail): string {
  return typeof parsed.html === 'string' ? parsed.html : '';
}
