import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { initiatePayment } from '../../src/payments/initiate-payment.js';
import { loadRetryLink, type RetryDeps } from '../../src/payments/retry-session.js';
import { lookupRetryToken } from '../../src/retry-links/retry-token.js';
import { makeEvent, startTestService, type TestService, firstReminderToken } from '../helpers/service.js';

/**
 * Retry tokens as hostile input, called directly (no HTTP in between): whatever string arrives
 * as a token, the lookup answers a clean malformed/unknown and never resolves to a real link;
 * and a real token for one order never acts on another order, through the pages or the code.
 */
const runs = Number(process.env.PROPERTY_RUNS ?? 2_000);
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
`;
const base64url = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('');

describe('retry tokens under hostile input', () => {
  let svc: TestService;
  let retry: RetryDeps;
  let a: { orderId: string; token: string };
  let b: { orderId: string; token: string };

  async function recoveryWithLink(): Promise<{ orderId: string; token: string }> {
    const event = makeEvent();
    expect((await svc.post(event)).status).toBe(202);
    const token = await firstReminderToken(svc, event.order.id);
    return { orderId: event.order.id, token };
  }

  beforeAll(async () => {
    svc = await startTestService({ cadences: cadence });
    retry = svc.service.payments!;
    a = await recoveryWithLink();
    b = await recoveryWithLink();
  }, 60_000);
  afterAll(async () => {
    await svc?.close();
  });

  /** Tokens: anything at all, well-formed strangers, and near misses of the real ones. */
  const tokens = () =>
    fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme', maxLength: 30 }),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.uint8Array({ maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => Buffer.from(bytes).toString('base64url')),
      fc.string({ unit: fc.constantFrom(...base64url), minLength: 22, maxLength: 22 }),
      // One character of a real token changed, case-flipped, truncated, extended or padded.
      fc
        .tuple(fc.constantFrom(a.token, b.token), fc.nat(21), fc.constantFrom(...base64url))
        .map(([t, i, c]) => t.slice(0, i) + c + t.slice(i + 1))
        .filter((t) => t !== a.token && t !== b.token),
      fc.constantFrom(a.token, b.token).map((t) => (t.toUpperCase() === t ? t.toLowerCase() : t.toUpperCase())),
      fc
        .tuple(
          fc.constantFrom(a.token, b.token),
          fc.constantFrom('', ' ', '=', '%00', '\u0000', '\n', '/', 'A', '\u200b'),
        )
        .chain(([t, s]) => fc.constantFrom(s + t, t + s, t.slice(1) + s, t.slice(0, 21))),
      fc.constantFrom(
        "' or 1=1 --aaaaaaaaaaa",
        "a' or '1'='1",
        '%',
        '_'.repeat(22),
        '-'.repeat(22),
        `${a.token}' or '1'='1`,
        '\ud800'.repeat(22),
        'Ａ'.repeat(22),
        'x'.repeat(100_000),
      ),
    );

  it('lookupRetryToken: any string is malformed or unknown, never a real link, never a throw', async () => {
    const now = retry.clock.now();
    await fc.assert(
      fc.asyncProperty(tokens(), async (token) => {
        fc.pre(token !== a.token && token !== b.token);
        const result = await lookupRetryToken(retry.db, token, now);
        expect(result.valid).toBe(false);
        if (result.valid) return;
        // A bad token says why it is bad and nothing else: no message or recovery behind it.
        expect(result).toEqual({
          valid: false,
          reason: /^[A-Za-z0-9_-]{22}$/.test(token) ? 'unknown' : 'malformed',
        });
      }),
      { numRuns: runs },
    );
    // The real tokens still resolve, each to its own order.
    for (const link of [a, b]) {
      const result = await lookupRetryToken(retry.db, link.token, now);
      expect(result.valid && result.orderId).toBe(link.orderId);
    }
  }, 60_000);

  it('loadRetryLink and initiatePayment: any other string is invalid and writes nothing', async () => {
    const attempts = async () => {
      const [row] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from payment_attempts`);
      return row?.n;
    };
    const before = await attempts();
    await fc.assert(
      fc.asyncProperty(
        tokens(),
        fc.constantFrom('alipay' as const, 'wechat_pay' as const, 'card' as const),
        async (token, method) => {
          fc.pre(token !== a.token && token !== b.token);
          expect(await loadRetryLink(retry, token)).toEqual({ kind: 'invalid' });
          expect(await initiatePayment(retry, { token, method, email: null, phone: null })).toEqual({
            kind: 'invalid',
          });
        },
      ),
      { numRuns: Math.ceil(runs / 4) },
    );
    expect(await attempts()).toBe(before);
  }, 60_000);

  it("a token's payment never touches another order's attempts", async () => {
    const attemptsOf = (orderId: string) =>
      rows<Record<string, unknown>>(
        svc.database.db,
        sql`select * from payment_attempts where order_id = ${orderId} order by created_at, id`,
      );
    const bBefore = await attemptsOf(b.orderId);
    for (const method of ['alipay', 'wechat_pay', 'card'] as const) {
      const started = await initiatePayment(retry, { token: a.token, method, email: null, phone: null });
      expect(started.kind).toBe('next_action');
      if (started.kind !== 'next_action') continue;
      const [attempt] = await rows<{ order_id: string }>(
        svc.database.db,
        sql`select order_id from payment_attempts where id = ${started.attemptId}`,
      );
      expect(attempt?.order_id).toBe(a.orderId);
    }
    expect((await attemptsOf(a.orderId)).length).toBeGreaterThan(0);
    expect(await attemptsOf(b.orderId)).toEqual(bBefore);
  });

  describe('through the pages', () => {
    const inject = (options: InjectOptions) => {
      const app = svc.service.app;
      if (!app) throw new Error('no HTTP role');
      return app.inject(options);
    };
    const csrfField = (html: string) => /<input type="hidden" name="csrf" value="([^"]+)">/.exec(html)?.[1] ?? '';
    const cookieOf = (response: LightMyRequestResponse) => {
      const header = response.headers['set-cookie'];
      const all = Array.isArray(header) ? header : header ? [header] : [];
      return all.find((c) => c.startsWith('recoup_csrf='))?.split(';')[0];
    };
    const snapshot = async (orderId: string) => {
      const q = (query: ReturnType<typeof sql>) => rows<Record<string, unknown>>(svc.database.db, query);
      return {
        orders: await q(sql`select * from orders where id = ${orderId}`),
        customers: await q(
          sql`select c.* from customers c join orders o on o.customer_id = c.id where o.id = ${orderId}`,
        ),
        attempts: await q(sql`select * from payment_attempts where order_id = ${orderId} order by id`),
        messages: await q(sql`select * from messages where order_id = ${orderId} order by id`),
        recoveries: await q(sql`select * from recoveries where order_id = ${orderId}`),
        clicks: await q(sql`select * from clicks where order_id = ${orderId}`),
      };
    };

    it("refuses order B's form posted with order A's CSRF token (same browser), and changes nothing of B", async () => {
      const openA = await inject({ method: 'GET', url: `/r/${a.token}` });
      const cookie = cookieOf(openA);
      expect(cookie).toBeDefined();
      const openB = await inject({ method: 'GET', url: `/r/${b.token}`, headers: { cookie: cookie! } });
      expect(openB.statusCode).toBe(200);
      const csrfA = csrfField(openA.body);
      const csrfB = csrfField(openB.body);
      expect(csrfA).not.toBe('');
      expect(csrfA).not.toBe(csrfB);
      const before = await snapshot(b.orderId);
      for (const path of ['', '/fresh-link', '/click', '/continue']) {
        const response = await inject({
          method: 'POST',
          url: `/r/${b.token}${path}`,
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie! },
          payload: new URLSearchParams({
            csrf: csrfA,
            email: 'attacker@example.com',
            phone: '+14155550100',
            method: 'alipay',
          }).toString(),
        });
        expect(response.statusCode).toBe(403);
        expect(response.body).not.toContain(b.orderId);
      }
      expect(await snapshot(b.orderId)).toEqual(before);
    });

    it("posting A's own form with B's ids smuggled in acts on A only", async () => {
      const openA = await inject({ method: 'GET', url: `/r/${a.token}` });
      const cookie = cookieOf(openA)!;
      const before = await snapshot(b.orderId);
      const response = await inject({
        method: 'POST',
        url: `/r/${a.token}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        payload: new URLSearchParams({
          csrf: csrfField(openA.body),
          email: '',
          phone: '',
          method: 'alipay',
          order_id: b.orderId,
          orderId: b.orderId,
          token: b.token,
          recovery_id: String(before.recoveries[0]?.id ?? ''),
        }).toString(),
      });
      expect(response.statusCode).toBeLessThan(400);
      expect(await snapshot(b.orderId)).toEqual(before);
      const [latest] = await rows<{ order_id: string }>(
        svc.database.db,
        sql`select order_id from payment_attempts order by created_at desc, id desc limit 1`,
      );
      expect(latest?.order_id).toBe(a.orderId);
    });
  });
});
