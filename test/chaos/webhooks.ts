import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { allOutboundEventTypes } from '../../src/outbound/event-types.js';
import { mulberry32 } from '../helpers/fake-smtp.js';

/**
 * The shop's side of webhooks in the fault harness: an endpoint that verifies every delivery as a
 * shop would and is flaky on purpose (answers 503, answers after the delivery timeout, drops the
 * connection), and the check that every state change reached it, once per webhook-id.
 */

/** Settings the harness's processes deliver with: quick retries and a short timeout. */
export const webhookEnv = {
  WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_POLL_INTERVAL: '100ms',
  WEBHOOK_TIMEOUT: '1s',
  WEBHOOK_RETRY_SCHEDULE: '200ms,500ms,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s',
};

interface Delivery {
  id: string;
  body: string;
  verified: boolean;
  type: string | undefined;
  data: Record<string, unknown> | undefined;
  answered: number | 'dropped' | 'late';
}

export interface FlakyShop {
  url: string;
  secret: string;
  /** Changed at will: the drain sets them to 0. */
  rates: FlakyRates;
  deliveries: Delivery[];
  close(): Promise<void>;
}

export interface FlakyRates {
  error503: number;
  /** Answered after WEBHOOK_TIMEOUT: recoup counts it failed, the shop may have acted on it. */
  late: number;
  dropped: number;
}

export async function startFlakyShop(seed: number, rates: FlakyRates): Promise<FlakyShop> {
  const random = mulberry32(seed);
  const deliveries: Delivery[] = [];
  const shop: FlakyShop = {
    url: '',
    secret: '',
    rates: { ...rates },
    deliveries,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const id = String(request.headers['webhook-id'] ?? '');
      let payload: { type?: string; data?: Record<string, unknown> } | undefined;
      try {
        payload = new Webhook(shop.secret).verify(body, {
          'webhook-id': id,
          'webhook-timestamp': String(request.headers['webhook-timestamp'] ?? ''),
          'webhook-signature': String(request.headers['webhook-signature'] ?? ''),
        }) as typeof payload;
      } catch {
        payload = undefined;
      }
      const delivery: Delivery = {
        id,
        body,
        verified: !!payload,
        type: payload?.type,
        data: payload?.data,
        answered: 200,
      };
      deliveries.push(delivery);
      if (!payload) {
        delivery.answered = 401;
        response.writeHead(401).end();
        return;
      }
      const draw = random();
      const { dropped, late, error503 } = shop.rates;
      if (draw < dropped) {
        delivery.answered = 'dropped';
        request.socket.destroy();
      } else if (draw < dropped + late) {
        delivery.answered = 'late';
        setTimeout(() => response.writeHead(200).end('ok'), 1_500);
      } else if (draw < dropped + late + error503) {
        delivery.answered = 503;
        response.writeHead(503).end('busy');
      } else {
        response.writeHead(200).end('ok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  shop.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/recoup`;
  return shop;
}

/** Registers the shop's endpoint for every event type, before any traffic. */
export async function registerShop(serverUrl: string, apiKey: string, shop: FlakyShop): Promise<void> {
  const response = await fetch(`${serverUrl}/v1/webhook-endpoints`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ url: shop.url, events: allOutboundEventTypes, description: 'chaos shop' }),
  });
  const created = (await response.json()) as { secret?: string };
  if (response.status !== 201 || !created.secret) throw new Error(`registering the shop: ${response.status}`);
  shop.secret = created.secret;
}

/** Every event numbered and every delivery settled (the harness's flakiness ends with the drain). */
export async function webhooksSettled(db: pg.Pool): Promise<boolean> {
  const { rows } = await db.query<{ open: number }>(
    `select (select count(*)::int from outbound_events where position is null)
          + (select count(*)::int from webhook_deliveries where status = 'pending') as open`,
  );
  return rows[0]?.open === 0;
}

export interface WebhookReport {
  /** State changes the shop never received a verified event of. */
  lost: number;
  /** webhook-ids that came with two different bodies. */
  idsReused: number;
  deliveries: number;
  uniqueEvents: number;
  redeliveries: number;
  failedAttempts: number;
  givenUp: number;
  examples: string[];
}

/**
 * What the shop should have heard of, from the state recoup ended with: every recovery started
 * and every one ended, every payment, every refund, every opt-out and opt-in of a known customer,
 * every reminder sent or refused, and every reminder accepted after its order was paid. Each is
 * matched against the verified deliveries.
 */
export async function checkWebhooks(db: pg.Pool, shop: FlakyShop): Promise<WebhookReport> {
  const { rows: expected } = await db.query<{ key: string }>(
    `select 'recovery.started|' || id as key from recoveries
     union all select 'recovery.ended|' || id from recoveries where state <> 'active'
     union all select 'payment.succeeded|' || id from payments
     union all select 'refund.succeeded|' || id from refunds where status = 'succeeded'
     union all select 'message.sent|' || id from messages where status in ('sent', 'delivered')
     union all select 'message.failed|' || id from messages where status = 'failed'
     union all select 'reminder.after_payment|' || id from messages where after_payment_at is not null
     union all select case action when 'opt_out' then 'customer.opted_out|' else 'customer.opted_in|' end
                      || customer_id || '|' || channel || '|' || count(*) over (partition by customer_id, channel, action order by at, id)
               from consent_events where customer_id is not null`,
  );
  const bodiesById = new Map<string, Set<string>>();
  const received = new Set<string>();
  const consentSeen = new Map<string, number>();
  for (const d of shop.deliveries) {
    if (!d.verified || !d.type || !d.data) continue;
    const bodies = bodiesById.get(d.id) ?? new Set<string>();
    const first = bodies.size === 0;
    bodies.add(d.body);
    bodiesById.set(d.id, bodies);
    if (!first) continue;
    const data = d.data;
    const subject =
      d.type === 'recovery.started' || d.type === 'recovery.ended'
        ? data.recovery_id
        : d.type === 'payment.succeeded'
          ? data.payment_id
          : d.type === 'refund.succeeded'
            ? data.refund_id
            : d.type.startsWith('message.') || d.type === 'reminder.after_payment'
              ? data.message_id
              : undefined;
    if (subject !== undefined) {
      received.add(`${d.type}|${String(subject)}`);
    } else {
      const key = `${d.type}|${String(data.customer_id)}|${String(data.channel)}`;
      const n = (consentSeen.get(key) ?? 0) + 1;
      consentSeen.set(key, n);
      received.add(`${key}|${n}`);
    }
  }
  const missing = expected.map((e) => e.key).filter((key) => !received.has(key));
  const { rows: stats } = await db.query<{ failed: number; given_up: number }>(
    `select (select count(*)::int from webhook_attempts where status is null or status not between 200 and 299) as failed,
            (select count(*)::int from webhook_deliveries where status = 'failed') as given_up`,
  );
  const verified = shop.deliveries.filter((d) => d.verified);
  return {
    lost: missing.length,
    idsReused: [...bodiesById.values()].filter((bodies) => bodies.size > 1).length,
    deliveries: verified.length,
    uniqueEvents: bodiesById.size,
    redeliveries: verified.length - bodiesById.size,
    failedAttempts: stats[0]?.failed ?? 0,
    givenUp: stats[0]?.given_up ?? 0,
    examples: missing.slice(0, 10).map((key) => `webhook lost: ${key}`),
  };
}
