import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEvent, signIn, startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';
import { startShopReceiver, type ShopReceiver } from '../helpers/shop-receiver.js';

// The console's webhook pages against a real service (worker included, so deliveries go out) over
// real HTTP, with a shop endpoint on loopback: the endpoint list, the delivery log with the shop's
// answers, resending, disabling and enabling, and the order page telling what the shop was told.

const cadence = `
name: default
expire_after: 24h
steps:
  - { after: 1h, channel: sms, template: nudge }
`;

let svc: TestService;
let receiver: ShopReceiver;
let ops: string;
let endpoint: { id: string; secret: string };

beforeAll(async () => {
  receiver = await startShopReceiver();
  svc = await startTestService({
    cadences: cadence,
    env: {
      WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_POLL_INTERVAL: '50ms',
      // One retry: a delivery the shop keeps refusing is given up after its second attempt.
      WEBHOOK_RETRY_SCHEDULE: '200ms',
    },
  });
  ops = (await signIn(svc, ['ops'])).cookie;
  const created = await api('POST', '/v1/webhook-endpoints', { url: receiver.url, description: 'Shop backend' });
  expect(created.status).toBe(201);
  endpoint = created.body as { id: string; secret: string };
  receiver.secrets = [endpoint.secret];
});
afterAll(async () => {
  await svc.close();
  await receiver.close();
});

async function api(method: string, path: string, body?: unknown) {
  const response = await fetch(`${svc.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${testApiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

interface Page {
  status: number;
  location: string | null;
  body: string;
}

async function read(response: Response): Promise<Page> {
  return { status: response.status, location: response.headers.get('location'), body: await response.text() };
}

/** A console page as a browser asks for it. */
async function get(path: string, cookie: string | null = ops): Promise<Page> {
  return read(
    await fetch(`${svc.url}${path}`, {
      headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) },
      redirect: 'manual',
    }),
  );
}

/** A console form, posted as a browser does (no redirect followed). */
async function submit(path: string, fields: Record<string, string>, cookie = ops): Promise<Page> {
  return read(
    await fetch(`${svc.url}${path}`, {
      method: 'POST',
      headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    }),
  );
}

function csrfIn(page: Page): string {
  const token = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
  if (!token) throw new Error(`no CSRF token in the ${page.status} page`);
  return token;
}

/** The delivery log's row for an order's delivery: its webhook-id, status and cells. */
function deliveryRowOf(body: string, orderId: string) {
  for (const match of body.matchAll(/<tr data-delivery="([^"]+)" data-status="([a-z]+)">([\s\S]*?)<\/tr>/g)) {
    const [, id, status, cells] = match;
    if (cells?.includes(`href="/console/orders/${orderId}"`)) {
      return {
        id: id!,
        status: status!,
        cells: cells,
        attempts: Number(/data-attempts>(\d+)</.exec(cells)?.[1]),
        excerpt: /data-excerpt>([^<]*)</.exec(cells)?.[1],
      };
    }
  }
  return undefined;
}

/** The list page's row of an endpoint: its state and cells. */
function endpointRowOf(body: string, id: string) {
  const match = new RegExp(`<tr class="([^"]*)" data-endpoint="${id}" data-state="([a-z-]+)">([\\s\\S]*?)</tr>`).exec(
    body,
  );
  return match ? { className: match[1]!, state: match[2]!, cells: match[3]! } : undefined;
}

const endpointPage = () => get(`/console/webhooks/${endpoint.id}`);
const receivedFor = (orderId: string) => receiver.received.filter((r) => r.verified?.data.order_id === orderId);

describe('the console’s webhook pages', () => {
  let orderId: string;
  let deliveryId: string;

  it('lists every endpoint with its URL, description, events and state, never its secret', async () => {
    const list = await get('/console/webhooks');
    expect(list.status).toBe(200);
    expect(list.body).toContain('<a href="/console/webhooks" aria-current="page">Webhooks</a>');
    const row = endpointRowOf(list.body, endpoint.id);
    expect(row).toMatchObject({ state: 'enabled', className: 'row-ok' });
    expect(row!.cells).toContain(`href="/console/webhooks/${endpoint.id}"`);
    expect(row!.cells).toContain(receiver.url);
    expect(row!.cells).toContain('Shop backend');
    expect(row!.cells).toContain('<li class="mono">recovery.started</li>');
    expect(row!.cells).not.toContain('<li class="mono">message.sent</li>');
    for (const page of [list, await endpointPage()]) {
      expect(page.body).not.toContain(endpoint.secret);
      expect(page.body).not.toContain('whsec_');
    }
    // Every ops page offers it.
    expect((await get('/console/orders')).body).toContain('<a href="/console/webhooks">Webhooks</a>');
  });

  it('shows a delivery the shop refused, with its answers, and the endpoint failing since then', async () => {
    receiver.answer = () => 503;
    const event = makeEvent();
    orderId = event.order.id;
    expect((await svc.post(event)).status).toBe(202);

    const row = await waitFor(
      async () => {
        const found = deliveryRowOf((await endpointPage()).body, orderId);
        return found?.status === 'failed' ? found : undefined;
      },
      { what: 'the delivery to be given up' },
    );
    const received = receivedFor(orderId);
    expect(received.map((r) => [r.verified?.type, r.answered])).toEqual([
      ['recovery.started', 503],
      ['recovery.started', 503],
    ]);
    deliveryId = received[0]!.id;
    expect(received[1]!.id).toBe(deliveryId);
    expect(row.id).toBe(deliveryId);
    expect(row.attempts).toBe(2);
    expect(row.excerpt).toBe('not now');
    expect(row.cells).toContain('<span class="mono">recovery.started</span>');
    expect(row.cells).toContain('<span class="badge bad">HTTP 503</span>');
    expect(row.cells).toMatch(/\d+(\.\d+)? ms/);
    expect(row.cells).toContain('1 earlier');
    expect(row.cells).toContain(`data-resend="${deliveryId}"`);

    const page = await endpointPage();
    expect(page.body).toContain('id="endpoint-state" data-state="failing"');
    expect(page.body).toMatch(/failing since <time datetime="[^"]+">/);
    const listed = endpointRowOf((await get('/console/webhooks')).body, endpoint.id);
    expect(listed).toMatchObject({ state: 'failing', className: 'row-bad' });
    expect(listed!.cells).toMatch(/failing since <time datetime="[^"]+">[^<]+ UTC<\/time>/);

    const status = await get(`/console/webhooks/${endpoint.id}?status=failed`);
    expect(deliveryRowOf(status.body, orderId)?.id).toBe(deliveryId);
    expect(deliveryRowOf((await get(`/console/webhooks/${endpoint.id}?status=delivered`)).body, orderId)).toBe(
      undefined,
    );
  });

  it('tells on the order page what the shop was told, and how its delivery went', async () => {
    const order = await get(`/console/orders/${orderId}`);
    expect(order.status).toBe(200);
    const entry = /<li class="entry kind-webhook tone-bad" data-kind="webhook">([\s\S]*?)<\/li>/.exec(order.body)?.[1];
    expect(entry).toBeDefined();
    expect(entry).toContain('Told the shop recovery.started #1');
    expect(entry).toContain('<dt>sequence</dt><dd>1</dd>');
    expect(entry).toContain(
      `<dt>${receiver.url}</dt><dd><a href="/console/webhooks/${endpoint.id}">failed after 2 attempts (last: HTTP 503)</a></dd>`,
    );
    expect(entry).toContain('not delivered');
    // Told after the change it tells of, though stamped with the start of the transaction that made both.
    const kinds = [...order.body.matchAll(/data-kind="([a-z]+)"/g)].map((m) => m[1]);
    expect(kinds.indexOf('webhook')).toBeGreaterThan(kinds.indexOf('recovery'));

    // Finance reads the order, not the webhook pages: the same words, no link.
    const finance = (await signIn(svc, ['finance'])).cookie;
    const read = await get(`/console/orders/${orderId}`, finance);
    expect(read.body).toContain('failed after 2 attempts (last: HTTP 503)');
    expect(read.body).not.toContain('href="/console/webhooks/');
    expect(read.body).not.toContain('>Webhooks</a>');
  });

  it('resends a delivery under the same webhook-id, only from a console form', async () => {
    const page = await endpointPage();
    const action = `/console/webhooks/${endpoint.id}/deliveries/${deliveryId}/resend`;
    expect(page.body).toContain(`action="${action}"`);
    receiver.answer = () => 200;

    for (const fields of [{}, { csrf: 'forged' }] as Array<Record<string, string>>) {
      const refused = await submit(action, fields);
      expect(refused.status).toBe(403);
      expect(refused.body).toContain('did not come from the console');
    }
    const unknown = await submit(`/console/webhooks/${endpoint.id}/deliveries/msg_nope/resend`, {
      csrf: csrfIn(page),
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('No delivery msg_nope');

    const resent = await submit(action, { csrf: csrfIn(page) });
    expect(resent.status).toBe(303);
    expect(resent.location).toBe(`/console/webhooks/${endpoint.id}?done=resent&delivery=${deliveryId}`);
    expect((await get(resent.location!)).body).toContain(
      `Resending delivery ${deliveryId} now, under the same webhook-id.`,
    );

    const again = await waitFor(() => receivedFor(orderId).find((r) => r.answered === 200), { what: 'the resend' });
    expect(again.id).toBe(deliveryId);
    expect(again.body).toBe(receivedFor(orderId)[0]!.body);
    // The forged forms sent nothing.
    expect(receivedFor(orderId)).toHaveLength(3);

    const row = await waitFor(
      async () => {
        const found = deliveryRowOf((await endpointPage()).body, orderId);
        return found?.status === 'delivered' ? found : undefined;
      },
      { what: 'the delivery log to show it delivered' },
    );
    expect(row.attempts).toBe(3);
    expect(row.excerpt).toBe('ok');
    expect(row.cells).toContain('<span class="badge ok">HTTP 200</span>');
    expect(row.cells).toContain('2 earlier');
    // Delivered again: no longer failing.
    expect(endpointRowOf((await get('/console/webhooks')).body, endpoint.id)?.state).toBe('enabled');
    expect((await get(`/console/orders/${orderId}`)).body).toContain('delivered after 3 attempts');
  });

  it('disables the endpoint, holds a resend while disabled and sends it once enabled', async () => {
    const page = await endpointPage();
    expect(page.body).toContain(`action="/console/webhooks/${endpoint.id}/disable"`);
    expect((await submit(`/console/webhooks/${endpoint.id}/disable`, {})).status).toBe(403);

    const disabled = await submit(`/console/webhooks/${endpoint.id}/disable`, { csrf: csrfIn(page) });
    expect(disabled.status).toBe(303);
    const after = await get(disabled.location!);
    expect(after.body).toContain('Disabled: nothing more is delivered to this endpoint until it is enabled.');
    expect(after.body).toContain('id="endpoint-state" data-state="disabled-ops">disabled by ops</span>');
    expect(after.body).toContain('id="enable-endpoint"');
    expect(after.body).not.toContain('id="disable-endpoint"');
    expect(endpointRowOf((await get('/console/webhooks')).body, endpoint.id)).toMatchObject({
      state: 'disabled-ops',
      className: 'row-warn',
    });
    expect((await api('GET', `/v1/webhook-endpoints/${endpoint.id}`)).body).toMatchObject({
      enabled: false,
      disabled_reason: 'ops',
    });

    // A resend waits for the endpoint.
    const resent = await submit(`/console/webhooks/${endpoint.id}/deliveries/${deliveryId}/resend`, {
      csrf: csrfIn(after),
    });
    expect(resent.location).toBe(`/console/webhooks/${endpoint.id}?done=resent-disabled&delivery=${deliveryId}`);
    expect((await get(resent.location!)).body).toContain('this endpoint is disabled: it goes out once');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receivedFor(orderId)).toHaveLength(3);

    // An event while disabled is numbered for the feed, but not delivered to it.
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const told = await waitFor(
      async () => {
        const { body } = await get(`/console/orders/${event.order.id}`);
        return body.includes('In the shop feed: recovery.started #1') ? body : undefined;
      },
      { what: 'the event to be numbered' },
    );
    expect(told).toContain('none: no endpoint took this event');

    const enabled = await submit(`/console/webhooks/${endpoint.id}/enable`, { csrf: csrfIn(after) });
    expect(enabled.status).toBe(303);
    expect(enabled.location).toBe(`/console/webhooks/${endpoint.id}?done=enabled&woken=1`);
    const back = await get(enabled.location!);
    expect(back.body).toContain('Enabled: 1 pending delivery goes out now.');
    expect(back.body).toContain('id="endpoint-state" data-state="enabled"');
    await waitFor(() => (receivedFor(orderId).length === 4 ? true : undefined), { what: 'the held resend' });
    expect(receivedFor(orderId).map((r) => r.id)).toEqual([deliveryId, deliveryId, deliveryId, deliveryId]);
    expect(receivedFor(event.order.id)).toEqual([]);
    expect((await api('GET', `/v1/webhook-endpoints/${endpoint.id}`)).body).toMatchObject({ enabled: true });
  });

  it('highlights an endpoint disabled for failing, with when it started failing', async () => {
    const created = await api('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/refunds`,
      events: ['refund.succeeded'],
    });
    const id = String(created.body.id);
    await svc.database.db.execute(
      sql`update webhook_endpoints set enabled = false, disabled_reason = 'failing',
            failing_since = timestamptz '2026-11-02 08:15:00+00' where id = ${id}`,
    );
    const row = endpointRowOf((await get('/console/webhooks')).body, id);
    expect(row).toMatchObject({ state: 'disabled-failing', className: 'row-bad' });
    expect(row!.cells).toContain('disabled: failing');
    expect(row!.cells).toContain(
      'failing since <time datetime="2026-11-02T08:15:00.000Z">2026-11-02 08:15:00 UTC</time>',
    );
    expect(row!.cells).toContain('<span class="muted">—</span>'); // no description
    const page = await get(`/console/webhooks/${id}`);
    expect(page.body).toContain('Disabled automatically');
    expect(page.body).toContain('id="enable-endpoint"');
    expect(page.body).toContain('No deliveries.');
  });

  it('is for ops only, and answers unknown endpoints with a page', async () => {
    const finance = (await signIn(svc, ['finance'])).cookie;
    for (const path of ['/console/webhooks', `/console/webhooks/${endpoint.id}`]) {
      const refused = await get(path, finance);
      expect(refused.status, path).toBe(403);
      expect(refused.body).toContain('This needs the ops scope.');
      const signedOut = await get(path, null);
      expect(signedOut.status, path).toBe(303);
      expect(signedOut.location).toBe(`/console/login?next=${encodeURIComponent(path)}`);
    }
    const page = await get('/console/orders', finance);
    const disable = await submit(`/console/webhooks/${endpoint.id}/disable`, { csrf: csrfIn(page) }, finance);
    expect(disable.status).toBe(403);
    expect((await api('GET', `/v1/webhook-endpoints/${endpoint.id}`)).body).toMatchObject({ enabled: true });

    const missing = await get('/console/webhooks/ep_nope');
    expect(missing.status).toBe(404);
    expect(missing.body).toContain('No webhook endpoint ep_nope');
  });
});
