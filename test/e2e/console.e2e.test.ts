import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { freePort, makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';
import {
  closeBrowser,
  launchBrowser,
  newMobileContext,
  screenshot,
  watchContext,
  type BrowserWatch,
} from './helpers/browser.js';

// An ops person in a real (headless) browser on a laptop-sized screen: sign in with a key, break
// a cadence and see the error beside the editor, fix it and see the preview, save & activate it,
// then follow a real order (sent through /v1/events) to its timeline; and the same timeline on a phone.

const cadence = `# Fast cadence for the console test: the first reminder goes out a second after the failure.
name: default
description: Console e2e cadence.
match:
  failure_categories: [any]
  currencies: [any]
expire_after: 1h
steps:
  - after: 1s
    channel: sms
    template: nudge
  - after: 10m
    channel: email
    template: alternative-methods
    offer_methods: [alipay, card]
  - after: 30m
    channel: sms
    template: last-call
`;

// Saving a cadence with errors answers 422 with the editor page, on purpose.
const expectedStatusLogs = [
  /^HTTP 422 for http:\/\/127\.0\.0\.1:\d+\/console\/cadences\/default$/,
  /^console\.error on [^ ]+\/console\/cadences\/default .*status of 422/,
];

// Functions passed to evaluate() run in the browser; the project has no DOM types.
declare const document: {
  documentElement: { scrollWidth: number; clientWidth: number };
  styleSheets: ArrayLike<{ cssRules: ArrayLike<unknown> }>;
};

let browser: Browser;
let svc: TestService;
let opsKey: string;

beforeAll(async () => {
  browser = await launchBrowser();
  const port = await freePort();
  // PUBLIC_URL is the service's own http address, so the session cookie is not `Secure`.
  svc = await startTestService({
    cadences: cadence,
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, SHOP_NAME: 'Lotus Tea House' },
  });
  opsKey = (
    await createApiKey(svc.database.db, { name: 'Olivia (ops)', scopes: ['ops'] }, { actor: 'test', at: new Date() })
  ).key;
});
afterAll(async () => {
  await closeBrowser(browser);
  await svc?.close();
});

async function laptop(): Promise<{ context: BrowserContext; watch: BrowserWatch; page: Page }> {
  const context = await browser.newContext({
    viewport: { width: 1366, height: 900 },
    locale: 'en-GB',
    timezoneId: 'Europe/London',
  });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  const watch = watchContext(context);
  return { context, watch, page: await context.newPage() };
}

/** Opens `path`, which sends the browser to sign in first, and signs in with the ops key. */
async function signInAt(page: Page, path: string): Promise<void> {
  await page.goto(`${svc.url}${path}`);
  await page.waitForURL(/\/console\/login\?next=/);
  await page.getByLabel('API key').fill(opsKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname === path);
}

describe('the ops console in a real browser', () => {
  it('edits a cadence: inline error, fix, preview, save & activate', async () => {
    const { context, watch, page } = await laptop();
    try {
      await signInAt(page, '/console/cadences/default');
      await expect.poll(() => page.locator('#yaml').inputValue()).toContain('name: default');
      expect(await page.locator('.preview-steps > li').count()).toBe(3);
      expect(
        await page.evaluate(() => Array.from(document.styleSheets).reduce((n, sheet) => n + sheet.cssRules.length, 0)),
      ).toBeGreaterThan(20);
      await screenshot(page, 'console-1-editor');

      // A step after the recovery has expired: the save is refused and the error sits beside the text.
      const original = await page.locator('#yaml').inputValue();
      await page.locator('#yaml').fill(original.replace('expire_after: 1h', 'expire_after: 20m'));
      await page.locator('#save').click();
      const issues = page.locator('#issues');
      await issues.waitFor();
      expect(await issues.locator('.path').allInnerTexts()).toEqual(['steps[2].after']);
      expect(await issues.innerText()).toMatch(/line \d+[\s\S]*30m must be earlier than expire_after \(20m\)/);
      expect(await page.locator('#yaml').getAttribute('aria-invalid')).toBe('true');
      expect(await page.locator('#yaml').inputValue()).toContain('expire_after: 20m');
      expect(await page.locator('#no-preview').innerText()).toContain('Fix the errors');
      await screenshot(page, 'console-2-inline-error');

      // Fixed (and the email step moved earlier), previewed for a customer in New York in English.
      const fixed = original.replace('after: 10m', 'after: 5m');
      await page.locator('#yaml').fill(fixed);
      await page.locator('select[name="tz"]').selectOption('America/New_York');
      await page.locator('select[name="locale"]').selectOption('en');
      await page.locator('#save').click();
      await page.waitForURL(/saved=created/);
      const savedVersion = Number(new URL(page.url()).searchParams.get('version'));
      expect(await page.locator('.notice[role="status"]').innerText()).toContain(
        `Saved as version ${savedVersion}. It is not active`,
      );
      const steps = page.locator('.preview-steps > li');
      expect(await steps.count()).toBe(3);
      expect(await page.locator('#preview-summary').innerText()).toContain('America/New_York');
      expect(await steps.nth(1).innerText()).toMatch(/Step 1 · email alternative-methods/);
      expect(await steps.nth(0).locator('pre.sms').innerText()).toContain('Lotus Tea House');
      expect(await steps.nth(0).locator('summary').first().innerText()).toMatch(/^en · SMS × \d/);
      await screenshot(page, 'console-3-preview');

      await page.locator('#save-activate').click();
      await page.waitForURL(/saved=unchanged-activated/);
      expect(await page.locator('.notice[role="status"]').innerText()).toContain(
        `version ${savedVersion} is now active`,
      );

      await page.getByRole('link', { name: 'Cadences', exact: true }).click();
      await page.waitForURL(/\/console\/cadences$/);
      expect(await page.locator('[data-cadence="default"] [data-active-version]').innerText()).toBe(
        `v${savedVersion} active`,
      );
      await screenshot(page, 'console-4-cadence-list');

      await page.locator('[data-cadence="default"]').getByRole('link', { name: 'history' }).click();
      await page.waitForURL(/\/versions$/);
      const diff = page.locator(`#v${savedVersion} pre.diff`);
      expect(await diff.locator('.d-del').allInnerTexts()).toEqual(['-  - after: 10m']);
      expect(await diff.locator('.d-add').allInnerTexts()).toEqual(['+  - after: 5m']);
      await screenshot(page, 'console-5-versions');

      watch.assertNoErrors(expectedStatusLogs);
      expect(watch.foreignRequests()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('follows an order from /v1/events to its timeline, on a laptop and on a phone', async () => {
    const event = makeEvent({}, { description: 'West Lake Longjing tea gift box ×2' });
    expect((await svc.post(event)).status).toBe(202);
    const orderId = event.order.id;
    await waitFor(
      async () => {
        const view = await svc.getOrder(orderId);
        return view.messages.some((m) => m.status === 'sent') ? true : undefined;
      },
      { what: 'the first reminder' },
    );

    const { context, watch, page } = await laptop();
    try {
      await signInAt(page, '/console/orders');
      await page.getByLabel(/Order id, customer id/).fill(event.order.customer.email);
      await page.getByRole('button', { name: 'Search' }).click();
      await page.waitForURL(/\/console\/orders\?q=/);
      const results = page.locator('#order-results tbody tr');
      expect(await results.count()).toBe(1);
      expect(await results.innerText()).toContain('l***@example.com');
      await page.getByRole('link', { name: orderId }).click();
      await page.waitForURL((url) => url.pathname === `/console/orders/${orderId}`);

      expect(await page.locator('#recovery-state').innerText()).toBe('active');
      const timeline = page.locator('#timeline');
      expect(await timeline.locator('[data-kind="event"]').innerText()).toContain('Shop event payment.failed');
      expect(await timeline.locator('[data-kind="event"]').innerText()).toContain('recovery_started');
      const message = timeline.locator('[data-kind="message"]').first();
      expect(await message.innerText()).toMatch(/SMS step 0 · nudge · sent/);
      expect(await message.innerText()).toContain('+86*******8000');
      // In time order: the event and the failed attempt it reported, the recovery it started, the
      // event for the shop that tells of it (no endpoint here: it waits in the feed), the reminder.
      const kinds = await timeline
        .locator('> li')
        .evaluateAll((items) => items.map((item) => (item as unknown as { dataset: { kind: string } }).dataset.kind));
      expect(kinds.slice(0, 5)).toEqual(['event', 'attempt', 'recovery', 'webhook', 'message']);
      expect(await timeline.locator('[data-kind="webhook"]').first().innerText()).toContain(
        'In the shop feed: recovery.started #1',
      );
      await screenshot(page, 'console-6-order-timeline');

      // Stop it from the page: the state and the audit entry show up in the story.
      await page.locator('#stop-recovery').click();
      await page.waitForURL(/done=stopped/);
      expect(await page.locator('#recovery-state').innerText()).toBe('stopped');
      expect(await page.locator('#ended-reason').innerText()).toBe('stopped_by_ops');
      expect(await timeline.locator('[data-kind="audit"]').innerText()).toContain('recovery.stopped by Olivia (ops)');
      await screenshot(page, 'console-7-order-stopped');

      await page.getByRole('link', { name: 'Health', exact: true }).click();
      await page.waitForURL(/\/console\/health$/);
      expect(await page.locator('#circuits [data-gateway="sandbox"]').innerText()).toContain('closed');
      expect(await page.locator('#stuck-count').innerText()).toBe('0');
      await screenshot(page, 'console-9-health');
      watch.assertNoErrors();
    } finally {
      await context.close();
    }

    const phone = await newMobileContext(browser, { locale: 'en-US' });
    try {
      const phoneWatch = watchContext(phone);
      const page = await phone.newPage();
      await signInAt(page, `/console/orders/${orderId}`);
      expect(await page.locator('#timeline > li').count()).toBeGreaterThanOrEqual(4);
      // One column: nothing wider than the screen.
      expect(
        await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth),
      ).toBe(0);
      await screenshot(page, 'console-8-order-phone');
      phoneWatch.assertNoErrors();
    } finally {
      await phone.close();
    }
  });
});
