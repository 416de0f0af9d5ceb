import fs from 'node:fs';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import Handlebars from 'handlebars';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { newId } from '../../src/platform/ids.js';
import type { MessageContext } from '../../src/messages/message-context.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { newRetryToken } from '../../src/retry-links/retry-token.js';
import { makeEvent, signIn, startTestService, type TestService } from '../helpers/service.js';

/**
 * Injection strings in every free-text field (customer name, order description, coupon code,
 * failure code and message, shop name) are data: stored in Postgres exactly as sent, and rendered inert
 * in the retry page, the reminder emails and the console order page. "Inert" is checked
 * structurally: the page's tags and attributes are exactly those of the same page rendered with
 * plain text, so no value opened a tag or broke out of an attribute, and the value shows escaped.
 */
const runs = Number(process.env.PROPERTY_RUNS ?? 1_000);
const httpRuns = Math.max(20, Math.ceil(runs / 5));
const evilShop = `Shop "<script>alert('s')</script>' {{shop}} \u202e`;
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1h, channel: sms, template: nudge }
`;

const injections = [
  '<script>alert(1)</script>',
  '<SCRIPT SRC=//x.example/x.js></SCRIPT>',
  '"><img src=x onerror=alert(1)>',
  "'><svg onload=alert(1)>",
  '" autofocus onfocus="alert(1)',
  "' onmouseover='alert(1)",
  '</textarea></title></style><script>alert(1)</script>',
  '<!-- x --> <![CDATA[ x ]]>',
  'javascript:alert(1)',
  '`${alert(1)}`',
  "'; drop table orders; --",
  "Robert'); DELETE FROM customers; --",
  '" or 1=1 --',
  "\\'; select pg_sleep(0); --",
  "$1 $$ $tag$ E'\\x00'",
  '{{constructor.constructor("return process")()}}',
  '{{{shop.name}}} {{> layout}} {{#each this}}x{{/each}}',
  '&lt;script&gt; &amp; &#x3C;',
  '\u202eevil\u202c \u200b\ufeff Ａ＜script＞',
  '李雷 <b>粗体</b> 🙂👍🏽',
];
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Free text as a customer or shop could send it: injection, markup, odd Unicode (never NUL or lone surrogates). */
const freeText = (max: number) =>
  fc
    .oneof(
      fc.constantFrom(...injections),
      fc.tuple(fc.constantFrom(...injections), fc.string({ unit: 'grapheme', maxLength: 20 })).map(([a, b]) => a + b),
      fc
        .array(fc.constantFrom('<', '>', '"', "'", '&', '=', '`', '{{', '}}', '/', ' ', 'a', '\n'), { maxLength: 30 })
        .map((parts) => parts.join('')),
      fc.string({ unit: 'grapheme', maxLength: 60 }),
    )
    .map((s) => s.slice(0, max))
    .filter((s) => s.trim() !== '' && !s.includes('\u0000') && !loneSurrogate.test(s));

/** The markup of a page without its text: each tag with its attribute values blanked. */
function skeleton(html: string): string[] {
  const tags = html.replace(/"[^"]*"/g, '""').match(/<[^>]*>/g) ?? [];
  return tags;
}

function expectInert(html: string, baseline: string, values: string[]): void {
  expect(skeleton(html)).toEqual(skeleton(baseline));
  expect((html.match(/<script/gi) ?? []).length).toBe((baseline.match(/<script/gi) ?? []).length);
  for (const value of values) expect(html).toContain(Handlebars.escapeExpression(value));
}

describe('free text in emails', () => {
  const renderer = TemplateRenderer.load('templates');
  const templates = ['nudge', 'last-call', 'alternative-methods', 'gateway-restored'].filter((t) =>
    fs.existsSync(`templates/${t}`),
  );

  function context(shop: string, name: string, description: string, coupon: string): MessageContext {
    return {
      shop: { name: shop },
      customer: { name },
      order: { id: 'ord_1', description, amount: 12900, currency: 'CNY', couponCode: coupon },
      failureCategory: 'insufficient_funds',
      offerMethods: ['alipay', 'wechat_pay', 'card'],
      retryUrl: 'https://pay.example-shop.com/r/AbCdEfGhIjKlMnOpQrStUv',
      unsubscribeUrl: 'https://pay.example-shop.com/u/abc?c=1&t=xyz',
    };
  }

  it('renders every template and locale with the values escaped and the markup unchanged', () => {
    expect(templates.length).toBeGreaterThan(0);
    const plain = context('Plain Shop', 'Plain Name', 'Plain description', 'PLAINCODE');
    fc.assert(
      fc.property(
        fc.constantFrom(...templates),
        fc.constantFrom('en', 'zh-CN'),
        freeText(100),
        freeText(200),
        freeText(500),
        freeText(100),
        (template, locale, shop, name, description, coupon) => {
          const baseline = renderer.renderEmail(template, locale, plain);
          const email = renderer.renderEmail(template, locale, context(shop, name, description, coupon));
          // Only the values the template shows: the baseline tells which ones it does.
          const shown = [
            [plain.shop.name, shop],
            [plain.customer.name, name],
            [plain.order.description, description],
            ['PLAINCODE', coupon],
          ]
            .filter(([p]) => baseline.html.includes(p!))
            // Emails show customer and shop text on one line.
            .map(([, v]) => v!.replace(/\s+/g, ' ').trim());
          expectInert(email.html, baseline.html, shown);
        },
      ),
      { numRuns: runs },
    );
  });
});

describe('free text through the service: stored exactly, inert in the retry page and the console', () => {
  let svc: TestService;
  let session: string;
  const inject = (options: InjectOptions) => {
    const app = svc.service.app;
    if (!app) throw new Error('no HTTP role');
    return app.inject(options);
  };

  beforeAll(async () => {
    svc = await startTestService({
      cadences: cadence,
      roles: { http: true, worker: false },
      env: { SHOP_NAME: evilShop, RETRY_PAGE_RATE_LIMIT: '1000000' },
    });
    session = (await signIn(svc, ['ops'])).cookie;
  }, 60_000);
  afterAll(async () => {
    await svc?.close();
  });

  interface Texts {
    name: string;
    description: string;
    coupon: string;
    failureMessage: string;
    failureCode: string;
  }

  /** Sends an order with these texts, gives it a live retry link; answers its pages. */
  async function orderWith(texts: Texts) {
    // A second in the past: the timeline orders its entries by time, and a payment attempt in the same
    // millisecond as the recovery's start would swap places with it and change the page's layout.
    const event = makeEvent(
      { occurred_at: new Date(Date.now() - 1_000).toISOString() },
      { description: texts.description, coupon_code: texts.coupon },
    );
    event.order.customer.name = texts.name;
    event.payment.failure_message = texts.failureMessage;
    event.payment.failure_code = texts.failureCode;
    const response = await svc.post(event);
    expect(response.status).toBe(202);
    const orderId = event.order.id;
    const [stored] = await rows<{
      description: string;
      coupon_code: string;
      last_failure_message: string;
      last_failure_code: string;
      name: string;
      recovery_id: string;
      customer_id: string;
    }>(
      svc.database.db,
      sql`select o.description, o.coupon_code, o.last_failure_message, o.last_failure_code, c.name, r.id as recovery_id, c.id as customer_id
          from orders o join customers c on c.id = o.customer_id join recoveries r on r.order_id = o.id
          where o.id = ${orderId}`,
    );
    if (!stored) throw new Error('order not stored');
    const token = newRetryToken();
    await svc.database.db.execute(
      // Sent 5 s on: after the event for the shop, whose entry is placed a second after the recovery's
      // start, however long this took to get here (the two orders' pages must have the same layout).
      sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                link_token, link_expires_at, attempts, sent_at)
          values (${newId('msg')}, ${stored.recovery_id}, ${orderId}, ${stored.customer_id}, 0, 'sms', 'nudge', 'sent',
                  '+8613800138000', ${token}, ${new Date(Date.now() + 3_600_000)}, 1, ${new Date(Date.now() + 5_000)})`,
    );
    const page = await inject({ method: 'GET', url: `/r/${token}`, headers: { 'accept-language': 'en' } });
    expect(page.statusCode).toBe(200);
    const consolePage = await inject({
      method: 'GET',
      url: `/console/orders/${encodeURIComponent(orderId)}`,
      headers: { accept: 'text/html', cookie: session },
    });
    expect(consolePage.statusCode).toBe(200);
    return { stored, page: page.body, console: consolePage.body, orderId };
  }

  it('round-trips every value through Postgres and renders it inert', async () => {
    const plainTexts: Texts = {
      name: 'Plain Name',
      description: 'Plain description',
      coupon: 'PLAINCODE',
      failureMessage: 'Plain failure',
      failureCode: 'plain_fail_code',
    };
    const plain = await orderWith(plainTexts);
    const consoleShown = (Object.keys(plainTexts) as Array<keyof Texts>).filter((k) =>
      plain.console.includes(plainTexts[k]),
    );
    const pageShown = (Object.keys(plainTexts) as Array<keyof Texts>).filter((k) => plain.page.includes(plainTexts[k]));
    // The shop name, from SHOP_NAME, is on the retry page, escaped.
    expect(plain.page).toContain(Handlebars.escapeExpression(evilShop));
    expect(pageShown).toEqual(expect.arrayContaining(['description', 'coupon']));
    expect(consoleShown).toEqual(expect.arrayContaining(['name', 'description', 'coupon', 'failureCode']));
    // Order and customer ids differ from order to order: blank them out of the baselines.
    const unId = (html: string, orderId: string) =>
      html
        .split(orderId)
        .join('ORDER')
        .replace(/cus_[\w-]+/g, 'CUS');

    await fc.assert(
      fc.asyncProperty(
        fc.record({
          name: freeText(200),
          description: freeText(500),
          coupon: freeText(100),
          failureMessage: freeText(1000),
          failureCode: freeText(100),
        }),
        async (texts) => {
          const got = await orderWith(texts);
          expect(got.stored).toMatchObject({
            name: texts.name,
            description: texts.description,
            coupon_code: texts.coupon,
            last_failure_message: texts.failureMessage,
            last_failure_code: texts.failureCode,
          });
          expectInert(
            got.page,
            plain.page,
            pageShown.map((k) => texts[k]),
          );
          expectInert(
            unId(got.console, got.orderId),
            unId(plain.console, plain.orderId),
            consoleShown.map((k) => texts[k]),
          );
        },
      ),
      { numRuns: httpRuns },
    );
  }, 120_000);
});
