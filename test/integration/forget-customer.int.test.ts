import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressHash, findSuppressions, recordConsent, suppress } from '../../src/compliance/suppressions.js';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';

const cadences = `
- name: forget-sms
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1s, channel: sms, template: nudge }
    - { after: 30m, channel: sms, template: last-call }
- name: forget-email
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1s, channel: email, template: nudge }
`;

const repoRoot = path.resolve(import.meta.dirname, '../..');

interface Person {
  id: string;
  name: string;
  email: string;
  phone: string;
  locale: string;
  timezone: string;
}

function person(): Person {
  const n = randomBytes(4).toString('hex');
  return {
    id: `cus_forget_${n}`,
    name: `Wang ${n}`,
    email: `wang.${n}@example.com`,
    phone: `+86136${String(randomInt(10_000_000, 99_999_999))}`,
    locale: 'zh-CN',
    timezone: 'Asia/Shanghai',
  };
}

describe('forgetting a customer', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startTestService({ cadences });
  });
  afterAll(async () => {
    await svc?.close();
  });

  const db = () => svc.database.db;

  function orderEvent(customer: Person, type = 'payment.failed', orderId?: string, cadence = 'forget-sms') {
    const base = makeEvent({ type });
    return {
      ...base,
      order: { ...base.order, id: orderId ?? base.order.id, cadence, customer: { ...customer } },
    };
  }

  async function post(event: unknown) {
    const response = await svc.post(event);
    expect(response.status).toBeLessThan(300);
  }

  async function firstSent(orderId: string) {
    return waitFor(
      async () => {
        const [m] = await rows<{ id: string; status: string }>(
          db(),
          sql`select id, status from messages where order_id = ${orderId} and step = 0`,
        );
        return m && !['scheduled', 'sending'].includes(m.status) ? m : undefined;
      },
      { what: `first message of ${orderId}` },
    );
  }

  function forget(id: string, key: string | null = testApiKey) {
    return fetch(`${svc.url}/v1/customers/${encodeURIComponent(id)}/forget`, {
      method: 'POST',
      headers: key ? { authorization: `Bearer ${key}` } : {},
    });
  }

  /** Every outbox file by name, with what it says in lower case: emails decoded (headers, text and HTML). */
  async function outbox(): Promise<Map<string, string>> {
    const files = new Map<string, string>();
    for (const entry of await readdir(svc.outboxDir, { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const raw = await readFile(path.join(svc.outboxDir, entry.name));
      const mail = entry.name.endsWith('.eml') ? await simpleParser(raw) : undefined;
      const html = typeof mail?.html === 'string' ? mail.html : '';
      files.set(entry.name, [raw.toString('utf8'), mail?.text ?? '', html].join('\n').toLowerCase());
    }
    return files;
  }

  /** The outbox files that name the person (name, email or phone). */
  function naming(files: Map<string, string>, who: Person): Map<string, string> {
    const values = [who.name, who.email, who.phone].map((v) => v.toLowerCase());
    return new Map([...files].filter(([, text]) => values.some((v) => text.includes(v))));
  }

  /** Everything recoup holds that could name the customer, plus the money. */
  async function snapshot(customerId: string) {
    const q = <T>(query: ReturnType<typeof sql>) => rows<T>(db(), query);
    return {
      customer: await q(sql`select * from customers where id = ${customerId}`),
      messages: await q(sql`select * from messages where customer_id = ${customerId} order by id`),
      events: await q(sql`select id, payload from events where customer_id = ${customerId} order by id`),
      suppressions: await q(sql`select * from suppressions order by channel, address`),
      consent: await q(sql`select * from consent_events where customer_id = ${customerId} order by id`),
      audit: await q(sql`select * from audit_log where subject = ${`customer:${customerId}`} order by at, id`),
      recoveries: await q(sql`select * from recoveries where customer_id = ${customerId} order by id`),
      outbound: await q<{ type: string; data: Record<string, unknown> }>(
        sql`select type, data from outbound_events where customer_id = ${customerId} order by written`,
      ),
      payments: await q(
        sql`select p.order_id, p.amount::text, p.currency, p.paid_at from payments p
            join orders o on o.id = p.order_id where o.customer_id = ${customerId} order by p.id`,
      ),
      attempts: await q(
        sql`select a.order_id, a.amount::text, a.currency, a.status from payment_attempts a
            join orders o on o.id = a.order_id where o.customer_id = ${customerId} order by a.id`,
      ),
    };
  }

  it('erases personal data, keeps payments and amounts, keeps the opt-out as a hash, and is idempotent', async () => {
    const wang = person();
    const paidOrder = orderEvent(wang);
    await post(paidOrder);
    await firstSent(paidOrder.order.id);
    await post(orderEvent(wang, 'payment.succeeded', paidOrder.order.id));
    const openOrder = orderEvent(wang);
    await post(openOrder);
    const openMessage = await firstSent(openOrder.order.id);

    // Wang replied STOP, and once corrected an address on a retry page.
    const at = new Date();
    await suppress(db(), { channel: 'sms', address: wang.phone, reason: 'stop_reply', at });
    await recordConsent(db(), {
      customerId: wang.id,
      channel: 'sms',
      address: wang.phone,
      action: 'opt_out',
      source: 'sms_reply',
      keyword: 'STOP',
      messageId: openMessage.id,
      at,
    });
    await db().execute(
      sql`insert into audit_log (id, at, actor, action, subject, before, after)
          values (${`aud_${randomBytes(6).toString('hex')}`}, ${at}, ${`customer:${wang.id}`}, 'contact.confirmed',
                  ${`customer:${wang.id}`}, ${JSON.stringify({ email: 'old@example.com' })}::jsonb,
                  ${JSON.stringify({ email: wang.email })}::jsonb)`,
    );
    const before = await snapshot(wang.id);
    expect(before.payments).toHaveLength(1);
    expect(JSON.stringify(before)).toContain(wang.phone);
    expect(before.outbound.find((e) => e.type === 'customer.opted_out')?.data).toHaveProperty('address');

    const response = await forget(wang.id);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { status: string; erased: Record<string, number> };
    expect(body.status).toBe('forgotten');
    expect(body.erased).toMatchObject({ customer: 1, recoveriesStopped: 1, suppressions: 1, consentEvents: 1 });

    const after = await snapshot(wang.id);
    // What the shop was told keeps its ids and amounts, and loses the masked address.
    expect(after.outbound.map((e) => e.type)).toContain('customer.opted_out');
    for (const event of after.outbound) {
      expect(event.data).not.toHaveProperty('to');
      expect(event.data).not.toHaveProperty('address');
      expect(event.data.customer_id).toBe(wang.id);
    }
    // Nothing that names Wang is left anywhere.
    const text = JSON.stringify(after);
    for (const value of [wang.name, wang.email, wang.phone, 'old@example.com', 'Asia/Shanghai']) {
      expect(text).not.toContain(value);
    }
    expect(after.customer).toEqual([
      expect.objectContaining({
        id: wang.id,
        name: null,
        email: null,
        phone: null,
        locale: null,
        timezone: null,
        forgotten_at: expect.any(Date),
      }),
    ]);
    for (const message of after.messages as Array<Record<string, unknown>>) {
      expect(message).toMatchObject({ to_address: null, link_revoked_at: expect.any(Date) });
    }
    // Events keep ids, amounts, currencies and timestamps.
    const [event] = after.events as Array<{ payload: { order: Record<string, unknown>; occurred_at: string } }>;
    expect(event?.payload.order).toMatchObject({
      id: expect.stringMatching(/^ord_/),
      amount: 12900,
      currency: 'CNY',
      customer: { id: wang.id, name: null, email: null, phone: null, locale: null, timezone: null },
    });
    expect(event?.payload.occurred_at).toEqual(expect.any(String));
    // The money is untouched.
    expect(after.payments).toEqual(before.payments);
    expect(after.attempts).toEqual(before.attempts);
    // Opted out stays opted out: the suppression and the ledger keep a hash.
    expect(after.suppressions).toContainEqual(
      expect.objectContaining({ channel: 'sms', address: addressHash('sms', wang.phone), reason: 'stop_reply' }),
    );
    expect(after.consent).toEqual([
      expect.objectContaining({ address: addressHash('sms', wang.phone), keyword: 'STOP', message_id: openMessage.id }),
    ]);
    expect(await findSuppressions(db(), { sms: wang.phone })).toEqual(new Map([['sms', 'stop_reply']]));
    expect(after.recoveries).toContainEqual(
      expect.objectContaining({ order_id: openOrder.order.id, state: 'stopped', ended_reason: 'customer_forgotten' }),
    );
    expect(after.audit).toContainEqual(
      expect.objectContaining({ action: 'contact.confirmed', before: { email: null }, after: { email: null } }),
    );
    const forgetEntries = (after.audit as Array<{ action: string; actor: string }>).filter(
      (a) => a.action === 'customer.forget',
    );
    expect(forgetEntries).toEqual([expect.objectContaining({ actor: 'key:env-0' })]);

    // Again: nothing changes, no second audit entry.
    const again = await forget(wang.id);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: 'already_forgotten' });
    expect(await snapshot(wang.id)).toEqual(after);
  });

  it("deletes the customer's outbox files, those of their reminders and those addressed to them, and no one else's", async () => {
    const wang = person();
    const li = person();
    for (const who of [wang, li]) {
      for (const cadence of ['forget-sms', 'forget-email']) {
        const event = orderEvent(who, 'payment.failed', undefined, cadence);
        await post(event);
        await firstSent(event.order.id);
      }
    }
    // Cadence test sends to Wang's number and email (in other letter case): no message of his names them.
    for (const to of [wang.phone, wang.email.toUpperCase()]) {
      const response = await fetch(`${svc.url}/v1/cadences/forget-sms/test-send`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ to }),
      });
      expect(response.status).toBe(200);
    }
    // Files that cannot be read as outbox files are left alone, and do not stop the erasure.
    await writeFile(path.join(svc.outboxDir, 'broken.sms.json'), '{"to": "+86');
    await mkdir(path.join(svc.outboxDir, 'folder.eml'));

    const before = await outbox();
    const wangsFiles = naming(before, wang);
    expect([...wangsFiles.keys()].filter((name) => name.endsWith('.sms.json'))).toHaveLength(2);
    expect([...wangsFiles.keys()].filter((name) => name.endsWith('.eml'))).toHaveLength(2);
    expect([...wangsFiles.values()].some((text) => text.includes(wang.name.toLowerCase()))).toBe(true);
    const lisFiles = naming(before, li);
    expect(lisFiles.size).toBe(2);

    const response = await forget(wang.id);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { status: string; erased: Record<string, number> };
    expect(body).toMatchObject({ status: 'forgotten', erased: { outboxFiles: 4 } });

    const after = await outbox();
    expect(naming(after, wang)).toEqual(new Map());
    expect(naming(after, li)).toEqual(lisFiles);
    expect(await readdir(svc.outboxDir)).toEqual(expect.arrayContaining(['broken.sms.json', 'folder.eml']));
    const [audit] = await rows<{ after: { erased: Record<string, number> } }>(
      db(),
      sql`select after from audit_log where subject = ${`customer:${wang.id}`} and action = 'customer.forget'`,
    );
    expect(audit?.after.erased.outboxFiles).toBe(4);
  });

  it("keeps a forgotten customer's number suppressed for the dispatcher (matched by hash)", async () => {
    const wang = person();
    await suppress(db(), { channel: 'sms', address: wang.phone, reason: 'stop_reply', at: new Date() });
    await post(orderEvent(wang));
    expect((await forget(wang.id)).status).toBe(200);
    const [raw] = await rows(db(), sql`select 1 from suppressions where address = ${wang.phone}`);
    expect(raw).toBeUndefined();

    // Someone the shop knows under another id, with the same number.
    const other = { ...person(), phone: wang.phone };
    const event = orderEvent(other);
    await post(event);
    const message = await waitFor(
      async () => {
        const [m] = await rows<{ status: string; reason: string | null; channel: string }>(
          db(),
          sql`select status, reason, channel from messages where order_id = ${event.order.id} and step = 0`,
        );
        return m && m.status !== 'scheduled' && m.status !== 'sending' ? m : undefined;
      },
      { what: 'the first step' },
    );
    expect(message).toEqual({ status: 'suppressed', reason: 'stop_reply', channel: 'sms' });
  });

  it('needs an admin key and a known customer', async () => {
    expect((await forget('cus_nobody')).status).toBe(404);
    expect((await forget('cus_nobody', null)).status).toBe(401);
    expect((await forget('cus_nobody', 'wrong-key')).status).toBe(401);
  });

  // Three runs of the real CLI (through tsx): slower than the rest.
  it('works from the command line: recoup customers forget ID', { timeout: 90_000 }, async () => {
    const li = person();
    const event = orderEvent(li);
    await post(event);
    await firstSent(event.order.id);
    expect(naming(await outbox(), li).size).toBe(1);
    const env = {
      DATABASE_URL: svc.database.url,
      DATA_DIR: path.join(os.tmpdir(), `recoup-forget-${li.id}`),
      OUTBOX_DIR: svc.outboxDir,
    };
    const first = await runCli(['customers', 'forget', li.id], env);
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toContain(`${li.id}: personal data erased`);
    expect(first.stdout).toContain('outboxFiles 1');
    expect(naming(await outbox(), li).size).toBe(0);
    const [customer] = await rows<{ email: string | null; forgotten_at: Date | null }>(
      db(),
      sql`select email, forgotten_at from customers where id = ${li.id}`,
    );
    expect(customer).toEqual({ email: null, forgotten_at: expect.any(Date) });
    const [audit] = await rows<{ actor: string }>(
      db(),
      sql`select actor from audit_log where subject = ${`customer:${li.id}`} and action = 'customer.forget'`,
    );
    expect(audit?.actor).toMatch(/^cli:/);

    const second = await runCli(['customers', 'forget', li.id], env);
    expect(second).toMatchObject({ code: 0 });
    expect(second.stdout).toContain('already forgotten');

    const unknown = await runCli(['customers', 'forget', 'cus_nobody'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No customer cus_nobody');
  });
});

function runCli(args: string[], env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
