import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { simpleParser } from 'mailparser';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startFakeAlipay } from '../helpers/fake-alipay.js';
import { startFakeWechatPay } from '../helpers/fake-wechat-pay.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';
import {
  closeBrowser,
  launchBrowser,
  newMobileContext,
  screenshot,
  watchContext,
  type BrowserWatch,
} from './helpers/browser.js';

// A customer's whole journey in a real (headless) browser on a phone-sized screen: the link in a
// reminder, the retry page, the sandbox's hosted checkout, and back to recoup's success page.

const cadence = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 2s, channel: email, template: alternative-methods, offer_methods: [alipay, wechat_pay, card] }
`;

const description = 'West Lake Longjing tea gift box ×2';
const tokenPattern = '[A-Za-z0-9_-]{22}';
// The expired and unknown link pages answer 410/404 on purpose (Chromium logs such a status as a console error).
const expectedStatusLogs = [
  new RegExp(`^HTTP (404|410) for http://127\\.0\\.0\\.1:\\d+/r/${tokenPattern}$`),
  new RegExp(
    `^console\\.error on [^ ]+/r/${tokenPattern} \\([^ ]+/r/${tokenPattern}\\): Failed to load resource: the server responded with a status of (404|410)`,
  ),
];

// Functions passed to evaluate() run in the browser; the project has no DOM types, so declare what they read.
declare const document: { styleSheets: ArrayLike<{ cssRules: ArrayLike<unknown> }> };
type BrowserImage = { complete: boolean; naturalWidth: number };

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

interface Setup {
  svc: TestService;
  context: BrowserContext;
  watch: BrowserWatch;
}

/**
 * A service of its own (PUBLIC_URL is its own address, so the sandbox's signed webhooks and
 * hosted pages reach it) and a fresh phone context, both closed when the test ends.
 */
async function setup(locale: string, env: Record<string, string> = {}): Promise<Setup> {
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, SHOP_NAME: 'Lotus Tea House', ...env },
  });
  const context = await newMobileContext(browser, { locale });
  onTestFinished(async () => {
    // The browser first: a polling page must not outlive the service it polls.
    await context.close();
    await svc.close();
  });
  return { svc, context, watch: watchContext(context) };
}

function failedOrder(locale: 'en' | 'zh-CN') {
  const event = makeEvent({}, { description, amount: 12900, currency: 'CNY' });
  event.order.customer = { ...event.order.customer, locale };
  return event;
}

/** The first `<messageId><suffix>` file in the outbox (temp files start with a dot). */
async function waitForOutbox(svc: TestService, suffix: '.eml' | '.sms.json', messageId?: string) {
  const name = await waitFor(
    () => {
      let files: string[];
      try {
        files = fs.readdirSync(svc.outboxDir);
      } catch {
        return undefined;
      }
      return files.find((f) => !f.startsWith('.') && f.endsWith(suffix) && (!messageId || f === messageId + suffix));
    },
    { what: `an outbox ${suffix} file` },
  );
  return { messageId: name.slice(0, -suffix.length), file: path.join(svc.outboxDir, name) };
}

function retryLinkIn(text: string, svc: TestService): string {
  const match = new RegExp(`${svc.config.publicUrl.replace(/[.]/g, '\\.')}/r/${tokenPattern}`).exec(text);
  if (!match) throw new Error(`no retry link in:\n${text}`);
  return match[0];
}

async function smsLink(svc: TestService, messageId?: string) {
  const sms = await waitForOutbox(svc, '.sms.json', messageId);
  const body = (JSON.parse(fs.readFileSync(sms.file, 'utf8')) as { body: string }).body;
  return { messageId: sms.messageId, link: retryLinkIn(body, svc) };
}

async function orderState(svc: TestService, orderId: string) {
  const view = await svc.getOrder(orderId);
  return { status: (view.order as { status: string }).status, recovery: view.recovery?.state };
}

async function paymentsOf(svc: TestService, orderId: string) {
  return rows<{
    method: string | null;
    amount: string;
    attribution: string;
    message_id: string | null;
    click_id: string | null;
    click_message_id: string | null;
    duplicate: boolean;
  }>(
    svc.database.db,
    sql`select p.method, p.amount::text as amount, p.attribution, p.message_id, p.click_id,
               c.message_id as click_message_id, p.duplicate
        from payments p left join clicks c on c.id = p.click_id
        where p.order_id = ${orderId}`,
  );
}

describe('retry links in a real browser (mobile)', () => {
  it('Alipay from the email: confirm details, pay on the sandbox, land on success; click and message attributed', async () => {
    const { svc, context, watch } = await setup('zh-CN');
    const event = failedOrder('zh-CN');
    expect((await svc.post(event)).status).toBe(202);

    const email = await waitForOutbox(svc, '.eml');
    const mail = await simpleParser(fs.readFileSync(email.file));
    const link = retryLinkIn(typeof mail.html === 'string' ? mail.html : '', svc);

    const page = await context.newPage();
    const response = await page.goto(link);
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(await page.locator('.summary .description').innerText()).toBe(description);
    expect(await page.locator('.amounts .total dd').innerText()).toContain('129.00');
    expect(await page.getByLabel('电子邮箱').inputValue()).toBe('li@example.com');
    expect(await page.getByLabel('手机号码').inputValue()).toBe('+8613800138000');

    // A national number is read in the country of the number on file.
    await page.getByLabel('手机号码').fill('139 1234 5678');
    await page.getByLabel('支付宝').check();
    await screenshot(page, 'alipay-1-retry-page');
    // The page itself, before any gateway: no errors, and nothing fetched from anywhere but recoup.
    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
    // recoup's own stylesheet loaded and applied under that CSP.
    expect(watch.requests.some((url) => new URL(url).pathname === '/assets/recoup.css')).toBe(true);
    expect(
      await page.evaluate(() => Array.from(document.styleSheets).reduce((n, sheet) => n + sheet.cssRules.length, 0)),
    ).toBeGreaterThan(10);

    await page.getByRole('button', { name: /^支付/ }).click();
    await page.waitForURL(/\/sandbox\/checkout\/sbx_/);
    expect(await page.locator('.summary .amount').innerText()).toContain('129.00');
    await screenshot(page, 'alipay-2-sandbox-page');

    await page.getByRole('button', { name: /^支付 / }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/return\\?attempt=att_`));
    expect(await page.locator('h1').innerText()).toBe('谢谢！');
    expect(await page.locator('main').innerText()).toMatch(/您支付的 .*129\.00 已确认/);
    await screenshot(page, 'alipay-3-success-page');

    expect(await orderState(svc, event.order.id)).toEqual({ status: 'paid', recovery: 'recovered' });
    const payments = await paymentsOf(svc, event.order.id);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({
      method: 'alipay',
      amount: '12900',
      attribution: 'clicked',
      message_id: email.messageId,
      click_id: expect.stringMatching(/^clk_/),
      click_message_id: email.messageId,
      duplicate: false,
    });
    const [customer] = await rows<{ phone: string; email: string }>(
      svc.database.db,
      sql`select phone, email from customers where id = ${event.order.customer.id}`,
    );
    expect(customer).toEqual({ phone: '+8613912345678', email: 'li@example.com' });
    const audit = await rows<{ action: string; before: unknown; after: unknown }>(
      svc.database.db,
      sql`select action, before, after from audit_log where subject = ${`customer:${event.order.customer.id}`}`,
    );
    expect(audit).toEqual([
      { action: 'contact.confirmed', before: { phone: '+8613800138000' }, after: { phone: '+8613912345678' } },
    ]);

    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });

  it('WeChat Pay from the SMS: QR code page, the phone scans and pays, the page moves to success by polling', async () => {
    const { svc, context, watch } = await setup('en-US');
    const event = failedOrder('en');
    expect((await svc.post(event)).status).toBe(202);
    const sms = await smsLink(svc);

    const page = await context.newPage();
    const response = await page.goto(sms.link);
    expect(response?.status()).toBe(200);
    expect(await page.locator('.summary .description').innerText()).toBe(description);
    await page.getByLabel('WeChat Pay').check();
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/pay/att_`));

    const qr = page.getByRole('img', { name: /WeChat Pay QR code/ });
    // Decoded and drawn at a scannable size (not a broken-image icon).
    const image = await qr.evaluate((img) => {
      const { complete, naturalWidth } = img as unknown as BrowserImage;
      return { complete, naturalWidth };
    });
    expect(image.complete).toBe(true);
    expect(image.naturalWidth).toBeGreaterThan(0);
    expect((await qr.boundingBox())?.width).toBeGreaterThanOrEqual(200);
    const src = (await qr.getAttribute('src')) ?? '';
    expect(src).toMatch(/^data:image\/svg\+xml;base64,/);
    const svg = Buffer.from(src.replace(/^data:image\/svg\+xml;base64,/, ''), 'base64').toString('utf8');
    expect(svg).toMatch(/^<svg[\s\S]*<path[\s\S]*<\/svg>\s*$/);
    expect(await page.locator('.summary .amount').innerText()).toContain('129.00');
    await screenshot(page, 'wechat-1-qr-page');

    // The QR page shows no scannable link for non-phone users; the code's payload is in the attempt.
    const [attempt] = await rows<{ payload: string }>(
      svc.database.db,
      sql`select next_action->>'payload' as payload from payment_attempts
          where order_id = ${event.order.id} and status = 'open' and method = 'wechat_pay'`,
    );
    expect(attempt?.payload).toMatch(new RegExp(`^${svc.config.publicUrl}/sandbox/scan/sbx_`));

    // The customer's phone (another device) scans the code and confirms in "WeChat".
    const phone = await newMobileContext(browser, { locale: 'en-US' });
    onTestFinished(() => phone.close());
    const phoneWatch = watchContext(phone);
    const phonePage = await phone.newPage();
    await phonePage.goto(attempt!.payload);
    await phonePage.getByRole('button', { name: 'Simulate scan & pay' }).click();
    await phonePage.waitForURL(new RegExp(`/r/${tokenPattern}/return\\?`));

    // Nobody touches the first page: its polling script takes it to the success page.
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/done\\?attempt=att_`));
    expect(await page.locator('h1').innerText()).toBe('Thank you!');
    expect(await page.locator('main').innerText()).toMatch(/Your payment of .*129\.00 is confirmed/);
    await screenshot(page, 'wechat-2-success-page');

    expect(await orderState(svc, event.order.id)).toEqual({ status: 'paid', recovery: 'recovered' });
    const payments = await paymentsOf(svc, event.order.id);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ method: 'wechat_pay', attribution: 'clicked', message_id: sms.messageId });

    watch.assertNoErrors();
    phoneWatch.assertNoErrors();
    expect([...watch.foreignRequests(), ...phoneWatch.foreignRequests()]).toEqual([]);
  });

  it('Alipay direct: the retry page hands the phone to the (fake) Alipay cashier, which pays and returns to success', async () => {
    const alipay = await startFakeAlipay();
    onTestFinished(() => alipay.close());
    const { svc, context, watch } = await setup('zh-CN', {
      PAYMENT_GATEWAY_ALIPAY: 'alipay',
      ALIPAY_APP_ID: alipay.appId,
      ALIPAY_PRIVATE_KEY: alipay.gatewayOptions.privateKey,
      ALIPAY_PUBLIC_KEY: alipay.gatewayOptions.alipayPublicKey,
      ALIPAY_GATEWAY_URL: alipay.gatewayOptions.gatewayUrl,
    });
    const event = failedOrder('zh-CN');
    expect((await svc.post(event)).status).toBe(202);
    const email = await waitForOutbox(svc, '.eml');
    const mail = await simpleParser(fs.readFileSync(email.file));
    const link = retryLinkIn(typeof mail.html === 'string' ? mail.html : '', svc);

    const page = await context.newPage();
    expect((await page.goto(link))?.status()).toBe(200);
    await page.getByLabel('支付宝').check();
    await screenshot(page, 'alipay-direct-1-retry-page');
    await page.getByRole('button', { name: /^支付/ }).click();

    // A phone gets mobile-website pay, signed by recoup's application key.
    await page.waitForURL(
      (url) => url.origin === alipay.url && url.searchParams.get('method') === 'alipay.trade.wap.pay',
    );
    expect(await page.locator('h1').innerText()).toContain('支付宝收银台');
    expect(await page.locator('#amount').innerText()).toBe('¥129.00');
    await screenshot(page, 'alipay-direct-2-cashier');

    // Paying posts the notify to recoup (answered `success` once recorded), then returns the browser.
    await page.getByRole('button', { name: /确认付款/ }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/return\\?attempt=att_`));
    expect(await page.locator('h1').innerText()).toBe('谢谢！');
    expect(await page.locator('main').innerText()).toMatch(/您支付的 .*129\.00 已确认/);
    await screenshot(page, 'alipay-direct-3-success-page');

    expect(await orderState(svc, event.order.id)).toEqual({ status: 'paid', recovery: 'recovered' });
    const payments = await paymentsOf(svc, event.order.id);
    expect(payments).toEqual([expect.objectContaining({ method: 'alipay', amount: '12900', duplicate: false })]);
    const [attempt] = await rows<{ gateway: string; gateway_payment_id: string }>(
      svc.database.db,
      sql`select gateway, gateway_payment_id from payment_attempts where order_id = ${event.order.id} and status = 'succeeded'`,
    );
    expect(attempt?.gateway).toBe('alipay');
    expect(alipay.trade(attempt?.gateway_payment_id ?? '')?.status).toBe('TRADE_SUCCESS');

    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });

  it('WeChat Pay direct: the QR code carries code_url; paid in "WeChat", the page moves to success', async () => {
    const wechat = await startFakeWechatPay();
    onTestFinished(() => wechat.close());
    const [keyId, publicKey] = Object.entries(wechat.gatewayOptions.platformKeys)[0] ?? ['', ''];
    const { svc, context, watch } = await setup('en-US', {
      PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay',
      WECHAT_PAY_APP_ID: wechat.gatewayOptions.appId,
      WECHAT_PAY_MCH_ID: wechat.gatewayOptions.mchId,
      WECHAT_PAY_MERCHANT_SERIAL: wechat.gatewayOptions.merchantSerial,
      WECHAT_PAY_PRIVATE_KEY: wechat.gatewayOptions.privateKey,
      WECHAT_PAY_API_V3_KEY: wechat.gatewayOptions.apiV3Key,
      WECHAT_PAY_PUBLIC_KEY_ID: keyId,
      WECHAT_PAY_PUBLIC_KEY: publicKey,
      WECHAT_PAY_API_URL: wechat.gatewayOptions.baseUrl,
    });
    const event = failedOrder('en');
    expect((await svc.post(event)).status).toBe(202);
    const sms = await smsLink(svc);

    const page = await context.newPage();
    expect((await page.goto(sms.link))?.status()).toBe(200);
    await page.getByLabel('WeChat Pay').check();
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/pay/att_`));
    const qr = page.getByRole('img', { name: /WeChat Pay QR code/ });
    expect((await qr.boundingBox())?.width).toBeGreaterThanOrEqual(200);
    expect(await qr.getAttribute('src')).toMatch(/^data:image\/svg\+xml;base64,/);
    await screenshot(page, 'wechat-direct-1-qr-page');

    // The code shown is WeChat Pay's own code_url for this attempt's order.
    const [attempt] = await rows<{ payload: string; gateway_payment_id: string }>(
      svc.database.db,
      sql`select next_action->>'payload' as payload, gateway_payment_id from payment_attempts
          where order_id = ${event.order.id} and status = 'open' and gateway = 'wechat_pay'`,
    );
    const order = wechat.order(attempt?.gateway_payment_id ?? '');
    expect(order?.codeUrl).toMatch(/^weixin:\/\/wxpay\/bizpayurl\?pr=/);
    expect(attempt?.payload).toBe(order?.codeUrl);

    // The customer scans with WeChat and pays; WeChat Pay notifies recoup, which answers 204.
    const notify = wechat.customerPays(order?.outTradeNo ?? '');
    expect(await wechat.deliver(order?.outTradeNo ?? '', notify)).toBe(204);
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/done\\?attempt=att_`));
    expect(await page.locator('h1').innerText()).toBe('Thank you!');
    expect(await page.locator('main').innerText()).toMatch(/Your payment of .*129\.00 is confirmed/);
    await screenshot(page, 'wechat-direct-2-success-page');

    expect(await orderState(svc, event.order.id)).toEqual({ status: 'paid', recovery: 'recovered' });
    expect(await paymentsOf(svc, event.order.id)).toEqual([
      expect.objectContaining({ method: 'wechat_pay', amount: '12900', message_id: sms.messageId }),
    ]);
    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });

  it('an expired link shows a friendly page that sends a fresh link; an unknown one shows nothing of any order', async () => {
    const { svc, context, watch } = await setup('en-US');
    const event = failedOrder('en');
    expect((await svc.post(event)).status).toBe(202);
    const sms = await smsLink(svc);
    await svc.database.db.execute(
      sql`update messages set link_expires_at = now() - interval '1 minute' where id = ${sms.messageId}`,
    );

    const page = await context.newPage();
    const expired = await page.goto(sms.link);
    expect(expired?.status()).toBe(410);
    expect(await page.locator('h1').innerText()).toBe('This link has expired');
    const expiredText = await page.locator('body').innerText();
    expect(expiredText).not.toContain(description);
    expect(expiredText).not.toContain('129');
    expect(expiredText).not.toContain(event.order.id);
    expect(await page.locator('form').count()).toBe(1);
    await screenshot(page, 'expired-1-link-expired');

    await page.getByRole('button', { name: 'Send me a new link' }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/fresh-link$`));
    expect(await page.locator('h1').innerText()).toBe('A new link is on its way');
    await screenshot(page, 'expired-2-fresh-link-sent');

    // A new SMS, outside the cadence (no step), to the number on file, with a new working link.
    const [fresh] = await rows<{ id: string; status: string }>(
      svc.database.db,
      sql`select id, status from messages where order_id = ${event.order.id} and step is null`,
    );
    expect(fresh?.status).toBe('sent');
    const freshSms = await smsLink(svc, fresh!.id);
    expect(freshSms.link).not.toBe(sms.link);
    const reopened = await page.goto(freshSms.link);
    expect(reopened?.status()).toBe(200);
    expect(await page.locator('.summary .description').innerText()).toBe(description);

    // A token nobody issued (here: the real one with one character changed) says nothing of the order.
    const token = sms.link.slice(-22);
    const forged = `${svc.config.publicUrl}/r/${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    const unknown = await page.goto(forged);
    expect(unknown?.status()).toBe(404);
    expect(await page.locator('h1').innerText()).toBe('Link not found');
    const unknownText = await page.locator('body').innerText();
    expect(unknownText).not.toContain(description);
    expect(unknownText).not.toContain('129');
    expect(await page.locator('form').count()).toBe(0);
    await screenshot(page, 'expired-3-unknown-link');

    watch.assertNoErrors(expectedStatusLogs);
    expect(watch.foreignRequests()).toEqual([]);
  });

  it('a person opening the link is one click, however often; a fetch or a browser without JavaScript is none', async () => {
    const { svc, context, watch } = await setup('en-US');
    const clicksOf = (orderId: string) =>
      rows<{ id: string; user_agent: string | null }>(
        svc.database.db,
        sql`select id, user_agent from clicks where order_id = ${orderId}`,
      );
    const clickReport = (url: string) => url.endsWith('/click');

    // A link scanner: the page, and nothing counted.
    const scanned = failedOrder('en');
    expect((await svc.post(scanned)).status).toBe(202);
    const scannedSms = await smsLink(svc);
    const fetched = await fetch(scannedSms.link, { headers: { 'user-agent': 'Slackbot-LinkExpanding 1.0' } });
    expect(fetched.status).toBe(200);
    expect(await fetched.text()).toContain(description);

    // A browser that runs no script shows the page and counts nothing, until its form is posted.
    const noScript = await browser.newContext({ javaScriptEnabled: false, locale: 'en-US' });
    onTestFinished(() => noScript.close());
    const noScriptWatch = watchContext(noScript);
    const plain = await noScript.newPage();
    expect((await plain.goto(scannedSms.link))?.status()).toBe(200);
    expect(await plain.locator('.summary .description').innerText()).toBe(description);
    expect(await clicksOf(scanned.order.id)).toEqual([]);
    await plain.getByLabel('WeChat Pay').check();
    await plain.getByRole('button', { name: /^Pay / }).click();
    await plain.waitForURL(new RegExp(`/r/${tokenPattern}/pay/att_`));
    expect(await clicksOf(scanned.order.id)).toHaveLength(1);
    expect(noScriptWatch.requests.filter(clickReport)).toEqual([]);

    // A person's browser: the page reports itself once shown.
    const event = failedOrder('en');
    expect((await svc.post(event)).status).toBe(202);
    const sms = await smsLink(svc, await messageOf(svc, event.order.id));
    const page = await context.newPage();
    const reported = page.waitForResponse((r) => clickReport(r.url()) && r.request().method() === 'POST');
    expect((await page.goto(sms.link))?.status()).toBe(200);
    expect((await reported).status()).toBe(204);
    const clicks = await clicksOf(event.order.id);
    expect(clicks).toEqual([{ id: expect.stringMatching(/^clk_/), user_agent: expect.stringContaining('iPhone') }]);

    // Opened again (a reload, another tab): reported again, still the one click.
    const again = page.waitForResponse((r) => clickReport(r.url()) && r.request().method() === 'POST');
    await page.reload();
    expect((await again).status()).toBe(204);
    const other = await context.newPage();
    const third = other.waitForResponse((r) => clickReport(r.url()) && r.request().method() === 'POST');
    await other.goto(sms.link);
    expect((await third).status()).toBe(204);
    expect(await clicksOf(event.order.id)).toEqual(clicks);

    watch.assertNoErrors();
    noScriptWatch.assertNoErrors();
    expect([...watch.foreignRequests(), ...noScriptWatch.foreignRequests()]).toEqual([]);
  });
});

/** The id of an order's first reminder (an SMS), once it is sent. */
async function messageOf(svc: TestService, orderId: string): Promise<string> {
  return waitFor(
    async () => {
      const [m] = await rows<{ id: string }>(
        svc.database.db,
        sql`select id from messages where order_id = ${orderId} and step = 0 and status = 'sent'`,
      );
      return m?.id;
    },
    { what: `the first reminder of ${orderId}` },
  );
}
