import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { sandboxWebhookSecret } from '../../src/app/deps.js';
import type { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import { openAttempt } from '../helpers/attempts.js';
import { testRedisUrl } from '../helpers/redis.js';
import {
  freePort,
  makeEvent,
  startTestService,
  testApiKey,
  waitFor,
  type TestService,
  firstReminderToken,
} from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
  - { after: 1h, channel: email, template: last-call }
`;

// Shared with the server processes this file kills, so that all of them accept the same signed webhooks.
const secret = 'lost-webhooks-test-secret-0123456789';

let counter = 0;

/**
 * A signed sandbox `payment.succeeded` for an attempt opened on the order, as the gateway
 * (re)sends it: same event id every time.
 */
async function gatewayEvent(svc: TestService, orderId: string) {
  counter += 1;
  const paymentId = `sbx_lost_${process.pid}_${Date.now().toString(36)}_${counter}`;
  const attemptId = await openAttempt(svc.database.db, {
    orderId,
    gateway: 'sandbox',
    gatewayPaymentId: paymentId,
    amount: 12900,
    currency: 'CNY',
  });
  const eventId = `evt_${paymentId}`;
  const deliver = (baseUrl: string) => {
    const body = JSON.stringify({
      id: eventId,
      type: 'payment.succeeded',
      created: Math.floor(Date.now() / 1000),
      data: {
        payment_id: paymentId,
        order_id: orderId,
        attempt_id: attemptId,
        amount: 12900,
        currency: 'CNY',
        method: 'alipay',
        failure_code: null,
        refund_id: null,
      },
    });
    return fetch(`${baseUrl}/webhooks/payments/sandbox`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'recoup-sandbox-signature': signSandboxPayload(body, sandboxWebhookSecret(secret), new Date()),
      },
      body,
    });
  };
  return { eventId, paymentId, deliver };
}

/** A pending order with an active recovery (the shop reported a failed payment). */
async function unpaidOrder(svc: TestService): Promise<string> {
  const event = makeEvent();
  expect((await svc.post(event)).status).toBe(202);
  return event.order.id;
}

async function orderState(svc: TestService, orderId: string) {
  const [row] = await rows<{ status: string; recovery: string | null; payments: number }>(
    svc.database.db,
    sql`select o.status, r.state as recovery,
               (select count(*)::int from payments p where p.order_id = o.id) as payments
        from orders o left join recoveries r on r.order_id = o.id where o.id = ${orderId}`,
  );
  return row;
}

async function storedEvent(svc: TestService, eventId: string) {
  const [row] = await rows<{ outcome: string; claims: number }>(
    svc.database.db,
    sql`select outcome, claims from gateway_events where gateway = 'sandbox' and event_id = ${eventId}`,
  );
  return row;
}

/** Moves an event's claim into the past by Postgres's clock, as if the threshold had gone by. */
async function ageClaim(svc: TestService, eventId: string, interval: string) {
  await svc.database.db.execute(
    sql`update gateway_events set claimed_at = claimed_at - ${interval}::interval
        where gateway = 'sandbox' and event_id = ${eventId}`,
  );
}

/**
 * Delivers the event to a separate `recoup server` over the service's database, which kills
 * itself (SIGKILL) right after claiming it: what a deploy or the OOM killer leaves behind.
 */
async function deliverToServerKilledAfterClaim(svc: TestService, event: Awaited<ReturnType<typeof gatewayEvent>>) {
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-killed-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'server'], {
    cwd: process.cwd(),
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: svc.database.url,
      REDIS_URL: testRedisUrl(),
      QUEUE_PREFIX: svc.prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      RECOUP_SECRET: secret,
      RECOUP_API_KEYS: testApiKey,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'error',
      RECONCILE_INTERVAL: '1h',
      WAKEUP_HORIZON: '2h',
      FAULT_INJECTION: 'after_webhook_claim_nth=1',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => ((await fetch(`${url}/healthz`)).ok ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the server to start',
    });
    await expect(event.deliver(url)).rejects.toThrow();
    expect(await exited).toBe('SIGKILL');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

describe('a payment webhook whose delivery dies or fails is not lost', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startTestService({
      roles: { http: true, worker: false },
      // The sweeper stays out of these tests (it runs once at start): here the resends do the work.
      env: { RECOUP_SECRET: secret, WEBHOOK_STALE_AFTER: '1m', RECONCILE_INTERVAL: '1h', WAKEUP_HORIZON: '2h' },
    });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('a server killed between claim and payment: resends are refused until the claim is stale, then applied once', async () => {
    const orderId = await unpaidOrder(svc);
    const event = await gatewayEvent(svc, orderId);
    await deliverToServerKilledAfterClaim(svc, event);
    expect(await storedEvent(svc, event.eventId)).toEqual({ outcome: 'processing', claims: 1 });
    expect(await orderState(svc, orderId)).toEqual({ status: 'pending', recovery: 'active', payments: 0 });

    // The gateway resends at once: the claim is younger than WEBHOOK_STALE_AFTER, so it must try again later.
    const early = await event.deliver(svc.url);
    expect(early.status).toBe(409);
    expect(early.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await early.json()).toMatchObject({ type: 'https://recoup.dev/problems/in-progress', status: 409 });
    expect(await orderState(svc, orderId)).toEqual({ status: 'pending', recovery: 'active', payments: 0 });

    await ageClaim(svc, event.eventId, '2 minutes');
    const late = await event.deliver(svc.url);
    expect(late.status).toBe(200);
    expect(await late.json()).toEqual({ received: true, outcome: 'payment_recorded' });
    expect(await orderState(svc, orderId)).toEqual({ status: 'paid', recovery: 'recovered', payments: 1 });
    expect(await storedEvent(svc, event.eventId)).toEqual({ outcome: 'payment_recorded', claims: 2 });

    const again = await event.deliver(svc.url);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ received: true, outcome: 'duplicate_event' });
    expect(await orderState(svc, orderId)).toEqual({ status: 'paid', recovery: 'recovered', payments: 1 });
  }, 60_000);

  it('a duplicate delivery while the first is held gets 409; when the first fails, the next resend records the payment', async () => {
    const orderId = await unpaidOrder(svc);
    const event = await gatewayEvent(svc, orderId);
    const holder = new pg.Client({ connectionString: svc.database.url });
    await holder.connect();
    let inFlight: Promise<Response> | undefined;
    try {
      // Hold the order's row lock: the first delivery claims the event, then waits for this lock.
      await holder.query('begin');
      await holder.query('select id from orders where id = $1 for update', [orderId]);
      const first = event.deliver(svc.url);
      inFlight = first;
      const waiting = await waitFor(
        async () => {
          const { rows: found } = await holder.query<{ pid: number }>(
            `select pid from pg_stat_activity
             where datname = current_database() and pg_backend_pid() = any(pg_blocking_pids(pid))`,
          );
          return found[0]?.pid;
        },
        { what: 'the first delivery to wait for the order lock' },
      );
      expect(await storedEvent(svc, event.eventId)).toEqual({ outcome: 'processing', claims: 1 });

      const second = await event.deliver(svc.url);
      expect(second.status).toBe(409);

      // The first delivery then fails (its database connection dies) and answers 5xx.
      await holder.query('select pg_terminate_backend($1)', [waiting]);
      expect((await first).status).toBe(500);
      await holder.query('rollback');
      expect(await orderState(svc, orderId)).toEqual({ status: 'pending', recovery: 'active', payments: 0 });
      expect(await storedEvent(svc, event.eventId)).toEqual({ outcome: 'error', claims: 1 });
    } finally {
      await holder.end();
      // Never leave it in flight (a failed assertion above): the service could not close under it.
      await inFlight?.catch(() => undefined);
    }

    // The gateway's next resend is applied at once: the failed claim was handed back.
    const resent = await event.deliver(svc.url);
    expect(resent.status).toBe(200);
    expect(await resent.json()).toEqual({ received: true, outcome: 'payment_recorded' });
    expect(await orderState(svc, orderId)).toEqual({ status: 'paid', recovery: 'recovered', payments: 1 });
  });
});

describe('the payment sweeper', () => {
  let svc: TestService;

  beforeAll(async () => {
    // Nothing listens at PUBLIC_URL: the sandbox's own webhooks never arrive.
    const nowhere = await freePort();
    svc = await startTestService({
      cadences: cadence,
      env: {
        RECOUP_SECRET: secret,
        PUBLIC_URL: `http://127.0.0.1:${nowhere}`,
        WEBHOOK_STALE_AFTER: '1m',
        PAYMENT_CHECK_AFTER: '1s',
      },
    });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('applies an event whose server was killed after claiming it, with no resend', async () => {
    const orderId = await unpaidOrder(svc);
    const event = await gatewayEvent(svc, orderId);
    await deliverToServerKilledAfterClaim(svc, event);
    expect(await orderState(svc, orderId)).toEqual({ status: 'pending', recovery: 'active', payments: 0 });

    await ageClaim(svc, event.eventId, '2 minutes');
    await waitFor(async () => ((await orderState(svc, orderId))?.status === 'paid' ? true : undefined), {
      what: 'the sweeper to apply the event',
    });
    expect(await orderState(svc, orderId)).toEqual({ status: 'paid', recovery: 'recovered', payments: 1 });
    // The outcome is recorded just after the payment commits.
    const stored = await waitFor(
      async () => {
        const e = await storedEvent(svc, event.eventId);
        return e?.outcome === 'processing' ? undefined : e;
      },
      { what: "the event's outcome" },
    );
    expect(stored).toEqual({ outcome: 'payment_recorded', claims: 2 });
  }, 60_000);

  it('records a payment whose webhook never came from the gateway', async () => {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    const retry = svc.service.payments!;
    const started = await initiatePayment(retry, { token, method: 'alipay', email: null, phone: null });
    if (started.kind !== 'next_action') throw new Error(`initiate: ${started.kind}`);
    const [attempt] = await rows<{ gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway_payment_id from payment_attempts where id = ${started.attemptId}`,
    );
    // The customer pays; the gateway's webhook cannot reach recoup.
    const sandbox = retry.gateways.byName('sandbox') as SandboxGateway;
    await sandbox.complete(attempt!.gateway_payment_id, { type: 'succeed' });

    await waitFor(async () => ((await orderState(svc, event.order.id))?.status === 'paid' ? true : undefined), {
      what: 'the sweeper to find the payment',
    });
    expect(await orderState(svc, event.order.id)).toEqual({ status: 'paid', recovery: 'recovered', payments: 1 });
    const [settled] = await rows<{ status: string; checked: boolean; events: number }>(
      svc.database.db,
      sql`select status, checked_at is not null as checked,
                 (select count(*)::int from gateway_events where gateway_payment_id = ${attempt!.gateway_payment_id}) as events
          from payment_attempts where id = ${started.attemptId}`,
    );
    expect(settled).toEqual({ status: 'succeeded', checked: true, events: 0 });
  });
});
