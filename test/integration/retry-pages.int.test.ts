import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage, EmailSender } from '../../src/channels/email-sender.js';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import type { PaymentMethod } from '../../src/domain/vocabulary.js';
import { PageRenderer } from '../../src/http/pages/page-renderer.js';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { retryPageRoutes, type RetryPageDeps } from '../../src/payments/retry-pages.routes.js';
import { createLogger } from '../../src/platform/logger.js';
import { formatAmount } from '../../src/platform/format-amount.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { PaymentGateways } from '../../src/payments/gateways.js';
import { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { InMemorySandboxStore, type SandboxPayment } from '../../src/payments/gateways/sandbox/sandbox-store.js';
import { sandboxRoutes } from '../../src/payments/gateways/sandbox/sandbox.routes.js';
import {
  GatewayError,
  type CreatedPayment,
  type PaymentGateway,
  type PaymentRequest,
} from '../../src/payments/payment-gateway.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// The integrator wires retryPageRoutes into build-app.ts; until then this file builds its own
// Fastify app around the routes, over a real database, with the embedded sandbox gateway and a
// fixed clock (so coupons and links expire exactly when a test says).
const publicUrl = 'https://pay.example-shop.com';
const secret = 'page-secret-for-tests-only';
const evil = '<script>alert(1)</script>';
const cadencesYaml = `
- name: plain
  expire_after: 3d
  steps:
    - { after: 1m, channel: sms, template: nudge }
`;
const strict =
  "default-src 'none';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';" +
  `form-action 'self' ${publicUrl};frame-ancestors 'none';base-uri 'none'`;

/** Records SMS instead of sending; the pages never send anything themselves. */
class NullSms implements SmsSender {
  readonly transport = 'null';
  async send(message: SmsMessage) {
    return { providerId: `null-${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}
const noEmail: EmailSender = {
  transport: 'none',
  send: (_message: EmailMessage) => Promise.reject(new Error('no email in this test')),
  close: async () => {},
};

/** The sandbox's store, counting the payments it ever created. */
class CountingStore extends InMemorySandboxStore {
  readonly created = new Map<string, SandboxPayment>();
  override async savePayment(payment: SandboxPayment): Promise<void> {
    if (!this.created.has(payment.id)) this.created.set(payment.id, structuredClone(payment));
    return super.savePayment(payment);
  }
  forOrder(orderId: string): SandboxPayment[] {
    return [...this.created.values()].filter((p) => p.orderId === orderId);
  }
}

/** The sandbox, with a switch that makes it unreachable for new payments. */
class SwitchableGateway implements PaymentGateway {
  readonly name: string;
  down = false;
  constructor(private readonly inner: PaymentGateway) {
    this.name = inner.name;
  }
  supports(method: PaymentMethod, currency: string) {
    return this.inner.supports(method, currency);
  }
  createPayment(request: PaymentRequest) {
    if (this.down)
      return Promise.reject(new GatewayError('unavailable', 'connection refused', { code: 'ECONNREFUSED' }));
    return this.inner.createPayment(request);
  }
  retrievePayment(id: string) {
    return this.inner.retrievePayment(id);
  }
  cancelPayment(id: string) {
    return this.inner.cancelPayment(id);
  }
  refund(...args: Parameters<PaymentGateway['refund']>) {
    return this.inner.refund(...args);
  }
  parseWebhook(...args: Parameters<PaymentGateway['parseWebhook']>) {
    return this.inner.parseWebhook(...args);
  }
}

/** A Stripe-like gateway whose card payments are collected in the page with a client secret. */
const clientSecretGateway: PaymentGateway = {
  name: 'stripe',
  supports: () => true,
  async createPayment(request): Promise<CreatedPayment> {
    return {
      gatewayPaymentId: `pi_${request.orderId}`,
      status: 'requires_action',
      nextAction: {
        type: 'client_secret',
        clientSecret: `pi_${request.orderId}_secret_x`,
        publishableKey: 'pk_test_1',
      },
    };
  },
  async retrievePayment(id) {
    return { gatewayPaymentId: id, status: 'requires_action', amount: 1, currency: 'CNY' };
  },
  async cancelPayment() {},
  refund: () => Promise.reject(new Error('not in this test')),
  parseWebhook: () => Promise.reject(new Error('not in this test')),
};

interface Link {
  token: string;
  orderId: string;
  customerId: string;
  messageId: string;
}

describe('retry pages', () => {
  const clock = new FixedClock('2026-11-25T12:00:00Z');
  const store = new CountingStore();
  const sandbox = new SandboxGateway({ publicUrl, webhookSecret: 'sbx-secret', clock, store });
  const gateway = new SwitchableGateway(sandbox);
  const freshLinkCalls: string[] = [];
  let database: TestDatabase;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  let retry: RetryDeps;
  let pages: PageRenderer;
  let app: FastifyInstance;
  const apps: FastifyInstance[] = [];

  async function buildApp(overrides: Omit<Partial<RetryPageDeps>, 'retry'> & { retry?: Partial<RetryDeps> } = {}) {
    const instance = Fastify({ logger: false });
    instance.register(sandboxRoutes(sandbox));
    await retryPageRoutes(instance, {
      secret,
      pages,
      rateLimit: { max: 10_000, timeWindowMs: 60_000 },
      freshLink: async (messageId) => {
        freshLinkCalls.push(messageId);
        return { kind: 'sent' };
      },
      ...overrides,
      retry: { ...retry, ...overrides.retry },
    });
    await instance.ready();
    apps.push(instance);
    return instance;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    const logger = createLogger('silent');
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms: new NullSms(),
      email: noEmail,
      clock,
      logger,
      settings: {
        publicUrl,
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: 86_400_000,
        quietHoursSpreadMs: 0,
        sendMaxAttempts: 3,
        sendRetryBaseMs: 1_000,
        claimStaleAfterMs: 60_000,
      },
    };
    retry = {
      db: database.db,
      cadences,
      gateways: new PaymentGateways([gateway], { card: 'sandbox', alipay: 'sandbox', wechat_pay: 'sandbox' }),
      clock,
      logger,
      publicUrl,
      shopName: 'Example Shop',
      defaultLocale: 'en',
      clickWindowMs: 86_400_000,
    };
    pages = PageRenderer.load('templates/pages');
    app = await buildApp();
  });

  afterAll(async () => {
    for (const instance of apps) await instance.close();
    sandbox.close();
    await database?.drop();
  });

  /** A failed payment, its recovery and the reminder carrying a retry link. */
  async function openLink(
    order: Record<string, unknown> = {},
    payment: Record<string, unknown> = {},
    customer: Record<string, unknown> = {},
  ): Promise<Link> {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const event = parseEvent({
      ...base,
      order: { ...base.order, cadence: 'plain', ...order, customer: { ...base.order.customer, ...customer } },
      payment: { ...base.payment, ...payment },
    });
    const result = await applyEvent(intake, event, clock.now());
    const [wakeup] = result.status === 'accepted' ? result.wakeups : [];
    if (!wakeup) throw new Error('the recovery did not start');
    if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
    const sent = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    if (sent.action !== 'sent' || !sent.messageId) throw new Error(`the reminder was not sent: ${sent.action}`);
    const [row] = await rows<{ link_token: string; order_id: string; customer_id: string }>(
      database.db,
      sql`select link_token, order_id, customer_id from messages where id = ${sent.messageId}`,
    );
    if (!row) throw new Error('no message');
    return { token: row.link_token, orderId: row.order_id, customerId: row.customer_id, messageId: sent.messageId };
  }

  /** Everything a page view or a refused POST must leave alone. */
  async function snapshot(link: Link) {
    const q = (query: ReturnType<typeof sql>) => rows<Record<string, unknown>>(database.db, query);
    return {
      orders: await q(sql`select * from orders where id = ${link.orderId}`),
      customers: await q(sql`select * from customers where id = ${link.customerId}`),
      attempts: await q(sql`select * from payment_attempts where order_id = ${link.orderId} order by created_at`),
      messages: await q(sql`select * from messages where order_id = ${link.orderId} order by id`),
      recoveries: await q(sql`select * from recoveries where order_id = ${link.orderId}`),
      audit: await q(sql`select * from audit_log where subject = ${`customer:${link.customerId}`}`),
      payments: await q(sql`select * from payments where order_id = ${link.orderId}`),
      sandbox: store.forOrder(link.orderId).length,
    };
  }

  async function clicks(link: Link): Promise<number> {
    const [row] = await rows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from clicks where message_id = ${link.messageId}`,
    );
    return row?.n ?? 0;
  }

  /** Opens the page like a browser: the CSRF cookie and the form token. */
  async function open(link: Link, target = app) {
    const response = await target.inject({ method: 'GET', url: `/r/${link.token}` });
    return { response, cookie: csrfCookie(response), csrf: csrfField(response.body) };
  }

  function post(
    link: Link,
    fields: Record<string, string>,
    cookie: string | undefined,
    path = '',
    target = app,
  ): Promise<LightMyRequestResponse> {
    return target.inject({
      method: 'POST',
      url: `/r/${link.token}${path}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
      payload: new URLSearchParams(fields).toString(),
    });
  }

  /** Opens the page and submits its form with `fields` (email and phone kept as prefilled unless given). */
  async function submit(link: Link, fields: Record<string, string>) {
    const { cookie, csrf } = await open(link);
    return post(link, { csrf, email: '', phone: '', ...fields }, cookie);
  }

  async function attemptsOf(link: Link) {
    return rows<{ id: string; amount: string; method: string; status: string; click_id: string | null }>(
      database.db,
      sql`select id, amount::text as amount, method, status, click_id from payment_attempts
          where order_id = ${link.orderId} and source = 'retry_link' order by attempt_number`,
    );
  }

  const en = pageStrings.en;
  const zh = pageStrings['zh-CN'];

  it('shows the amount, description and methods, and does not pre-select the card that just failed', async () => {
    const frozen = await openLink({}, { failure_code: 'do_not_honor' });
    const { response } = await open(frozen);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
    const html = response.body;
    expect(html).toContain('<html lang="zh-CN">');
    expect(html).toContain('2 items');
    expect(html).toContain(formatAmount(12900, 'CNY', 'zh-CN'));
    expect(html).toContain(zh.reasons.account_frozen);
    expect(html).toContain('value="li@example.com"');
    expect(html).toContain('value="+8613800138000"');
    expect(html).toContain('<input type="radio" name="method" value="card">');
    expect(html).toContain('<input type="radio" name="method" value="alipay" checked>');
    expect(html).toContain('<input type="radio" name="method" value="wechat_pay">');

    // A soft decline (insufficient funds): the same card is a fine default.
    const soft = await openLink({}, { failure_code: 'insufficient_funds' }, { locale: 'en-US' });
    const page = (await open(soft)).response.body;
    expect(page).toContain('<html lang="en">');
    expect(page).toContain(formatAmount(12900, 'CNY', 'en-US'));
    expect(page).toContain(en.reasons.insufficient_funds);
    expect(page).toContain('<input type="radio" name="method" value="card" checked>');
  });

  it('lists the cart lines above the methods, and lets this page alone load their pictures', async () => {
    const items = [
      { name: 'Longjing tea gift box', quantity: 2, amount: 9800, image_url: 'https://cdn.example-shop.com/tea.jpg' },
      { name: `Cup ${evil}`, quantity: 1, amount: 3100 },
      { name: 'Tea towel', quantity: 3, amount: 0, image_url: 'https://img.example.net:8443/towel.png?s=96' },
    ];
    const link = await openLink({ items });
    const { response } = await open(link);
    expect(response.statusCode).toBe(200);
    const html = response.body;
    const list = html.slice(html.indexOf('<ul class="items"'), html.indexOf('</ul>'));
    expect(list).toContain(`aria-label="${zh.itemsLabel}"`);
    expect(list).toContain('<img src="https://cdn.example-shop.com/tea.jpg" alt="Longjing tea gift box"');
    expect(list).toContain('Longjing tea gift box <span class="item-quantity">× 2</span>');
    expect(list).toContain(`<span class="item-amount">${formatAmount(9800, 'CNY', 'zh-CN')}</span>`);
    expect(list).toContain('Cup &lt;script&gt;alert(1)&lt;/script&gt; <span class="item-quantity">× 1</span>');
    expect(list).toContain(`<span class="item-amount">${formatAmount(0, 'CNY', 'zh-CN')}</span>`);
    expect(list.match(/<img /g)).toHaveLength(2);
    expect(html).not.toContain(evil);
    expect(html.indexOf('<ul class="items"')).toBeLessThan(html.indexOf('name="method"'));
    // The pictures' origins, and nothing else, join img-src.
    expect(response.headers['content-security-policy']).toBe(
      strict.replace(
        "img-src 'self' data:",
        "img-src 'self' data: https://cdn.example-shop.com https://img.example.net:8443",
      ),
    );

    // A form sent back with errors shows them again; an order without lines shows no list and the strict CSP.
    const { cookie, csrf } = await open(link);
    const again = await post(link, { csrf, email: 'not-an-email', phone: '', method: 'alipay' }, cookie);
    expect(again.statusCode).toBe(400);
    expect(again.body).toContain('Longjing tea gift box <span class="item-quantity">× 2</span>');
    const plain = (await open(await openLink())).response;
    expect(plain.body).not.toContain('class="items"');
    expect(plain.headers['content-security-policy']).toBe(strict);
  });

  it('changes nothing on GET or HEAD, not even a click (link scanners fetch every link)', async () => {
    const link = await openLink();
    const before = await snapshot(link);
    const response = await app.inject({
      method: 'GET',
      url: `/r/${link.token}`,
      headers: { 'user-agent': 'Phone/1.0' },
    });
    expect(response.statusCode).toBe(200);
    const head = await app.inject({ method: 'HEAD', url: `/r/${link.token}` });
    expect(head.statusCode).toBe(200);
    expect(await clicks(link)).toBe(0);
    expect(await snapshot(link)).toEqual(before);
  });

  it('answers tampered, unknown and malformed tokens with a 404 page that shows no order data', async () => {
    const link = await openLink({ description: 'Secret blue sofa' }, {}, { email: 'private@example.com' });
    const last = link.token.at(-1) === 'A' ? 'B' : 'A';
    const tampered = `${link.token.slice(0, -1)}${last}`;
    for (const token of [tampered, 'AAAAAAAAAAAAAAAAAAAAAA', 'short', `${link.token}x`, '%3Cscript%3E']) {
      const response = await app.inject({ method: 'GET', url: `/r/${token}`, headers: { 'accept-language': 'zh-CN' } });
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.body).toContain(zh.invalidTitle);
      for (const secretBit of ['Secret blue sofa', 'private@example.com', '129', link.orderId, '<form']) {
        expect(response.body).not.toContain(secretBit);
      }
    }
    // Unknown paths under /r get the same friendly page, not a JSON error.
    const unknown = await app.inject({ method: 'GET', url: `/r/${link.token}/nothing/here` });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.body).toContain(en.invalidTitle);
  });

  it('answers an expired link with a 410 page whose button asks for a fresh link (CSRF-protected)', async () => {
    const link = await openLink({ description: 'Expired sofa' });
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() - 1000)} where id = ${link.messageId}`,
    );
    const { response, cookie, csrf } = await open(link);
    expect(response.statusCode).toBe(410);
    expect(response.body).toContain(zh.expiredTitle);
    expect(response.body).toContain(`<form method="post" action="/r/${link.token}/fresh-link">`);
    expect(response.body).not.toContain('Expired sofa');
    expect(await clicks(link)).toBe(0);

    const refused = await post(link, { csrf: 'forged' }, cookie, '/fresh-link');
    expect(refused.statusCode).toBe(403);
    expect(freshLinkCalls).not.toContain(link.messageId);

    const sent = await post(link, { csrf }, cookie, '/fresh-link');
    expect(sent.statusCode).toBe(200);
    expect(sent.body).toContain(zh.freshSentTitle);
    expect(freshLinkCalls.filter((id) => id === link.messageId)).toHaveLength(1);

    // Without a fresh-link sender the page explains instead of offering a button.
    const bare = await buildApp({ freshLink: undefined });
    const plain = await bare.inject({ method: 'GET', url: `/r/${link.token}` });
    expect(plain.statusCode).toBe(410);
    expect(plain.body).not.toContain('<form');
    expect(plain.body).toContain('Example Shop');
  });

  it('answers a refused fresh link with a page saying when to ask again, never an error', async () => {
    const link = await openLink();
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() - 1000)} where id = ${link.messageId}`,
    );
    const quiet = await buildApp({
      freshLink: async () => ({
        kind: 'quiet_hours',
        until: new Date('2026-11-26T00:00:00Z'),
        timezone: 'Asia/Shanghai',
      }),
    });
    const form = await open(link, quiet);
    const later = await post(link, { csrf: form.csrf }, form.cookie, '/fresh-link', quiet);
    expect(later.statusCode).toBe(200);
    expect(later.body).toContain(zh.freshQuietTitle);
    // 08:00 in Shanghai, in the page's (the customer's) language.
    expect(later.body).toMatch(/08:00/);

    const capped = await buildApp({ freshLink: async () => ({ kind: 'daily_limit' }) });
    const again = await open(link, capped);
    const tomorrow = await post(link, { csrf: again.csrf }, again.cookie, '/fresh-link', capped);
    expect(tomorrow.statusCode).toBe(200);
    expect(tomorrow.body).toContain(zh.freshDailyLimitTitle);
    expect(tomorrow.body).toContain(zh.freshDailyLimitText);
  });

  it('refuses a POST without, or with a wrong, CSRF token with 403 and changes nothing', async () => {
    const link = await openLink();
    const other = await openLink();
    const { cookie, csrf } = await open(link);
    const otherForm = await open(other);
    const before = await snapshot(link);
    const fields = { email: 'new@example.com', phone: '+8613900139000', method: 'alipay' };
    const attempts: Array<[string, Record<string, string>, string | undefined]> = [
      ['no token, no cookie', fields, undefined],
      ['no token', fields, cookie],
      ['no cookie', { ...fields, csrf }, undefined],
      ['wrong token', { ...fields, csrf: `${csrf.slice(0, -2)}xx` }, cookie],
      ["another link's token and cookie", { ...fields, csrf: otherForm.csrf }, otherForm.cookie],
      ['a cookie from another browser', { ...fields, csrf }, 'recoup_csrf=AAAAAAAAAAAAAAAAAAAAAA'],
    ];
    for (const [what, form, withCookie] of attempts) {
      const response = await post(link, form, withCookie);
      expect(response.statusCode, what).toBe(403);
      expect(response.body).toContain(en.forbiddenTitle);
    }
    expect(await snapshot(link)).toEqual(before);
  });

  it('re-renders the form with inline errors for a bad email or phone, keeping the input, and changes nothing', async () => {
    const link = await openLink();
    const { cookie, csrf } = await open(link);
    const before = await snapshot(link);
    const response = await post(link, { csrf, email: 'not-an-email"><b>', phone: '12', method: 'alipay' }, cookie);
    expect(response.statusCode).toBe(400);
    const html = response.body;
    expect(html).toContain(zh.errorSummary);
    expect(html).toMatch(/id="email"[^>]*aria-invalid="true"/);
    expect(html).toContain(`<p class="field-error" id="email-error">${zh.emailInvalid}</p>`);
    expect(html).toMatch(/id="phone"[^>]*aria-invalid="true"/);
    expect(html).toContain('id="phone-error"');
    expect(html).toContain('value="not-an-email&quot;&gt;&lt;b&gt;"');
    expect(html).toContain('value="12"');
    expect(html).toContain('<input type="radio" name="method" value="alipay" checked>');
    expect(await snapshot(link)).toEqual(before);

    const unknownMethod = await post(link, { csrf, email: '', phone: '', method: 'bitcoin' }, cookie);
    expect(unknownMethod.statusCode).toBe(400);
    expect(unknownMethod.body).toContain('id="method-error"');
    expect(await snapshot(link)).toEqual(before);
  });

  it('stores a corrected phone in E.164 with an audit entry, then redirects to the sandbox checkout', async () => {
    const link = await openLink();
    // The email on file typed otherwise is the same address: stored normalised, not a change.
    const response = await submit(link, { email: ' Li@Example.COM ', phone: '139 0013 9000', method: 'alipay' });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toMatch(new RegExp(`^${publicUrl}/sandbox/checkout/sbx_[0-9a-f]{24}$`));
    const [customer] = await rows<{ phone: string; email: string }>(
      database.db,
      sql`select phone, email from customers where id = ${link.customerId}`,
    );
    expect(customer).toEqual({ phone: '+8613900139000', email: 'li@example.com' });
    const audit = await rows<{ action: string; actor: string; before: unknown; after: unknown }>(
      database.db,
      sql`select action, actor, before, after from audit_log where subject = ${`customer:${link.customerId}`}`,
    );
    expect(audit).toEqual([
      {
        action: 'contact.confirmed',
        actor: `customer:${link.customerId}`,
        before: { phone: '+8613800138000' },
        after: { phone: '+8613900139000' },
      },
    ]);
    const [attempt] = await attemptsOf(link);
    const [click] = await rows<{ id: string }>(
      database.db,
      sql`select id from clicks where message_id = ${link.messageId}`,
    );
    expect(attempt).toMatchObject({ method: 'alipay', status: 'open', amount: '12900', click_id: click?.id });
  });

  it('makes one attempt and one sandbox payment for a double submit, sequential or concurrent', async () => {
    const link = await openLink();
    const { cookie, csrf } = await open(link);
    const fields = { csrf, email: '', phone: '', method: 'card' };
    const first = await post(link, fields, cookie);
    const second = await post(link, fields, cookie);
    expect(first.statusCode).toBe(303);
    expect(second.headers.location).toBe(first.headers.location);
    expect(await attemptsOf(link)).toHaveLength(1);
    expect(store.forOrder(link.orderId)).toHaveLength(1);

    const racing = await openLink();
    const form = await open(racing);
    const both = await Promise.all(
      [1, 2, 3].map(() => post(racing, { csrf: form.csrf, email: '', phone: '', method: 'alipay' }, form.cookie)),
    );
    expect(both.map((r) => r.statusCode)).toEqual([303, 303, 303]);
    expect(new Set(both.map((r) => r.headers.location)).size).toBe(1);
    expect(await attemptsOf(racing)).toHaveLength(1);
    expect(store.forOrder(racing.orderId)).toHaveLength(1);
  });

  it('sends WeChat Pay to a QR page that polls, and moves to success once the sandbox is paid', async () => {
    const link = await openLink();
    const response = await submit(link, { method: 'wechat_pay' });
    expect(response.statusCode).toBe(303);
    const location = String(response.headers.location);
    const match = new RegExp(`^/r/${link.token}/pay/(att_[0-9a-f]{24})$`).exec(location);
    expect(match).not.toBeNull();
    const attemptId = match![1]!;

    const qr = await app.inject({ method: 'GET', url: location });
    expect(qr.statusCode).toBe(200);
    expect(qr.body).toContain(zh.qrTitle);
    const image = /<img src="data:image\/svg\+xml;base64,([A-Za-z0-9+/&#x3D;]+)" alt="([^"]+)"/.exec(qr.body);
    expect(image).not.toBeNull();
    const svg = Buffer.from(image![1]!.replaceAll('&#x3D;', '='), 'base64').toString('utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('<path');
    expect(qr.body).toMatch(/<script src="\/assets\/retry\.js\?v&#x3D;[\w-]+" defer><\/script>/);
    expect(qr.body).toContain(`data-poll-url="/r/${link.token}/status/${attemptId}"`);
    expect(qr.body).toContain(`href="/r/${link.token}/done?attempt&#x3D;${attemptId}"`);
    expect(qr.body).toContain(formatAmount(12900, 'CNY', 'zh-CN'));

    const status = () => app.inject({ method: 'GET', url: `/r/${link.token}/status/${attemptId}` });
    const open1 = await status();
    expect(open1.statusCode).toBe(200);
    expect(open1.headers['cache-control']).toBe('no-store');
    expect(open1.json()).toEqual({ status: 'open' });

    // "I have paid — check" before paying: the QR page again, saying nothing arrived yet.
    const early = await app.inject({ method: 'GET', url: `/r/${link.token}/done?attempt=${attemptId}` });
    expect(early.statusCode).toBe(200);
    expect(early.body).toContain(zh.qrNotYet);

    const [payment] = store.forOrder(link.orderId);
    await sandbox.complete(payment!.id, { type: 'succeed' });
    expect((await status()).json()).toEqual({ status: 'succeeded' });
    const [order] = await rows<{ status: string }>(
      database.db,
      sql`select status from orders where id = ${link.orderId}`,
    );
    expect(order?.status).toBe('paid');

    const done = await app.inject({ method: 'GET', url: `/r/${link.token}/done?attempt=${attemptId}` });
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain(zh.successText.replace('{amount}', formatAmount(12900, 'CNY', 'zh-CN')));

    // The link now says "already paid"; a POST changes nothing.
    const again = await open(link);
    expect(again.response.statusCode).toBe(200);
    expect(again.response.body).toContain(zh.completedTitle);

    // Another link's token cannot see this attempt.
    const other = await openLink();
    const foreign = await app.inject({ method: 'GET', url: `/r/${other.token}/status/${attemptId}` });
    expect(foreign.statusCode).toBe(404);
    expect(foreign.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(foreign.json()).toMatchObject({ status: 404 });
    const foreignPage = await app.inject({ method: 'GET', url: `/r/${other.token}/pay/${attemptId}` });
    expect(foreignPage.statusCode).toBe(404);
  });

  it('shows "payment failed, try another method" after a decline on the gateway page', async () => {
    const link = await openLink();
    const response = await submit(link, { method: 'alipay' });
    const paymentId = String(response.headers.location).split('/').at(-1)!;
    const [attempt] = await attemptsOf(link);
    await sandbox.complete(paymentId, { type: 'decline', code: 'ACQ.BUYER_ENABLE_STATUS_FORBID' });
    const back = await app.inject({
      method: 'GET',
      url: `/r/${link.token}/return?attempt=${attempt!.id}&payment=${paymentId}`,
    });
    expect(back.statusCode).toBe(200);
    expect(back.body).toContain(zh.failedTitle);
    expect(back.body).toContain(zh.reasons.account_frozen);
    // Another method, the next in a Chinese customer's order: WeChat Pay.
    expect(back.body).toContain('<input type="radio" name="method" value="wechat_pay" checked>');
    expect(back.body).toContain('<input type="radio" name="method" value="alipay">');
    expect(back.body).toMatch(/<input type="hidden" name="csrf" value="[\w-]{43}">/);
    expect((await attemptsOf(link))[0]?.status).toBe('failed');
  });

  it('says the payment service is briefly unavailable (not a 5xx) when the gateway is down', async () => {
    const link = await openLink();
    gateway.down = true;
    try {
      const response = await submit(link, { method: 'alipay' });
      expect(response.statusCode).toBe(200);
      expect(response.body).toContain(zh.unavailable);
      expect(response.body).toContain('<input type="radio" name="method" value="alipay" checked>');
    } finally {
      gateway.down = false;
    }
    const retried = await submit(link, { method: 'alipay' });
    expect(retried.statusCode).toBe(303);
  });

  it('shows an expired coupon plainly, with the total without its discount, and charges exactly that', async () => {
    const coupon = {
      code: 'SAVE10',
      discount_amount: 1000,
      expires_at: new Date(clock.now().getTime() - 3_600_000).toISOString(),
    };
    const link = await openLink({ coupon }, {}, { locale: 'en' });
    const total = formatAmount(13900, 'CNY', 'en');
    const { response } = await open(link);
    expect(response.body).toContain(
      en.couponExpired
        .replace('{code}', 'SAVE10')
        .replace('{discount}', formatAmount(1000, 'CNY', 'en'))
        .replace('{total}', total),
    );
    expect(response.body).toMatch(
      new RegExp(`<div class="total"><dt>${en.total}</dt><dd>${escapeRe(total)}</dd></div>`),
    );
    expect(response.body).toContain(en.payButton.replace('{amount}', total));

    const paid = await submit(link, { method: 'alipay' });
    expect(paid.statusCode).toBe(303);
    expect((await attemptsOf(link))[0]?.amount).toBe('13900');
    expect(store.forOrder(link.orderId)[0]?.amount).toBe(13900);
  });

  it('says so when the order was cancelled', async () => {
    const link = await openLink();
    const base = makeEvent({ type: 'order.cancelled', occurred_at: clock.now().toISOString(), payment: null });
    const cancelled = { ...base.order, id: link.orderId, customer: { ...base.order.customer, id: link.customerId } };
    await applyEvent(intake, parseEvent({ ...base, order: cancelled }), clock.now());
    const response = await app.inject({ method: 'GET', url: `/r/${link.token}` });
    expect(response.statusCode).toBe(410);
    expect(response.body).toContain(zh.closedTitle);
  });

  it('sends every page with a strict CSP, no referrer, no caching and a Lax httpOnly CSRF cookie', async () => {
    const link = await openLink();
    const { response } = await open(link);
    expect(response.headers['content-security-policy']).toBe(strict);
    expect(response.headers['referrer-policy']).toBe('no-referrer');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['x-frame-options']).toBe('DENY');
    expect(response.headers['cache-control']).toBe('no-store');
    const cookie = String(response.headers['set-cookie']);
    expect(cookie).toMatch(/^recoup_csrf=[\w-]{22}; Path=\/r\/; HttpOnly; SameSite=Lax$/);
    // Secure when the customer is on the https public URL (behind a TLS-terminating proxy).
    const viaProxy = await app.inject({
      method: 'GET',
      url: `/r/${link.token}`,
      headers: { host: 'pay.example-shop.com' },
    });
    expect(String(viaProxy.headers['set-cookie'])).toMatch(/; Secure; SameSite=Lax$/);
    // A browser that has the cookie keeps it: open tabs stay valid.
    const again = await app.inject({
      method: 'GET',
      url: `/r/${link.token}`,
      headers: { cookie: cookie.split(';')[0]! },
    });
    expect(again.headers['set-cookie']).toBeUndefined();
    expect(csrfField(again.body)).toBe(csrfField(response.body));

    const asset = await app.inject({ method: 'GET', url: '/assets/retry.js' });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(asset.headers['cache-control']).toBe('public, max-age=86400');
    const cached = await app.inject({
      method: 'GET',
      url: '/assets/retry.js',
      headers: { 'if-none-match': String(asset.headers.etag) },
    });
    expect(cached.statusCode).toBe(304);
    expect((await app.inject({ method: 'GET', url: '/assets/recoup.css' })).body).toContain('system-ui');
  });

  it('opens the card page with a CSP relaxed for Stripe.js there only', async () => {
    const stripeApp = await buildApp({
      retry: {
        gateways: new PaymentGateways([clientSecretGateway], {
          card: 'stripe',
          alipay: 'stripe',
          wechat_pay: 'stripe',
        }),
      },
    });
    const link = await openLink();
    const { cookie, csrf } = await open(link, stripeApp);
    const response = await post(link, { csrf, email: '', phone: '', method: 'card' }, cookie, '', stripeApp);
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toMatch(new RegExp(`^/r/${link.token}/card/att_[0-9a-f]{24}$`));
    const card = await stripeApp.inject({ method: 'GET', url: String(response.headers.location) });
    expect(card.statusCode).toBe(200);
    const csp = String(card.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self' https://js.stripe.com");
    expect(csp).toContain('frame-src https://js.stripe.com');
    expect(csp).toContain("connect-src 'self' https://api.stripe.com");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(card.body).toContain('<script src="https://js.stripe.com/v3/"></script>');
    expect(card.body).toContain(`data-client-secret="pi_${link.orderId}_secret_x"`);
    expect(card.headers['cache-control']).toBe('no-store');
  });

  it('limits requests per IP with a friendly 429 page, and escapes markup in every shop-supplied text', async () => {
    const limited = await buildApp({
      rateLimit: { max: 3, timeWindowMs: 60_000 },
      retry: { shopName: `Shop ${evil}` },
    });
    const link = await openLink({ description: `Sofa ${evil}` }, {}, { name: `Li ${evil}` });
    const first = await limited.inject({ method: 'GET', url: `/r/${link.token}`, remoteAddress: '203.0.113.7' });
    expect(first.statusCode).toBe(200);
    expect(first.body).not.toContain(evil);
    expect(first.body).toContain('Sofa &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(first.body).toContain('Shop &lt;script&gt;alert(1)&lt;/script&gt;');
    for (let i = 0; i < 2; i += 1) {
      expect(
        (await limited.inject({ method: 'GET', url: `/r/${link.token}`, remoteAddress: '203.0.113.7' })).statusCode,
      ).toBe(200);
    }
    const blocked = await limited.inject({
      method: 'GET',
      url: `/r/${link.token}`,
      remoteAddress: '203.0.113.7',
      headers: { 'accept-language': 'zh-CN,zh;q=0.9' },
    });
    expect(blocked.statusCode).toBe(429);
    expect(blocked.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(blocked.headers['retry-after']).toBeDefined();
    expect(blocked.body).toContain(zh.rateLimitedTitle);
    expect(blocked.body).not.toContain(evil);
    // Another customer is not affected.
    expect(
      (await limited.inject({ method: 'GET', url: `/r/${link.token}`, remoteAddress: '203.0.113.8' })).statusCode,
    ).toBe(200);
  });
});

function csrfCookie(response: LightMyRequestResponse): string | undefined {
  const header = response.headers['set-cookie'];
  const all = Array.isArray(header) ? header : header ? [header] : [];
  return all.find((c) => c.startsWith('recoup_csrf='))?.split(';')[0];
}

function csrfField(html: string): string {
  return /<input type="hidden" name="csrf" value="([^"]+)">/.exec(html)?.[1] ?? '';
}

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('retry pages in the real service', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      cadences: 'name: default\nexpire_after: 1h\nsteps:\n  - { after: 1s, channel: sms, template: nudge }\n',
    });
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** The retry-link token of each SMS in the outbox not seen before, waiting for `count` of them. */
  async function smsTokens(count: number): Promise<Array<{ to: string; token: string }>> {
    return waitFor(
      () => {
        const files = fs.existsSync(svc.outboxDir)
          ? fs.readdirSync(svc.outboxDir).filter((f) => f.endsWith('.sms.json'))
          : [];
        if (files.length < count) return undefined;
        return files
          .map(
            (f) =>
              JSON.parse(fs.readFileSync(path.join(svc.outboxDir, f), 'utf8')) as {
                to: string;
                body: string;
                created_at: string;
              },
          )
          .sort((a, b) => a.created_at.localeCompare(b.created_at))
          .map((sms) => ({ to: sms.to, token: /\/r\/([A-Za-z0-9_-]{22})/.exec(sms.body)?.[1] ?? '' }));
      },
      { what: `${count} SMS` },
    );
  }

  async function openPage(token: string) {
    const response = await fetch(`${svc.url}/r/${token}`, { redirect: 'manual' });
    const cookie =
      response.headers
        .getSetCookie()
        .find((c) => c.startsWith('recoup_csrf='))
        ?.split(';')[0] ?? '';
    const html = await response.text();
    return { response, html, cookie, csrf: csrfField(html) };
  }

  function postForm(url: string, fields: Record<string, string>, cookie = '') {
    return fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
      body: new URLSearchParams(fields).toString(),
    });
  }

  it('sends a fresh link for an expired one, then takes the payment through the sandbox to the success page', async () => {
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    const [first] = await smsTokens(1);

    const page = await openPage(first!.token);
    expect(page.response.status).toBe(200);
    expect(page.response.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.html).toContain('<html lang="zh-CN">');

    await svc.database.db.execute(
      sql`update messages set link_expires_at = now() - interval '1 second' where link_token = ${first!.token}`,
    );
    const expired = await openPage(first!.token);
    expect(expired.response.status).toBe(410);
    const fresh = await postForm(`${svc.url}/r/${first!.token}/fresh-link`, { csrf: expired.csrf }, expired.cookie);
    expect(fresh.status).toBe(200);
    expect(await fresh.text()).toContain(pageStrings['zh-CN'].freshSentTitle);
    const [, second] = await smsTokens(2);
    expect(second).toMatchObject({ to: '+8613800138000' });
    expect(second!.token).not.toBe(first!.token);

    const form = await openPage(second!.token);
    expect(form.response.status).toBe(200);
    const submitted = await postForm(
      `${svc.url}/r/${second!.token}`,
      { csrf: form.csrf, email: '', phone: '+86 139 0013 9000', method: 'alipay' },
      form.cookie,
    );
    expect(submitted.status).toBe(303);
    const checkout = new URL(String(submitted.headers.get('location')));
    expect(checkout.origin).toBe('https://pay.example-shop.com');
    expect(checkout.pathname).toMatch(/^\/sandbox\/checkout\/sbx_/);

    const hosted = await (await fetch(`${svc.url}${checkout.pathname}`)).text();
    const sandboxToken = /name="token" value="([^"]+)"/.exec(hosted)?.[1] ?? '';
    const paid = await postForm(`${svc.url}${checkout.pathname}`, {
      token: sandboxToken.replaceAll('&#61;', '='),
      action: 'succeed',
    });
    expect(paid.status).toBe(303);
    const back = new URL(String(paid.headers.get('location')));
    expect(back.pathname).toBe(`/r/${second!.token}/return`);

    const done = await fetch(`${svc.url}${back.pathname}${back.search}`);
    expect(done.status).toBe(200);
    expect(await done.text()).toContain(
      pageStrings['zh-CN'].successText.replace('{amount}', formatAmount(12900, 'CNY', 'zh-CN')),
    );
    const order = await svc.getOrder(failed.order.id);
    expect(order.recovery).toMatchObject({ state: 'recovered' });
  });
});
