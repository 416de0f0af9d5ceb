import { sql } from 'drizzle-orm';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { audit } from '../../src/access/audit.js';
import { suppress } from '../../src/compliance/suppressions.js';
import { rows } from '../../src/db/rows.js';
import type { Scope } from '../../src/access/auth.js';
import { StepQueue, stepJobId } from '../../src/queue/queues.js';
import { makeEvent, signIn, startTestService, testApiKey, type TestService } from '../helpers/service.js';
import { testRedisUrl } from '../helpers/redis.js';

// The console pages against a real service (Postgres, Redis, the bundled templates), through
// Fastify's inject: sessions, scopes, CSRF on every form, and what each form changes.

const cadence = `
name: default
description: Console test cadence.
match: { failure_categories: [any], currencies: [any] }
expire_after: 24h
steps:
  - { after: 1h, channel: sms, template: nudge }
  - { after: 3h, channel: email, template: alternative-methods, offer_methods: [alipay, card] }
`;

const html = { accept: 'text/html,application/xhtml+xml' };
const form = { 'content-type': 'application/x-www-form-urlencoded', ...html };

let svc: TestService;
let app: FastifyInstance;
let redis: Redis;
let queue: StepQueue;

beforeAll(async () => {
  // No worker: nothing is sent, so recoveries stay where the tests put them.
  svc = await startTestService({ cadences: cadence, roles: { http: true, worker: false } });
  if (!svc.service.app) throw new Error('no app');
  app = svc.service.app;
  redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  queue = new StepQueue(redis, svc.prefix);
});
afterAll(async () => {
  await queue.close();
  redis.disconnect();
  await svc.close();
});

const sessions = new Map<string, string>();
/** A session cookie for a fresh key with these scopes (one per scope set). */
async function loginAs(scopes: Scope[]): Promise<string> {
  const label = scopes.join('+');
  const known = sessions.get(label);
  if (known) return known;
  const { cookie } = await signIn(svc, scopes);
  sessions.set(label, cookie);
  return cookie;
}

const get = (url: string, cookie?: string) =>
  app.inject({ method: 'GET', url, headers: { ...html, ...(cookie ? { cookie } : {}) } });

const post = (url: string, cookie: string, fields: Record<string, string>) =>
  app.inject({ method: 'POST', url, headers: { ...form, cookie }, payload: new URLSearchParams(fields).toString() });

function csrfIn(response: LightMyRequestResponse): string {
  const token = /name="csrf" value="([^"]+)"/.exec(response.body)?.[1];
  if (!token) throw new Error(`no CSRF token in ${response.statusCode} page`);
  return token;
}

async function csrfOf(cookie: string): Promise<string> {
  return csrfIn(await get('/console/orders', cookie));
}

/** An order with a started recovery (first step in an hour), through the events API. */
async function newOrder(customer: Record<string, unknown> = {}) {
  const event = makeEvent();
  event.order.customer = { ...event.order.customer, ...customer };
  const response = await svc.post(event);
  expect(response.status).toBe(202);
  return { orderId: event.order.id, customerId: event.order.customer.id, event };
}

async function recoveryOf(orderId: string) {
  const [row] = await rows<{
    id: string;
    state: string;
    ended_reason: string | null;
    wake_seq: number;
    step_index: number;
  }>(
    svc.database.db,
    sql`select id, state, ended_reason, wake_seq, step_index from recoveries where order_id = ${orderId}`,
  );
  if (!row) throw new Error(`no recovery for ${orderId}`);
  return row;
}

async function auditActions(subject: string) {
  return (
    await rows<{ action: string }>(
      svc.database.db,
      sql`select action from audit_log where subject = ${subject} order by at, id`,
    )
  ).map((r) => r.action);
}

describe('access', () => {
  const pages = [
    '/console/cadences',
    '/console/cadences/new',
    '/console/cadences/default',
    '/console/cadences/default/versions',
    '/console/orders',
    '/console/suppressions',
    '/console/webhooks',
    '/console/health',
  ];

  it('renders every page for an ops session, with a strict CSP and no caching', async () => {
    const ops = await loginAs(['ops']);
    for (const url of pages) {
      const response = await get(url, ops);
      expect(response.statusCode, url).toBe(200);
      expect(response.headers['content-type']).toContain('text/html');
      expect(response.headers['content-security-policy']).toContain("script-src 'self'");
      expect(response.headers['content-security-policy']).toContain("default-src 'none'");
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.body).toContain('ops person');
      // Everything the page loads comes from recoup.
      for (const src of response.body.matchAll(/(?:src|href)="(https?:[^"]*)"/g)) expect(src[1], url).toBeUndefined();
    }
  });

  it('sends a browser without a session to the login page', async () => {
    for (const url of [...pages, '/console/orders/ord_x']) {
      const response = await get(url);
      expect(response.statusCode, url).toBe(303);
      expect(response.headers.location).toBe(`/console/login?next=${encodeURIComponent(url)}`);
    }
  });

  it('refuses ingest-only keys at the door, and finance everywhere but the (read-only) order pages', async () => {
    const { key } = await createApiKey(
      svc.database.db,
      { name: 'shop', scopes: ['ingest'] },
      { actor: 'test', at: new Date() },
    );
    const ingest = await app.inject({
      method: 'POST',
      url: '/console/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ key }).toString(),
    });
    expect(ingest.statusCode).toBe(401);
    expect(ingest.headers['set-cookie']).toBeUndefined();

    const finance = await loginAs(['finance']);
    for (const url of pages.filter((p) => !p.startsWith('/console/orders'))) {
      const response = await get(url, finance);
      expect(response.statusCode, url).toBe(403);
      expect(response.body).toContain('This needs the ops scope.');
    }
    const { orderId } = await newOrder();
    expect((await get('/console/orders', finance)).statusCode).toBe(200);
    const order = await get(`/console/orders/${orderId}`, finance);
    expect(order.statusCode).toBe(200);
    expect(order.body).toContain('Read-only');
    expect(order.body).not.toContain('id="stop-recovery"');

    const stop = await post(`/console/orders/${orderId}/stop`, finance, { csrf: csrfIn(order) });
    expect(stop.statusCode).toBe(403);
    expect((await recoveryOf(orderId)).state).toBe('active');
  });

  it('requires the session’s CSRF token on every form', async () => {
    const ops = await loginAs(['ops']);
    const other = await loginAs(['admin']);
    const foreignToken = await csrfOf(other);
    const { orderId } = await newOrder();
    await suppress(svc.database.db, { channel: 'sms', address: '+15550001111', reason: 'stop_reply', at: new Date() });
    const ref = /name="ref" value="([0-9a-f]{64})"/.exec((await get('/console/suppressions', ops)).body)?.[1] ?? '';
    expect(ref).not.toBe('');

    const forms: Array<[string, Record<string, string>]> = [
      ['/console/cadences/new', { yaml: cadence.replace('name: default', 'name: csrf-probe'), intent: 'save' }],
      ['/console/cadences/default', { yaml: cadence.replace('1h', '2h'), intent: 'activate' }],
      ['/console/cadences/default/versions/1/activate', {}],
      [`/console/orders/${orderId}/stop`, {}],
      [`/console/orders/${orderId}/restart`, {}],
      ['/console/suppressions/remove', { ref }],
    ];
    for (const [url, fields] of forms) {
      for (const csrf of [undefined, 'forged', foreignToken]) {
        const response = await post(url, ops, csrf === undefined ? fields : { ...fields, csrf });
        expect(response.statusCode, `${url} csrf=${String(csrf)}`).toBe(403);
        expect(response.body).toContain('did not come from the console');
      }
    }
    // Nothing happened.
    expect((await recoveryOf(orderId)).state).toBe('active');
    const [versions] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from cadences`);
    const { body } = await get('/console/cadences', ops);
    expect(body).not.toContain('csrf-probe');
    expect(versions?.n).toBeGreaterThan(0);
    expect((await get('/console/suppressions?q=%2B15550001111', ops)).body).toContain('+15*****1111');
  });
});

describe('cadence editor', () => {
  it('lists cadences with their active version, steps and match', async () => {
    const ops = await loginAs(['ops']);
    const { body } = await get('/console/cadences', ops);
    expect(body).toContain('data-cadence="default"');
    expect(body).toMatch(/data-active-version="\d+"/);
    expect(body).toContain('1h SMS nudge → 3h email alternative-methods');
    expect(body).toContain('any category · any currency');
  });

  it('shows errors with path and line beside the text, saves a valid edit unactivated, then activates it', async () => {
    const ops = await loginAs(['ops']);
    const editor = await get('/console/cadences/default', ops);
    const csrf = csrfIn(editor);
    const activeBefore = Number(/data-active-version="(\d+)"/.exec((await get('/console/cadences', ops)).body)?.[1]);

    const broken = cadence.replace('expire_after: 24h', 'expire_after: 2h');
    const invalid = await post('/console/cadences/default', ops, {
      csrf,
      yaml: broken,
      intent: 'save',
      tz: 'Europe/London',
    });
    expect(invalid.statusCode).toBe(422);
    expect(invalid.body).toContain('class="issue"');
    expect(invalid.body).toContain('steps[1].after');
    expect(invalid.body).toMatch(/line 8<\/span>/);
    expect(invalid.body).toContain('must be earlier than expire_after');
    expect(invalid.body).toContain('aria-invalid="true"');
    // The text comes back as typed, and the sample stays chosen.
    expect(invalid.body).toContain('expire_after: 2h');
    expect(invalid.body).toContain('<option value="Europe/London" selected>');

    const renamed = await post('/console/cadences/default', ops, {
      csrf,
      yaml: cadence.replace('name: default', 'name: other'),
      intent: 'save',
    });
    expect(renamed.statusCode).toBe(422);
    expect(renamed.body).toContain('must stay &quot;default&quot;');

    const fixed = cadence.replace('after: 3h', 'after: 2h');
    const saved = await post('/console/cadences/default', ops, {
      csrf,
      yaml: fixed,
      intent: 'save',
      tz: 'America/New_York',
      locale: 'en',
    });
    expect(saved.statusCode).toBe(303);
    const location = String(saved.headers.location);
    const version = Number(new URL(location, 'http://x').searchParams.get('version'));
    expect(version).toBe(activeBefore + 1);
    expect(location).toContain('saved=created');

    const shown = await get(location, ops);
    expect(shown.statusCode).toBe(200);
    expect(shown.body).toContain(`Saved as version ${version}. It is not active`);
    expect(shown.body).toContain('class="timeline preview-steps"');
    expect(shown.body).toContain('America/New_York');
    expect(shown.body).toMatch(/SMS × \d/);
    expect(shown.body).not.toContain('zh-CN ·'); // locale en only
    expect((await get('/console/cadences', ops)).body).toContain(`data-active-version="${activeBefore}"`);

    const activated = await post('/console/cadences/default', ops, { csrf, yaml: fixed, intent: 'activate' });
    expect(activated.statusCode).toBe(303);
    expect(String(activated.headers.location)).toContain('saved=unchanged-activated');
    expect((await get('/console/cadences', ops)).body).toContain(`data-active-version="${version}"`);
    expect(await auditActions('cadence:default')).toEqual(
      expect.arrayContaining(['cadence.saved', 'cadence.activated']),
    );
  });

  it('previews without saving, and creates new cadences only under new names', async () => {
    const ops = await loginAs(['ops']);
    const csrf = csrfIn(await get('/console/cadences/new', ops));
    const text = cadence
      .replace('name: default', 'name: weekend')
      .replace('description: Console test cadence.', 'description: Weekend.');
    const checked = await post('/console/cadences/new', ops, { csrf, yaml: text, intent: 'check', locale: 'zh-CN' });
    expect(checked.statusCode).toBe(200);
    expect(checked.body).toContain('Nothing is saved yet');
    expect(checked.body).toContain('The text in the editor (not saved)');
    expect((await get('/console/cadences/weekend', ops)).statusCode).toBe(404);

    const created = await post('/console/cadences/new', ops, { csrf, yaml: text, intent: 'save' });
    expect(created.statusCode).toBe(303);
    expect(String(created.headers.location)).toMatch(/^\/console\/cadences\/weekend\?version=1&saved=created/);

    const again = await post('/console/cadences/new', ops, { csrf, yaml: text, intent: 'save' });
    expect(again.statusCode).toBe(422);
    expect(again.body).toContain('exists already');
  });

  it('shows the history with escaped diffs and activates an older version', async () => {
    const ops = await loginAs(['ops']);
    const csrf = csrfIn(await get('/console/cadences/default', ops));
    const tricky = cadence.replace('Console test cadence.', '"<b>bold</b> & more"');
    expect((await post('/console/cadences/default', ops, { csrf, yaml: tricky, intent: 'save' })).statusCode).toBe(303);

    const history = await get('/console/cadences/default/versions', ops);
    expect(history.statusCode).toBe(200);
    expect(history.body).toContain('<span class="d-del">-description: Console test cadence.</span>');
    expect(history.body).toContain(
      '<span class="d-add">+description: &quot;&lt;b&gt;bold&lt;/b&gt; &amp; more&quot;</span>',
    );
    expect(history.body).not.toContain('<b>bold</b>');

    const activate = await post('/console/cadences/default/versions/1/activate', ops, { csrf });
    expect(activate.statusCode).toBe(303);
    expect(activate.headers.location).toBe('/console/cadences/default/versions?activated=1');
    expect((await get('/console/cadences', ops)).body).toContain('data-active-version="1"');
    const unknown = await post('/console/cadences/default/versions/99/activate', ops, { csrf });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toContain('text/html');
  });
});

describe('orders', () => {
  it('finds orders by id, customer id, exact email or phone, with addresses masked', async () => {
    const ops = await loginAs(['ops']);
    const { orderId, customerId } = await newOrder({ email: 'Mei.Han@Example.com', phone: '+8613911112222' });
    for (const q of [orderId, customerId, 'mei.han@example.com', '+86 139 1111 2222']) {
      const { body } = await get(`/console/orders?q=${encodeURIComponent(q)}`, ops);
      expect(body, q).toContain(`href="/console/orders/${orderId}"`);
      // Emails are stored lower-cased: the shop's `Mei.Han@Example.com` is kept as `mei.han@example.com`.
      expect(body).toContain('m***@example.com');
      expect(body).toContain('+86*******2222');
      expect(body).not.toContain('13911112222');
      // Unmasked only where the person typed it, in the search box.
      if (q !== 'mei.han@example.com') expect(body).not.toContain('mei.han@');
    }
    const partial = await get('/console/orders?q=mei.han', ops);
    expect(partial.body).not.toContain(orderId);
  });

  it('tells the order’s story in time order', async () => {
    const ops = await loginAs(['ops']);
    const { orderId } = await newOrder();
    const { body, statusCode } = await get(`/console/orders/${orderId}`, ops);
    expect(statusCode).toBe(200);
    expect(body).toContain('Shop event payment.failed');
    expect(body).toContain('recovery_started');
    expect(body).toMatch(/Recovery started on default v\d+/);
    expect(body).toContain('id="stop-recovery"');
    expect(body).not.toContain('li@example.com');
    expect(body).not.toContain('/r/'); // retry links are capabilities: never on the page
    expect((await get('/console/orders/ord_missing', ops)).statusCode).toBe(404);
  });

  it('lists the shop’s failed attempt before the recovery it starts, also within one millisecond', async () => {
    const ops = await loginAs(['ops']);
    const { orderId } = await newOrder();
    // The event, its attempt and the recovery it started, all at the same instant.
    await svc.database.db.execute(
      sql`update events set occurred_at = r.started_at from recoveries r
          where r.order_id = ${orderId} and events.order_id = ${orderId}`,
    );
    await svc.database.db.execute(
      sql`update payment_attempts set occurred_at = r.started_at from recoveries r
          where r.order_id = ${orderId} and payment_attempts.order_id = ${orderId}`,
    );
    const { body } = await get(`/console/orders/${orderId}`, ops);
    const kinds = [...body.matchAll(/data-kind="([a-z]+)"/g)].map((m) => m[1]);
    expect(kinds.slice(0, 3)).toEqual(['event', 'attempt', 'recovery']);
  });

  it('stops and restarts a recovery, revoking links, queueing a fresh wake-up and auditing both', async () => {
    const ops = await loginAs(['ops']);
    const { orderId } = await newOrder();
    const page = await get(`/console/orders/${orderId}`, ops);
    const csrf = csrfIn(page);
    const before = await recoveryOf(orderId);

    const stop = await post(`/console/orders/${orderId}/stop`, ops, { csrf });
    expect(stop.statusCode).toBe(303);
    expect(stop.headers.location).toBe(`/console/orders/${orderId}?done=stopped`);
    const stopped = await recoveryOf(orderId);
    expect(stopped).toMatchObject({ state: 'stopped', ended_reason: 'stopped_by_ops' });
    const after = await get(String(stop.headers.location), ops);
    expect(after.body).toContain('Recovery stopped');
    expect(after.body).toContain('id="restart-recovery"');
    expect(after.body).toContain('recovery.stopped by ops person');

    const twice = await post(`/console/orders/${orderId}/stop`, ops, { csrf });
    expect(twice.statusCode).toBe(409);
    expect(twice.body).toContain('not active');

    const restart = await post(`/console/orders/${orderId}/restart`, ops, { csrf });
    expect(restart.statusCode).toBe(303);
    const active = await recoveryOf(orderId);
    expect(active).toMatchObject({ state: 'active', ended_reason: null, step_index: before.step_index });
    expect(active.wake_seq).toBeGreaterThan(stopped.wake_seq);
    const job = await queue.queue.getJob(stepJobId(active.id, active.wake_seq));
    expect(job?.data).toEqual({ recoveryId: active.id, wakeSeq: active.wake_seq });
    expect(await auditActions(`order:${orderId}`)).toEqual(['recovery.stopped', 'recovery.restarted']);
  });

  it('names the configured key in the frame and the audit trail, and tells changed addresses apart', async () => {
    const login = await app.inject({
      method: 'POST',
      url: '/console/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ key: testApiKey }).toString(),
    });
    const cookie = /^recoup_session=[^;]+/.exec(String(login.headers['set-cookie']))?.[0] ?? '';
    expect(cookie).not.toBe('');
    const { orderId, customerId } = await newOrder({ email: 'john.smith@example.com', phone: '+8613800138000' });
    const csrf = csrfIn(await get(`/console/orders/${orderId}`, cookie));
    expect((await post(`/console/orders/${orderId}/stop`, cookie, { csrf })).statusCode).toBe(303);
    // The customer corrected both addresses on the retry page; each differs only in the middle.
    await audit(svc.database.db, {
      actor: `customer:${customerId}`,
      action: 'contact.confirmed',
      subject: `customer:${customerId}`,
      before: { email: 'john.smith@example.com', phone: '+8613800138000' },
      after: { email: 'john.smyth@example.com', phone: '+8613811138000' },
      at: new Date(),
    });

    const { body } = await get(`/console/orders/${orderId}`, cookie);
    expect(body).toContain('recovery.stopped by configured key 1 (RECOUP_API_KEYS)');
    expect(body).toMatch(/<span title="scopes: ingest, admin">configured key 1 \(RECOUP_API_KEYS\)<\/span>/);
    expect(body).not.toContain('RECOUP_API_KEYS[0]');
    const unescape = (text: string) => text.replace(/&quot;/g, '"').replace(/&#x3D;/g, '=');
    const [, before = '', after = ''] =
      /<dt>before<\/dt><dd>([^<]*email[^<]*)<\/dd><\/div><div><dt>after<\/dt><dd>([^<]*)<\/dd>/.exec(body) ?? [];
    const was = JSON.parse(unescape(before)) as { email: string; phone: string };
    const now = JSON.parse(unescape(after)) as { email: string; phone: string };
    expect(was.email).toMatch(/^j\*\*\*@example\.com #[0-9a-f]{6}$/);
    expect(now.email).not.toBe(was.email);
    expect(now.phone).not.toBe(was.phone);
    expect(body).not.toMatch(/smith|smyth|13800138000|13811138000/);
  });

  it('does not restart the recovery of a paid order', async () => {
    const ops = await loginAs(['ops']);
    const { orderId } = await newOrder();
    const csrf = csrfIn(await get(`/console/orders/${orderId}`, ops));
    expect((await post(`/console/orders/${orderId}/stop`, ops, { csrf })).statusCode).toBe(303);
    await svc.database.db.execute(sql`update orders set status = 'paid' where id = ${orderId}`);
    const page = await get(`/console/orders/${orderId}`, ops);
    expect(page.body).not.toContain('id="restart-recovery"');
    const restart = await post(`/console/orders/${orderId}/restart`, ops, { csrf });
    expect(restart.statusCode).toBe(409);
    expect(restart.body).toContain('the order is paid');
  });
});

describe('suppressions', () => {
  it('lists them masked and opts one back in on the customer’s behalf', async () => {
    const ops = await loginAs(['ops']);
    const phone = '+8613722223333';
    const { customerId } = await newOrder({ phone });
    await suppress(svc.database.db, { channel: 'sms', address: phone, reason: 'stop_reply', at: new Date() });
    const list = await get(`/console/suppressions?q=${encodeURIComponent(phone)}`, ops);
    // Only the search box holds what ops typed; the list shows the address masked.
    const table = /<table[\s\S]*<\/table>/.exec(list.body)?.[0] ?? '';
    expect(table).toContain('+86*******3333');
    expect(table).not.toContain('13722223333');
    const ref = /name="ref" value="([0-9a-f]{64})"/.exec(list.body)?.[1] ?? '';

    const removed = await post('/console/suppressions/remove', ops, { csrf: csrfIn(list), ref });
    expect(removed.statusCode).toBe(303);
    expect(removed.headers.location).toBe('/console/suppressions?removed=sms');
    const left = await rows(svc.database.db, sql`select 1 from suppressions where address = ${phone}`);
    expect(left).toHaveLength(0);
    const consent = await rows<{ action: string; source: string; customer_id: string; address: string }>(
      svc.database.db,
      sql`select action, source, customer_id, address from consent_events where address = ${phone}`,
    );
    expect(consent).toEqual([{ action: 'opt_in', source: 'ops', customer_id: customerId, address: phone }]);
    const [entry] = await rows<{ action: string; before: { address: string } }>(
      svc.database.db,
      sql`select action, before from audit_log where subject = ${`customer:${customerId}`}`,
    );
    expect(entry).toMatchObject({ action: 'suppression.removed', before: { address: '+86*******3333' } });

    const gone = await post('/console/suppressions/remove', ops, { csrf: csrfIn(list), ref });
    expect(gone.statusCode).toBe(404);
  });
});

describe('health', () => {
  it('shows open circuits and stuck orders', async () => {
    const ops = await loginAs(['ops']);
    const created = makeEvent({ type: 'order.created' });
    expect((await svc.post(created)).status).toBe(202);
    const stuckId = created.order.id;
    await svc.database.db.execute(sql`update orders set created_at = now() - interval '3 hours' where id = ${stuckId}`);
    await svc.database.db.execute(
      sql`insert into gateway_circuits (gateway, state, reason, opened_at, updated_at)
          values ('sandbox', 'open', '12 gateway_outage failures in 5m', now(), now())
          on conflict (gateway) do update set state = 'open', reason = excluded.reason`,
    );
    const { body } = await get('/console/health', ops);
    expect(body).toContain('data-gateway="sandbox"');
    expect(body).toContain('12 gateway_outage failures in 5m');
    expect(body).toContain(`href="/console/orders/${stuckId}"`);
    expect(body).toContain('order.created (order_recorded)');
    expect(body).toMatch(/id="stuck-count">1</);
  });
});
