import fs from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';
import { closeBrowser, launchBrowser, screenshot, watchContext } from './helpers/browser.js';

// The WeChat Pay QR page on a laptop, where nobody can scan the screen with the same device: in
// sandbox mode a link does what scanning would; without JavaScript the page does not claim to move
// on by itself and says which button to press; the success page thanks once and names the order.

const cadence = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: sms, template: nudge }
`;
const en = pageStrings.en;

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

async function setup(javaScriptEnabled: boolean): Promise<{ svc: TestService; context: BrowserContext }> {
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, SHOP_NAME: 'Lotus Tea House' },
  });
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    javaScriptEnabled,
  });
  context.setDefaultTimeout(10_000);
  onTestFinished(async () => {
    await context.close();
    await svc.close();
  });
  return { svc, context };
}

/** Posts a failed order and returns it with the retry link of its SMS reminder. */
async function remindedOrder(svc: TestService) {
  const event = makeEvent({}, { amount: 12900, currency: 'CNY' });
  event.order.customer = { ...event.order.customer, locale: 'en' };
  expect((await svc.post(event)).status).toBe(202);
  const file = await waitFor(
    () => {
      try {
        return fs.readdirSync(svc.outboxDir).find((f) => !f.startsWith('.') && f.endsWith('.sms.json'));
      } catch {
        return undefined;
      }
    },
    { what: 'the SMS reminder' },
  );
  const body = (JSON.parse(fs.readFileSync(path.join(svc.outboxDir, file), 'utf8')) as { body: string }).body;
  const link = /http:\/\/127\.0\.0\.1:\d+\/r\/[A-Za-z0-9_-]{22}/.exec(body)?.[0];
  if (!link) throw new Error(`no retry link in ${body}`);
  return { orderId: event.order.id, link };
}

describe('the WeChat Pay QR page on a laptop (sandbox)', () => {
  it('pays through the "simulate the scan" link; the success page thanks once and gives the order reference', async () => {
    const { svc, context } = await setup(true);
    const watch = watchContext(context);
    const order = await remindedOrder(svc);
    const page = await context.newPage();
    await page.goto(order.link);
    await page.getByLabel('WeChat Pay').check();
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]{22}\/pay\/att_/);
    // The polling script runs, so the page may say that it moves on by itself.
    await expect.poll(() => page.locator('main').innerText()).toContain(en.qrPending);
    await screenshot(page, 'qr-laptop-1-qr-page');

    await page.getByRole('link', { name: en.qrSimulate }).click();
    await page.waitForURL(/\/sandbox\/scan\/sbx_/);
    await page.getByRole('button', { name: 'Simulate scan & pay' }).click();
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]{22}\/return\?/);

    const main = await page.locator('main').innerText();
    expect(await page.locator('h1').innerText()).toBe(en.successTitle);
    expect(main.match(/Thank you/g)).toHaveLength(1);
    expect(main).toMatch(/Your payment of CN¥129\.00 is confirmed\./);
    expect(main).toContain(`${en.orderReference} ${order.orderId}`);
    await screenshot(page, 'qr-laptop-2-success-page');
    expect((await svc.getOrder(order.orderId)).order).toMatchObject({ status: 'paid' });
    watch.assertNoErrors();
  });

  it('without JavaScript, says to press the check button instead of promising to move on by itself', async () => {
    const { svc, context } = await setup(false);
    const order = await remindedOrder(svc);
    const page = await context.newPage();
    await page.goto(order.link);
    await page.getByLabel('WeChat Pay').check();
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]{22}\/pay\/att_/);
    // innerText holds only what is rendered: the <noscript> hint, and not the hidden promise.
    const shown = await page.locator('main').innerText();
    expect(shown).not.toContain(en.qrPending);
    expect(shown).toContain(en.qrNoScript.replace('{button}', en.checkPaid));
    await screenshot(page, 'qr-no-script-1-qr-page');

    // Not paid yet: the check button says so, and the page still does not promise anything.
    await page.getByRole('link', { name: en.checkPaid }).click();
    const checked = await page.locator('main').innerText();
    expect(checked).toContain(en.qrNotYet);
    expect(checked).not.toContain(en.qrPending);

    // The sandbox's pages need no script either: paying lands on the success page.
    await page.getByRole('link', { name: en.qrSimulate }).click();
    await page.getByRole('button', { name: 'Simulate scan & pay' }).click();
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]{22}\/return\?/);
    expect(await page.locator('h1').innerText()).toBe(en.successTitle);
  });
});
