import { createHmac } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  ConnectorMapping,
  ConnectorRequest,
  EventForShop,
  ShopConnector,
  WriteBackResult,
} from '../../src/connectors/shop-connector.js';
import { createWoocommerceConnector } from '../../src/connectors/woocommerce/woocommerce-connector.js';
import { rows } from '../../src/db/rows.js';
import { RecoupError } from '../../src/platform/errors.js';
import { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import {
  freePort,
  makeEvent,
  signIn,
  startTestService,
  testApiKey,
  waitFor,
  type TestService,
} from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
switch_channel_on_failure: false
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: sms, template: last-call }
`;
const secret = 'testshop-secret';

/**
 * A platform as small as the port allows: its body is recoup's own event under `event`, signed
 * with an HMAC header; `reject` and `forget` bodies map to those outcomes. Its write-back
 * records what it is told and fails as often as asked.
 */
class TestShop implements ShopConnector {
  readonly platform = 'testshop';
  readonly told: EventForShop[] = [];
  failNext = 0;
  readonly writeBack = {
    events: ['payment.succeeded', 'refund.succeeded'] as const,
    apply: async (event: EventForShop): Promise<WriteBackResult> => {
      this.told.push(event);
      if (this.failNext > 0) {
        this.failNext -= 1;
        return { kind: 'failed', status: 503, detail: 'the shop is down' };
      }
      if (event.data.collected_by === 'shop') return { kind: 'skipped', reason: 'the shop took this payment' };
      return { kind: 'done', status: 200, detail: `marked ${String(event.data.order_id)} paid` };
    },
  };
  verify(request: ConnectorRequest): void {
    if (request.headers['x-test-signature'] !== sign(request.rawBody))
      throw new RecoupError('unauthorized', 'bad signature');
  }
  describe(request: ConnectorRequest) {
    return { deliveryId: String(request.headers['x-test-delivery'] ?? ''), topic: 'order' };
  }
  async map(request: ConnectorRequest): Promise<ConnectorMapping> {
    const body = JSON.parse(request.rawBody.toString('utf8')) as Record<string, unknown>;
    if (body.reject) return { kind: 'rejected', reason: String(body.reject) };
    if (body.forget) return { kind: 'forget', customerIds: [String(body.forget)] };
    return { kind: 'events', events: [body.event as never] };
  }
}

function sign(body: Buffer | string): string {
  return createHmac('sha256', secret).update(body).digest('base64');
}

describe('a shop platform connector', () => {
  let svc: TestService;
  const shop = new TestShop();
  beforeAll(async () => {
    // The sandbox gateway posts its payment webhooks to PUBLIC_URL: this service, here.
    const port = await freePort();
    svc = await startTestService({
      cadences: cadence,
      env: {
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        WEBHOOK_POLL_INTERVAL: '50ms',
        WEBHOOK_RETRY_SCHEDULE: '300ms,300ms,300ms',
      },
      // WooCommerce without its API keys: nothing holds its orders, which the console warns of.
      overrides: {
        connectors: [shop, createWoocommerceConnector({ webhookSecret: 'woo', linkMode: 'recoup', api: undefined })],
      },
    });
  });
  afterAll(async () => svc?.close());

  function deliver(body: unknown, { delivery = 'd1', signature }: { delivery?: string; signature?: string } = {}) {
    const raw = JSON.stringify(body);
    return fetch(`${svc.url}/webhooks/shops/testshop`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-test-delivery': delivery,
        'x-test-signature': signature ?? sign(raw),
      },
      body: raw,
    });
  }

  it('refuses a forged delivery, and a platform with no connector', async () => {
    const forged = await deliver({ event: makeEvent() }, { signature: sign('something else') });
    expect(forged.status).toBe(401);
    const unknown = await fetch(`${svc.url}/webhooks/shops/magento`, { method: 'POST', body: '{}' });
    expect(unknown.status).toBe(404);
  });

  it("takes the platform's events as its own: the order is the platform's, with its cart, and a redelivery changes nothing", async () => {
    const event = makeEvent(
      {},
      {
        items: [
          {
            name: 'Longjing tea',
            quantity: 2,
            amount: 12_000,
            sku: 'LJ-250',
            image_url: 'https://cdn.example-shop.com/lj.png',
          },
        ],
        payment_url: 'https://example-shop.com/checkout/order-pay/1',
      },
    );
    const first = await deliver({ event }, { delivery: 'd-items' });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({
      status: 'accepted',
      events: [{ event_id: event.id, status: 'accepted', outcome: 'recovery_started' }],
    });
    const again = await deliver({ event }, { delivery: 'd-items' });
    expect(await again.json()).toMatchObject({ events: [{ status: 'duplicate' }] });
    const [order] = await rows<{ platform: string; items: unknown; payment_url: string }>(
      svc.database.db,
      sql`select platform, items, payment_url from orders where id = ${event.order.id}`,
    );
    expect(order).toEqual({
      platform: 'testshop',
      items: [
        {
          name: 'Longjing tea',
          quantity: 2,
          amount: 12_000,
          sku: 'LJ-250',
          image_url: 'https://cdn.example-shop.com/lj.png',
        },
      ],
      payment_url: 'https://example-shop.com/checkout/order-pay/1',
    });
  });

  it('answers 200 to what it cannot map, and records why; an event that does not parse writes nothing', async () => {
    const rejected = await deliver({ reject: 'no email or phone' }, { delivery: 'd-rejected' });
    expect(rejected.status).toBe(200);
    expect(await rejected.json()).toEqual({ status: 'rejected', reason: 'no email or phone' });
    const invalid = makeEvent({}, { amount: -5 });
    const refused = await deliver({ event: invalid }, { delivery: 'd-invalid' });
    expect(refused.status).toBe(200);
    expect(await refused.json()).toMatchObject({ status: 'rejected', reason: expect.stringContaining('order.amount') });
    const recorded = await rows<{ id: string; outcome: string; payload: Record<string, unknown> }>(
      svc.database.db,
      sql`select id, outcome, payload from events where id in ('testshop-d-rejected-rejected', 'testshop-d-invalid-rejected') order by id`,
    );
    expect(recorded.map((r) => [r.outcome, r.payload.reason])).toEqual([
      ['rejected', expect.stringContaining('order.amount')],
      ['rejected', 'no email or phone'],
    ]);
    const orders = await rows(svc.database.db, sql`select 1 from orders where id = ${invalid.order.id}`);
    expect(orders).toEqual([]);

    // Ops see them, with the reason, where the webhooks are.
    const { cookie } = await signIn(svc, ['ops']);
    const page = await svc.service.app!.inject({ method: 'GET', url: '/console/webhooks', headers: { cookie } });
    expect(page.statusCode).toBe(200);
    const table = /<table class="list stack" id="rejected-deliveries">[\s\S]*?<\/table>/.exec(page.body)?.[0] ?? '';
    expect(table).toContain('data-delivery="d-rejected"');
    expect(table).toContain('no email or phone');
    expect(table).toContain('testshop · order');
    expect(page.body).toContain('<li data-platform="testshop">');
    expect(page.body).toMatch(
      /<p class="notice notice-warn" data-warning>WooCommerce cancels a pending order nobody paid after its hold-stock time[^<]*default runs longer/,
    );
  });

  it('erases the customers a privacy request names; one recoup never had is nothing to erase', async () => {
    const event = makeEvent();
    expect((await deliver({ event }, { delivery: 'd-known' })).status).toBe(200);
    const known = await deliver({ forget: event.order.customer.id }, { delivery: 'd-forget' });
    expect(await known.json()).toEqual({ status: 'accepted', forgotten: 1 });
    const [customer] = await rows<{ email: string | null }>(
      svc.database.db,
      sql`select email from customers where id = ${event.order.customer.id}`,
    );
    expect(customer?.email ?? null).toBeNull();
    const unknown = await deliver({ forget: 'never-seen' }, { delivery: 'd-forget-unknown' });
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toEqual({ status: 'accepted', forgotten: 0 });
  });

  it('tells the platform of a payment recoup collected, retrying until it takes it, and only for its own orders', async () => {
    const ours = makeEvent();
    expect((await deliver({ event: ours }, { delivery: 'd-pay' })).status).toBe(200);
    const direct = makeEvent();
    expect((await svc.post(direct)).status).toBe(202);
    shop.failNext = 1;
    for (const orderId of [ours.order.id, direct.order.id]) await collect(orderId);

    const told = await waitFor(
      () => {
        const calls = shop.told.filter((e) => e.data.order_id === ours.order.id);
        return calls.length >= 2 ? calls : undefined;
      },
      { what: 'the write-back, retried' },
    );
    expect(told.map((e) => e.type)).toEqual(['payment.succeeded', 'payment.succeeded']);
    expect(told[1]!.id).toBe(told[0]!.id);
    expect(told[0]!.data).toMatchObject({ collected_by: 'recoup', gateway: 'sandbox', amount: ours.order.amount });
    const [delivery] = await rows<{ status: string; attempts: number }>(
      svc.database.db,
      sql`select d.status, d.attempts from webhook_deliveries d join outbound_events e on e.id = d.event_id
          where e.order_id = ${ours.order.id} and e.type = 'payment.succeeded' and d.endpoint_id = 'ep_testshop'`,
    );
    expect(delivery).toEqual({ status: 'delivered', attempts: 2 });
    // The order that came through /v1/events is not the platform's: nothing was made for it.
    const others = await rows(
      svc.database.db,
      sql`select 1 from webhook_deliveries d join outbound_events e on e.id = d.event_id where e.order_id = ${direct.order.id}`,
    );
    expect(others).toEqual([]);
    expect(shop.told.some((e) => e.data.order_id === direct.order.id)).toBe(false);
  });

  it('keeps its write-back endpoint in the configuration’s hands: it can be disabled, not moved or deleted', async () => {
    const headers = { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' };
    const endpoint = `${svc.url}/v1/webhook-endpoints/ep_testshop`;
    const read = await fetch(endpoint, { headers });
    expect(await read.json()).toMatchObject({ url: 'connector:testshop', platform: 'testshop', enabled: true });
    const moved = await fetch(endpoint, {
      method: 'PATCH',
      headers,
      body: JSON.stringify({ url: 'https://elsewhere.example/' }),
    });
    expect(moved.status).toBe(409);
    const deleted = await fetch(endpoint, { method: 'DELETE', headers: { authorization: headers.authorization } });
    expect(deleted.status).toBe(409);
    const disabled = await fetch(endpoint, { method: 'PATCH', headers, body: JSON.stringify({ enabled: false }) });
    expect(await disabled.json()).toMatchObject({ enabled: false, disabled_reason: 'ops' });
  });

  async function collect(orderId: string) {
    const token = await waitFor(
      async () => {
        const [m] = await rows<{ link_token: string; status: string }>(
          svc.database.db,
          sql`select link_token, status from messages where order_id = ${orderId} and step = 0`,
        );
        return m?.status === 'sent' ? m.link_token : undefined;
      },
      { what: `the first reminder for ${orderId}` },
    );
    const retry = svc.service.payments!;
    const started = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (started.kind !== 'next_action') throw new Error(`initiate: ${started.kind}`);
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${started.attemptId}`,
    );
    await (retry.gateways.byName('sandbox') as SandboxGateway).complete(attempt!.gateway_payment_id, {
      type: 'succeed',
    });
  }
});
