import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { loadRetryLink, recordClick } from '../../src/payments/retry-session.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// Link scanners (mail security gateways, chat unfurlers, mail-client prefetch) fetch every link
// they see. Only what a person's browser does on the page counts as a click: the page's script
// reporting it, or any form the page posts.

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
`;
const shopPage = 'https://shop.example.com/checkout/order-pay/1234/?pay_for_order=true&key=wc_order_1234';
const scanners = [
  'Mozilla/5.0 (compatible; Microsoft Office Protocol Discovery)',
  'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
];

interface Link {
  token: string;
  orderId: string;
  messageId: string;
}

describe('retry-link clicks', () => {
  let svc: TestService;
  let app: FastifyInstance;

  beforeAll(async () => {
    svc = await startTestService({
      cadences: cadence,
      // WooCommerce orders are paid on WooCommerce's own page; every other order on recoup's.
      env: { WOOCOMMERCE_WEBHOOK_SECRET: 'wc-secret-for-tests', WOOCOMMERCE_LINK_MODE: 'platform' },
    });
    if (!svc.service.app) throw new Error('no HTTP role');
    app = svc.service.app;
  });
  afterAll(async () => {
    await svc?.close();
  });

  async function reminderLink(order: Record<string, unknown> = {}): Promise<Link> {
    const event = makeEvent({}, order);
    expect((await svc.post(event)).status).toBe(202);
    return waitFor(
      async () => {
        const [m] = await rows<{ id: string; link_token: string; status: string }>(
          svc.database.db,
          sql`select id, link_token, status from messages where order_id = ${event.order.id} and step = 0`,
        );
        return m?.status === 'sent' ? { token: m.link_token, orderId: event.order.id, messageId: m.id } : undefined;
      },
      { what: 'the first reminder' },
    );
  }

  async function clicksOf(link: Link) {
    return rows<{ id: string; user_agent: string | null }>(
      svc.database.db,
      sql`select id, user_agent from clicks where message_id = ${link.messageId}`,
    );
  }

  /** What a browser gets from opening the link: the CSRF cookie and the page's token, and the page. */
  async function open(link: Link, userAgent = scanners[2]!) {
    const response = await app.inject({ method: 'GET', url: `/r/${link.token}`, headers: { 'user-agent': userAgent } });
    const cookie = /recoup_csrf=[^;]+/.exec(String(response.headers['set-cookie']))?.[0];
    const csrf = /name="csrf" value="([^"]+)"/.exec(response.body)?.[1];
    return { response, cookie, csrf };
  }

  function post(path: string, fields: Record<string, string>, cookie: string | undefined, userAgent?: string) {
    return app.inject({
      method: 'POST',
      url: path,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(cookie ? { cookie } : {}),
        ...(userAgent ? { 'user-agent': userAgent } : {}),
      },
      payload: new URLSearchParams(fields).toString(),
    });
  }

  it('a plain GET of the link (a scanner, an unfurl, a prefetch) records no click; HEAD neither', async () => {
    const link = await reminderLink();
    for (const userAgent of scanners) {
      const { response } = await open(link, userAgent);
      expect(response.statusCode).toBe(200);
      expect(response.body).toContain('<form method="post"');
    }
    expect((await app.inject({ method: 'HEAD', url: `/r/${link.token}` })).statusCode).toBe(200);
    expect(await clicksOf(link)).toEqual([]);
  });

  it("the page's own script reports the click: one per message, with the browser's user agent", async () => {
    const link = await reminderLink();
    const { response, cookie, csrf } = await open(link);
    // The page loads recoup's script and names where it reports to.
    expect(response.body).toMatch(/<script src="\/assets\/retry\.js\?v&#x3D;[\w-]+" defer><\/script>/);
    expect(response.body).toContain(`data-click-url="/r/${link.token}/click"`);
    expect(await clicksOf(link)).toEqual([]);

    // Two tabs report at once: one click.
    const second = await open(link);
    const both = await Promise.all([
      post(`/r/${link.token}/click`, { csrf: csrf! }, cookie, 'Phone/1.0'),
      post(`/r/${link.token}/click`, { csrf: second.csrf! }, second.cookie, 'Phone/1.0'),
    ]);
    expect(both.map((r) => [r.statusCode, r.body])).toEqual([
      [204, ''],
      [204, ''],
    ]);
    const clicks = await clicksOf(link);
    expect(clicks).toEqual([{ id: expect.stringMatching(/^clk_/), user_agent: 'Phone/1.0' }]);

    // The page opened again later: still that one click.
    const later = await open(link);
    expect((await post(`/r/${link.token}/click`, { csrf: later.csrf! }, later.cookie, 'Tablet/2.0')).statusCode).toBe(
      204,
    );
    expect(await clicksOf(link)).toEqual(clicks);
  });

  it('records one click for a message however many reports arrive at once', async () => {
    const link = await reminderLink();
    const retry = svc.service.payments!;
    const state = await loadRetryLink(retry, link.token);
    if (state.kind !== 'open') throw new Error(`the link is ${state.kind}`);
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => recordClick(retry, state.view, `Tab/${i}`)));
    const clicks = await clicksOf(link);
    expect(clicks).toHaveLength(1);
    expect(new Set(ids)).toEqual(new Set([clicks[0]?.id]));
  });

  it('refuses a report without the CSRF token of the page it came from (problem+json) and counts nothing', async () => {
    const link = await reminderLink();
    const { cookie, csrf } = await open(link);
    const other = await open(await reminderLink());
    const attempts = [
      post(`/r/${link.token}/click`, {}, cookie),
      post(`/r/${link.token}/click`, { csrf: csrf! }, undefined),
      post(`/r/${link.token}/click`, { csrf: other.csrf! }, other.cookie),
      post(`/r/${link.token}/click`, { csrf: 'x'.repeat(43) }, cookie),
    ];
    for (const response of await Promise.all(attempts)) {
      expect(response.statusCode).toBe(403);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json()).toMatchObject({ status: 403 });
    }
    expect(await clicksOf(link)).toEqual([]);
  });

  it("without JavaScript, the form's POST is the click, and the payment attempt is credited to it", async () => {
    const link = await reminderLink();
    const { cookie, csrf } = await open(link);
    expect(await clicksOf(link)).toEqual([]);

    // A mistake in the details still re-renders the form: a person was there.
    const mistake = await post(`/r/${link.token}`, { csrf: csrf!, email: 'no', phone: '', method: 'alipay' }, cookie);
    expect(mistake.statusCode).toBe(400);
    const clicks = await clicksOf(link);
    expect(clicks).toHaveLength(1);

    const paying = await post(`/r/${link.token}`, { csrf: csrf!, email: '', phone: '', method: 'alipay' }, cookie);
    expect(paying.statusCode).toBe(303);
    expect(await clicksOf(link)).toEqual(clicks);
    const [attempt] = await rows<{ click_id: string | null }>(
      svc.database.db,
      sql`select click_id from payment_attempts where order_id = ${link.orderId}`,
    );
    expect(attempt?.click_id).toBe(clicks[0]?.id);

    // A refused POST (no CSRF token) is not a click on another link either.
    const other = await reminderLink();
    expect((await post(`/r/${other.token}`, { email: '', phone: '', method: 'alipay' }, cookie)).statusCode).toBe(403);
    expect(await clicksOf(other)).toEqual([]);
  });

  it("an order paid on the shop's own page: the GET shows a page that moves on, and only a person's step counts", async () => {
    const link = await reminderLink({ payment_url: shopPage });
    await svc.database.db.execute(sql`update orders set platform = 'woocommerce' where id = ${link.orderId}`);

    // The scanner sees a page, not a redirect, and no click is recorded.
    const { response, cookie, csrf } = await open(link, scanners[0]);
    expect(response.statusCode).toBe(200);
    expect(response.headers.location).toBeUndefined();
    expect(response.body).toContain(`data-click-url="/r/${link.token}/click"`);
    expect(response.body).toContain(
      `data-continue-url="${shopPage.replaceAll('&', '&amp;').replaceAll('=', '&#x3D;')}"`,
    );
    expect(response.body).toContain(`<form method="post" action="/r/${link.token}/continue"`);
    // Its form may lead on to the shop's page, and nowhere else new.
    expect(response.headers['content-security-policy']).toContain(
      `form-action 'self' https://pay.example-shop.com https://shop.example.com;`,
    );
    expect(await clicksOf(link)).toEqual([]);

    // Without JavaScript the customer presses the button: counted, then on to the shop's page.
    const onward = await post(`/r/${link.token}/continue`, { csrf: csrf! }, cookie, 'Phone/1.0');
    expect(onward.statusCode).toBe(303);
    expect(onward.headers.location).toBe(shopPage);
    const clicks = await clicksOf(link);
    expect(clicks).toEqual([{ id: expect.stringMatching(/^clk_/), user_agent: 'Phone/1.0' }]);

    // With JavaScript the page reports the click itself; either way, one per message.
    expect((await post(`/r/${link.token}/click`, { csrf: csrf! }, cookie)).statusCode).toBe(204);
    expect(await clicksOf(link)).toEqual(clicks);
    // Without the page's token, no step onward and no click.
    const forged = await post(`/r/${link.token}/continue`, {}, cookie);
    expect(forged.statusCode).toBe(403);
  });
});
