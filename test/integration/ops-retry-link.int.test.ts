import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { loadOrderTimeline } from '../../src/console/order-timeline.js';
import { rows } from '../../src/db/rows.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { stopRecovery } from '../../src/recoveries/ops-actions.js';
import { makeEvent, startTestService, testApiKey, type TestService } from '../helpers/service.js';

// The first reminder is an hour away: the link issued here is the order's only one.
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1h, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
`;

/** POST /v1/orders/:id/retry-link: an audited link for ops to hand to a customer. */
describe('retry links issued by ops', () => {
  let svc: TestService;
  let retry: RetryDeps;
  let opsKey: string;

  beforeAll(async () => {
    svc = await startTestService({ cadences: cadence });
    retry = svc.service.payments!;
    const ctx = { actor: 'test', at: new Date() };
    opsKey = (await createApiKey(svc.database.db, { name: 'support desk', scopes: ['ops'] }, ctx)).key;
  });
  afterAll(async () => {
    await svc.close();
  });

  /** A pending order in an active recovery. */
  async function unpaidOrder() {
    const event = makeEvent();
    const answer = await svc.post(event);
    expect(await answer.json()).toMatchObject({ outcome: 'recovery_started' });
    return event;
  }

  const issue = (orderId: string, body: unknown, key: string | null = testApiKey) =>
    fetch(`${svc.url}/v1/orders/${encodeURIComponent(orderId)}/retry-link`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === null ? {} : { authorization: `Bearer ${key}` }),
      },
      body: JSON.stringify(body),
    });

  const auditOf = (subject: string) =>
    rows<{ action: string; actor: string; before: unknown; after: Record<string, unknown> }>(
      svc.database.db,
      sql`select action, actor, before, after from audit_log where subject = ${subject} order by at, id`,
    );

  const linksOf = (orderId: string) =>
    rows<{ id: string }>(svc.database.db, sql`select id from messages where order_id = ${orderId}`);

  it('issues a working link, audited with the caller and the reason, and shown in the order’s story', async () => {
    const event = await unpaidOrder();
    const orderId = event.order.id;
    const answer = await issue(orderId, { reason: 'customer on the phone, SMS never arrived' });
    expect(answer.status).toBe(201);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const link = (await answer.json()) as { url: string; expires_at: string; message_id: string };
    expect(link.url).toMatch(/^https:\/\/pay\.example-shop\.com\/r\/[A-Za-z0-9_-]{22}$/);
    expect(Date.parse(link.expires_at)).toBeGreaterThan(Date.now());

    const path = new URL(link.url).pathname;
    const page = await fetch(`${svc.url}${path}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('li@example.com');
    // The page's script reports a person's click, as a browser does.
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const clicked = await fetch(`${svc.url}${path}/click`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: page.headers.get('set-cookie')?.split(';')[0] ?? '',
      },
      body: new URLSearchParams({ csrf }).toString(),
    });
    expect(clicked.status).toBe(204);

    expect(await auditOf(`order:${orderId}`)).toEqual([
      {
        action: 'retry_link.issued',
        actor: 'key:env-0',
        before: null,
        after: {
          recovery_id: expect.stringMatching(/^rec_/) as unknown,
          message_id: link.message_id,
          expires_at: link.expires_at,
          reason: 'customer on the phone, SMS never arrived',
        },
      },
    ]);

    // The ops API tells of it, still without the link.
    const view = await svc.getOrder(orderId);
    expect(view.messages).toEqual([
      expect.objectContaining({
        id: link.message_id,
        step: null,
        channel: 'ops',
        status: 'issued',
        link: { state: 'open', expires_at: link.expires_at },
      }),
    ]);
    expect(JSON.stringify(view)).not.toContain(new URL(link.url).pathname);

    const timeline = await loadOrderTimeline(svc.database.db, orderId);
    const titles = timeline?.entries.map((e) => e.title) ?? [];
    expect(titles).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^retry_link\.issued by configured key 1\b/),
        'Retry link issued by ops (nothing sent)',
        'Retry link clicked',
      ]),
    );
    const issued = timeline?.entries.find((e) => e.title.startsWith('retry_link.issued'));
    expect(issued?.details).toContainEqual({
      label: 'after',
      value: expect.stringContaining('customer on the phone, SMS never arrived') as unknown,
    });
  });

  it('audits a contact change made through the link as the link’s, not the customer’s own', async () => {
    const event = await unpaidOrder();
    const answer = await issue(event.order.id, { reason: 'support call' });
    const link = (await answer.json()) as { url: string; message_id: string };
    const token = new URL(link.url).pathname.split('/').pop() ?? '';

    const started = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: '+8613900139000' });
    expect(started.kind).toBe('next_action');

    expect(await auditOf(`customer:${event.order.customer.id}`)).toEqual([
      {
        action: 'contact.confirmed',
        actor: `link:${link.message_id}`,
        before: { phone: '+8613800138000' },
        after: { phone: '+8613900139000' },
      },
    ]);
    const [attempt] = await rows<{ message_id: string }>(
      svc.database.db,
      sql`select message_id from payment_attempts where order_id = ${event.order.id}`,
    );
    expect(attempt?.message_id).toBe(link.message_id);
    const timeline = await loadOrderTimeline(svc.database.db, event.order.id);
    expect(timeline?.entries.map((e) => e.title)).toContain(
      `contact.confirmed by the holder of retry link ${link.message_id} (issued by ops)`,
    );
  });

  it('needs the admin scope: an ops key gets 403, no key 401, and nothing is issued', async () => {
    const event = await unpaidOrder();
    const asOps = await issue(event.order.id, { reason: 'support call' }, opsKey);
    expect(asOps.status).toBe(403);
    expect(asOps.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await issue(event.order.id, { reason: 'support call' }, null)).status).toBe(401);
    expect(await linksOf(event.order.id)).toEqual([]);
    expect(await auditOf(`order:${event.order.id}`)).toEqual([]);
  });

  it('asks for a reason', async () => {
    const event = await unpaidOrder();
    for (const body of [{}, { reason: '   ' }, { reason: 7 }]) {
      const answer = await issue(event.order.id, body);
      expect(answer.status).toBe(400);
      expect(await answer.json()).toMatchObject({ errors: [{ path: 'reason' }] });
    }
    expect(await linksOf(event.order.id)).toEqual([]);
  });

  it('refuses with 409 for a paid order and for one whose recovery ops stopped; 404 for an unknown order', async () => {
    const paid = await unpaidOrder();
    expect((await svc.post(makeEvent({ type: 'payment.succeeded' }, paid.order))).status).toBe(202);
    const refused = await issue(paid.order.id, { reason: 'support call' });
    expect(refused.status).toBe(409);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await refused.json()).toMatchObject({ status: 409, detail: expect.stringMatching(/paid/) as unknown });

    const stopped = await unpaidOrder();
    await stopRecovery(svc.database.db, stopped.order.id, { actor: 'key:test', at: new Date() });
    const notOpen = await issue(stopped.order.id, { reason: 'support call' });
    expect(notOpen.status).toBe(409);
    expect(await notOpen.json()).toMatchObject({ detail: expect.stringMatching(/stopped/) as unknown });

    expect((await issue('no-such-order', { reason: 'support call' })).status).toBe(404);
    for (const orderId of [paid.order.id, stopped.order.id]) {
      expect(await linksOf(orderId)).toEqual([]);
      expect((await auditOf(`order:${orderId}`)).filter((a) => a.action === 'retry_link.issued')).toEqual([]);
    }
  });
});
