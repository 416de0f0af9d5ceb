import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { freePort, makeEvent, startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';
import { startShopReceiver } from '../helpers/shop-receiver.js';
import { closeBrowser, launchBrowser, newMobileContext, screenshot, watchContext } from './helpers/browser.js';

// A customer pays through a retry link in a real (headless) browser on a phone-sized screen, and
// the shop's webhook endpoint hears of it: signed deliveries of the payment and of the recovery's
// end, which the shop puts in order by their sequence.

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: email, template: last-call }
`;

const description = 'Dragon Well green tea, 250 g';
const tokenPattern = '[A-Za-z0-9_-]{22}';

// Functions passed to evaluate() run in the browser; the project has no DOM types, so declare what they read.
declare const document: { documentElement: { scrollWidth: number; clientWidth: number } };

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

/** The retry link of the first reminder SMS in the outbox (temp files start with a dot). */
async function smsLink(svc: TestService): Promise<string> {
  const name = await waitFor(
    () => {
      let files: string[];
      try {
        files = fs.readdirSync(svc.outboxDir);
      } catch {
        return undefined;
      }
      return files.find((f) => !f.startsWith('.') && f.endsWith('.sms.json'));
    },
    { what: 'the reminder SMS' },
  );
  const body = (JSON.parse(fs.readFileSync(path.join(svc.outboxDir, name), 'utf8')) as { body: string }).body;
  const match = new RegExp(`${svc.config.publicUrl.replace(/[.]/g, '\\.')}/r/${tokenPattern}`).exec(body);
  if (!match) throw new Error(`no retry link in:\n${body}`);
  return match[0];
}

describe('webhooks to the shop after a payment in a real browser (mobile)', () => {
  it('card on the sandbox from the SMS: the shop gets payment.succeeded then recovery.ended, signed and in sequence', async () => {
    const receiver = await startShopReceiver();
    onTestFinished(() => receiver.close());
    const port = await freePort();
    const svc = await startTestService({
      cadences: cadence,
      env: {
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        SHOP_NAME: 'Lotus Tea House',
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true',
        WEBHOOK_POLL_INTERVAL: '50ms',
      },
    });
    const context = await newMobileContext(browser, { locale: 'en-US' });
    onTestFinished(async () => {
      // The browser first: a polling page must not outlive the service it polls.
      await context.close();
      await svc.close();
    });
    const watch = watchContext(context);

    // The shop registers its endpoint (default events) and verifies with the secret it was given.
    const created = await fetch(`${svc.url}/v1/webhook-endpoints`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: receiver.url }),
    });
    expect(created.status).toBe(201);
    const { secret } = (await created.json()) as { secret: string };
    expect(secret).toMatch(/^whsec_/);
    receiver.secrets = [secret];

    const event = makeEvent({}, { description, amount: 12900, currency: 'CNY' });
    event.order.customer = { ...event.order.customer, locale: 'en' };
    expect((await svc.post(event)).status).toBe(202);
    const link = await smsLink(svc);

    const page = await context.newPage();
    expect((await page.goto(link))?.status()).toBe(200);
    expect(await page.locator('.summary .description').innerText()).toBe(description);
    await page.getByLabel('Card').check();
    await screenshot(page, 'webhook-1-retry-page');
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(/\/sandbox\/checkout\/sbx_/);
    expect(await page.locator('.summary .amount').innerText()).toContain('129.00');
    await page.getByRole('button', { name: /^Pay / }).click();
    await page.waitForURL(new RegExp(`/r/${tokenPattern}/return\\?attempt=att_`));
    expect(await page.locator('h1').innerText()).toBe('Thank you!');

    // What the shop heard of this order, verified by signature, in the order of its sequence.
    const events = await waitFor(
      () => {
        const found = receiver
          .events()
          .filter((e) => e.data.order_id === event.order.id)
          .sort((a, b) => Number(a.data.sequence) - Number(b.data.sequence));
        return found.some((e) => e.type === 'payment.succeeded') && found.some((e) => e.type === 'recovery.ended')
          ? found
          : undefined;
      },
      { what: 'payment.succeeded and recovery.ended at the shop' },
    );
    // Every delivery the receiver recorded verified with the endpoint's secret.
    expect(receiver.received.filter((r) => r.verified === undefined)).toEqual([]);

    const [attempt] = await rows<{ attempt_number: number }>(
      svc.database.db,
      sql`select attempt_number from payment_attempts where order_id = ${event.order.id} and status = 'succeeded'`,
    );
    const payment = events.find((e) => e.type === 'payment.succeeded')!.data;
    expect(payment).toMatchObject({
      order_id: event.order.id,
      customer_id: event.order.customer.id,
      collected_by: 'recoup',
      gateway: 'sandbox',
      method: 'card',
      amount: event.order.amount,
      currency: event.order.currency,
      attempt: attempt?.attempt_number,
      attribution: 'clicked',
      duplicate: false,
      sequence: expect.any(Number) as unknown,
    });
    expect(payment.attempt).toEqual(expect.any(Number));
    const ended = events.find((e) => e.type === 'recovery.ended')!.data;
    expect(ended).toMatchObject({
      order_id: event.order.id,
      state: 'recovered',
      reason: 'paid',
      attribution: 'clicked',
      sequence: expect.any(Number) as unknown,
    });
    expect(Number(payment.sequence)).toBeLessThan(Number(ended.sequence));
    expect(events.map((e) => e.type)).toEqual(['recovery.started', 'payment.succeeded', 'recovery.ended']);

    // The customer's page, on the phone, still shows the payment confirmed once the shop was told.
    await page.reload();
    expect(page.viewportSize()).toEqual({ width: 390, height: 844 });
    await expect.poll(() => page.locator('h1').isVisible()).toBe(true);
    expect(await page.locator('h1').innerText()).toBe('Thank you!');
    expect(await page.locator('main').innerText()).toMatch(/Your payment of .*129\.00 is confirmed/);
    const width = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
    }));
    expect(width.scroll).toBeLessThanOrEqual(width.client);
    await screenshot(page, 'webhook-2-success-page');

    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });
});
