import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { makeEvent, startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';

// The first reminder goes out a second after the failure; the second one never comes in a test.
const fastCadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: email, template: alternative-methods }
`;

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

describe('/readyz, /metrics and /admin/queues', () => {
  let svc: TestService;
  let opsKey: string;
  let financeKey: string;
  beforeAll(async () => {
    svc = await startTestService({ cadences: fastCadence });
    const ctx = { actor: 'test', at: new Date() };
    opsKey = (await createApiKey(svc.database.db, { name: 'ops', scopes: ['ops'] }, ctx)).key;
    financeKey = (await createApiKey(svc.database.db, { name: 'finance', scopes: ['finance'] }, ctx)).key;
  });
  afterAll(async () => {
    await svc.close();
  });

  it('/readyz answers 200 ready with every check ok, without credentials', async () => {
    const response = await fetch(`${svc.url}/readyz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      status: 'ready',
      checks: { postgres: 'ok', redis: 'ok', migrations: 'ok' },
    });
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
  });

  it('/metrics needs the ops scope: 401 without a key, 403 for finance, 200 for ops and admin', async () => {
    const anonymous = await fetch(`${svc.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect((await fetch(`${svc.url}/metrics`, { headers: auth(financeKey) })).status).toBe(403);
    expect((await fetch(`${svc.url}/metrics`, { headers: auth('rk_not-a-key') })).status).toBe(401);

    const ops = await fetch(`${svc.url}/metrics`, { headers: auth(opsKey) });
    expect(ops.status).toBe(200);
    expect(ops.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await ops.text()).toMatch(/^process_cpu_user_seconds_total /m);
    expect((await fetch(`${svc.url}/metrics`, { headers: auth(testApiKey) })).status).toBe(200);
  });

  it('reports queue, message, lateness, provider, circuit, recovered-money and stuck-order metrics', async () => {
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(
      async () => ((await svc.getOrder(failed.order.id)).messages[0]?.status === 'sent' ? true : undefined),
      { what: 'the first reminder to be sent' },
    );
    const paid = makeEvent({ type: 'payment.succeeded', payment: { gateway: 'stripe', method: 'card' } });
    paid.order = failed.order;
    expect((await svc.post(paid)).status).toBe(202);

    const old = new Date(Date.now() - 3 * 3_600_000);
    const db = svc.database.db;
    await db.execute(sql`insert into customers (id, updated_at) values ('cus_stuck', ${old})`);
    // A pending order three hours old that never got a recovery (its payment.failed never came).
    await db.execute(
      sql`insert into orders (id, customer_id, amount, currency, status, state_at, created_at, updated_at)
          values ('ord_stuck', 'cus_stuck', 500, 'CNY', 'pending', ${old}, ${old}, ${old})`,
    );
    await db.execute(
      sql`insert into gateway_circuits (gateway, state, reason, opened_at, updated_at)
          values ('acme', 'open', 'test', now(), now()), ('acme-two', 'closed', null, null, now())`,
    );

    // State gauges are cached for a few seconds between scrapes: poll until they show the writes.
    const text = await waitFor(
      async () => {
        const body = await (await fetch(`${svc.url}/metrics`, { headers: auth(opsKey) })).text();
        return body.includes('recoup_stuck_orders 1') && body.includes('gateway="acme"') ? body : undefined;
      },
      { what: 'metrics that include the new state' },
    );

    expect(text).toMatch(/^recoup_metrics_source_up\{source="postgres"\} 1$/m);
    expect(text).toMatch(/^recoup_metrics_source_up\{source="redis"\} 1$/m);
    expect(text).toMatch(/^recoup_messages\{channel="sms",status="sent"\} 1$/m);
    expect(count(text, 'recoup_send_lateness_seconds_count', 'channel="sms"')).toBeGreaterThanOrEqual(1);
    expect(
      count(text, 'recoup_provider_request_duration_seconds_count', 'channel="sms",transport="outbox",outcome="ok"'),
    ).toBeGreaterThanOrEqual(1);
    expect(count(text, 'recoup_step_jobs_total', 'action="sent"')).toBeGreaterThanOrEqual(1);
    for (const state of ['waiting', 'delayed', 'active', 'failed']) {
      expect(text).toMatch(new RegExp(`^recoup_queue_jobs\\{queue="steps",state="${state}"\\} \\d+$`, 'm'));
    }
    expect(text).toMatch(/^recoup_queue_depth\{queue="steps"\} \d+$/m);
    expect(text).toMatch(/^recoup_gateway_circuit_open\{gateway="acme"\} 1$/m);
    expect(text).toMatch(/^recoup_gateway_circuit_open\{gateway="acme-two"\} 0$/m);
    expect(text).toMatch(/^recoup_recovered_amount_minor_total\{currency="CNY",attribution="influenced"\} 12900$/m);
    expect(text).toMatch(/^# TYPE recoup_recovered_amount_minor_total counter$/m);
  });

  it('/admin/queues (bull-board) needs the ops scope and shows the steps queue', async () => {
    const anonymous = await fetch(`${svc.url}/admin/queues`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect((await fetch(`${svc.url}/admin/queues/api/queues`)).status).toBe(401);
    expect((await fetch(`${svc.url}/admin/queues`, { headers: auth(financeKey) })).status).toBe(403);

    const page = await fetch(`${svc.url}/admin/queues`, { headers: auth(opsKey) });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self';.*frame-ancestors 'none'/);
    const html = await page.text();
    expect(html).toContain('recoup queues');
    // Nothing from another origin (bull-board's template links Google Fonts).
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);

    const api = await fetch(`${svc.url}/admin/queues/api/queues`, { headers: auth(opsKey) });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
    expect(body.queues.map((q) => [q.name, q.readOnlyMode])).toEqual([['steps', true]]);
  });

  it('/admin/queues and /metrics open with an ops console session, no bearer key', async () => {
    const login = await fetch(`${svc.url}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ key: opsKey }).toString(),
      redirect: 'manual',
    });
    const cookie = login.headers
      .getSetCookie()
      .map((c) => /^recoup_session=[^;]+/.exec(c)?.[0])
      .find((c) => c !== undefined);
    expect(cookie).toBeDefined();
    const page = await fetch(`${svc.url}/admin/queues`, { headers: { cookie: cookie ?? '' } });
    expect(page.status).toBe(200);
    await page.text();
    const metrics = await fetch(`${svc.url}/metrics`, { headers: { cookie: cookie ?? '' } });
    expect(metrics.status).toBe(200);
    await metrics.text();
  });
});

describe('/readyz without migrations', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ roles: { http: true, worker: false } });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('answers 503 naming migrations while one is not applied', async () => {
    // As if this process were deployed ahead of its database: the newest migration is missing.
    await svc.database.db.execute(
      sql`delete from drizzle.__drizzle_migrations where id = (select max(id) from drizzle.__drizzle_migrations)`,
    );
    const response = await fetch(`${svc.url}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      status: 'not_ready',
      checks: { postgres: 'ok', redis: 'ok', migrations: 'failed' },
    });
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
  });
});

/** The value of the first series of `name` whose labels contain `labels`. */
function count(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  if (!line) throw new Error(`no ${name}{${labels}} in:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}
