import fs from 'node:fs';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';
import {
  closeBrowser,
  launchBrowser,
  newMobileContext,
  screenshot,
  watchContext,
  type BrowserWatch,
} from './helpers/browser.js';

// "What did I buy": the cart lines of an order, in the reminder email and on the retry page it
// links to, on a small phone and on a laptop, with the shop's product pictures loaded under the
// page's CSP. The pictures' host is answered by the browser context itself (no network).

const cadence = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: email, template: nudge }
`;

const imageOrigin = 'https://cdn.lotus-tea.example';
const items = [
  { name: 'West Lake Longjing tea gift box', quantity: 2, amount: 9800, image_url: `${imageOrigin}/longjing.png` },
  // One long word: the line must wrap rather than widen the page.
  { name: 'Celadon-glazed-porcelain-teacup-with-hand-painted-lotus', quantity: 1, amount: 2100 },
  { name: 'Bamboo tea scoop', quantity: 1, amount: 1000, image_url: `${imageOrigin}/scoop.png` },
];
const tokenPattern = '[A-Za-z0-9_-]{22}';

// A 1×1 PNG, served for every picture.
const png = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkaPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);

// Functions passed to evaluate() run in the browser; the project has no DOM types, so declare what they read.
declare const document: { documentElement: { scrollWidth: number; clientWidth: number } };
type BrowserImage = { complete: boolean; naturalWidth: number };

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

async function startService(): Promise<TestService> {
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, SHOP_NAME: 'Lotus Tea House' },
  });
  onTestFinished(() => svc.close());
  return svc;
}

/** The reminder email of the order: its text and html parts. */
async function reminderEmail(svc: TestService) {
  const name = await waitFor(
    () => {
      try {
        return fs.readdirSync(svc.outboxDir).find((f) => !f.startsWith('.') && f.endsWith('.eml'));
      } catch {
        return undefined;
      }
    },
    { what: 'the reminder email' },
  );
  const mail = await simpleParser(fs.readFileSync(path.join(svc.outboxDir, name)));
  return { text: mail.text ?? '', html: typeof mail.html === 'string' ? mail.html : '' };
}

/** A context whose picture requests are answered locally, watched for errors, closed when the test ends. */
async function pictureContext(context: BrowserContext): Promise<{ context: BrowserContext; watch: BrowserWatch }> {
  onTestFinished(() => context.close());
  await context.route(`${imageOrigin}/**`, (route) =>
    route.fulfill({ status: 200, contentType: 'image/png', body: png }),
  );
  return { context, watch: watchContext(context) };
}

/** Opens the link and checks the lines as any screen must show them. */
async function openAndCheckLines(page: Page, link: string) {
  expect((await page.goto(link))?.status()).toBe(200);
  const list = page.getByRole('list', { name: 'Items in your order' });
  await expect.poll(() => list.isVisible()).toBe(true);
  const lines = list.getByRole('listitem');
  expect(await lines.count()).toBe(3);
  expect(await lines.nth(0).innerText()).toMatch(/^West Lake Longjing tea gift box × 2\s+CN¥98\.00$/);
  expect(await lines.nth(1).innerText()).toMatch(
    /^Celadon-glazed-porcelain-teacup-with-hand-painted-lotus × 1\s+CN¥21\.00$/,
  );
  expect(await lines.nth(2).innerText()).toMatch(/^Bamboo tea scoop × 1\s+CN¥10\.00$/);
  for (const index of [0, 1, 2]) expect(await lines.nth(index).isVisible()).toBe(true);

  // The pictures: only where a line has one, with its https address, loaded (CSP allowed them).
  expect(await lines.nth(1).locator('img').count()).toBe(0);
  const pictures = [
    { image: lines.nth(0).getByRole('img', { name: 'West Lake Longjing tea gift box' }), src: items[0]!.image_url },
    { image: lines.nth(2).getByRole('img', { name: 'Bamboo tea scoop' }), src: items[2]!.image_url },
  ];
  for (const { image, src } of pictures) {
    expect(await image.getAttribute('src')).toBe(src);
    await image.scrollIntoViewIfNeeded();
    await expect
      .poll(() =>
        image.evaluate((img) => {
          const { complete, naturalWidth } = img as unknown as BrowserImage;
          return complete && naturalWidth > 0;
        }),
      )
      .toBe(true);
    expect(await image.boundingBox()).toMatchObject({ width: 48, height: 48 });
  }

  // Above the payment choice.
  const listBox = await list.boundingBox();
  const methodsBox = await page.getByRole('group', { name: 'Payment method' }).boundingBox();
  expect(listBox && methodsBox && listBox.y + listBox.height <= methodsBox.y).toBe(true);
}

async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

describe('cart lines in a real browser', () => {
  it('the email lists them, and the retry page shows them with pictures on a 375 px phone and on a laptop', async () => {
    const svc = await startService();
    const event = makeEvent({}, { description: 'Tea for two', amount: 12900, currency: 'CNY', items });
    event.order.customer = { ...event.order.customer, locale: 'en' };
    expect((await svc.post(event)).status).toBe(202);

    const email = await reminderEmail(svc);
    expect(email.text).toContain(
      'West Lake Longjing tea gift box × 2  CN¥98.00\n' +
        'Celadon-glazed-porcelain-teacup-with-hand-painted-lotus × 1  CN¥21.00\n' +
        'Bamboo tea scoop × 1  CN¥10.00\n',
    );
    expect(email.html).toContain(`<img src="${imageOrigin}/longjing.png" width="48" height="48"`);
    const link = new RegExp(`${svc.config.publicUrl.replace(/[.]/g, '\\.')}/r/${tokenPattern}`).exec(email.html)?.[0];
    if (!link) throw new Error('no retry link in the email');

    const phone = await pictureContext(
      await newMobileContext(browser, { locale: 'en-US', viewport: { width: 375, height: 812 } }),
    );
    const phonePage = await phone.context.newPage();
    await openAndCheckLines(phonePage, link);
    expect(phonePage.viewportSize()).toEqual({ width: 375, height: 812 });
    expect(await horizontalOverflow(phonePage)).toBe(0);
    // Name, quantity and amount side by side within the screen.
    const firstLine = await phonePage.locator('.item').first().boundingBox();
    expect(firstLine && firstLine.x >= 0 && firstLine.x + firstLine.width <= 375).toBe(true);
    await screenshot(phonePage, 'cart-lines-1-phone-375');
    phone.watch.assertNoErrors();
    expect(phone.watch.foreignRequests()).toEqual([`${imageOrigin}/longjing.png`, `${imageOrigin}/scoop.png`]);

    const laptop = await pictureContext(
      await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-US' }),
    );
    const laptopPage = await laptop.context.newPage();
    await openAndCheckLines(laptopPage, link);
    expect(await horizontalOverflow(laptopPage)).toBe(0);
    await screenshot(laptopPage, 'cart-lines-2-laptop');
    laptop.watch.assertNoErrors();
  });
});
