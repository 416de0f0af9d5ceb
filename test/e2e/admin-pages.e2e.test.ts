import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, makeEvent, signIn, startTestService, waitFor, type TestService } from '../helpers/service.js';
import { closeBrowser, launchBrowser, screenshot, watchContext, type BrowserWatch } from './helpers/browser.js';

// The two pages recoup serves from packages (bull-board at /admin/queues, Swagger UI at /docs), opened
// by an ops person in a real browser: each renders, fetches nothing from another origin (so the ops
// person's browser tells no third party what it opened), trips no Content-Security-Policy and
// refuses to be framed.

// Functions passed to evaluate() and init scripts run in the browser; the project has no DOM types.
declare const document: {
  addEventListener(type: 'securitypolicyviolation', listener: (event: CspViolationEvent) => void): void;
};
declare const window: { reportCspViolation(violation: string): void };
interface CspViolationEvent {
  violatedDirective: string;
  blockedURI: string;
  sourceFile: string;
  lineNumber: number;
}

// One reminder ten minutes after the failure (within the wake-up horizon): the order waits as a
// delayed job on the steps queue.
const cadence = `name: default
description: Admin pages e2e cadence.
match:
  failure_categories: [any]
  currencies: [any]
expire_after: 1d
steps:
  - after: 10m
    channel: sms
    template: nudge
`;

let browser: Browser;
let svc: TestService;
let origin: string;

beforeAll(async () => {
  browser = await launchBrowser();
  const port = await freePort();
  // PUBLIC_URL is the service's own http address, so the session cookie is not `Secure`.
  origin = `http://127.0.0.1:${port}`;
  svc = await startTestService({ cadences: cadence, env: { PORT: String(port), PUBLIC_URL: origin } });
});
afterAll(async () => {
  await closeBrowser(browser);
  await svc?.close();
});

interface Visit {
  context: BrowserContext;
  page: Page;
  watch: BrowserWatch;
  /** Every `securitypolicyviolation` event the pages fired: directive, blocked URI, where. */
  violations: string[];
}

/**
 * A laptop-sized context signed in to the console as an ops person. Requests to any other origin
 * are recorded (by the watch) and then aborted, so the test never reaches the internet.
 */
async function opsBrowser(): Promise<Visit> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-GB' });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  const { cookie } = await signIn(svc, ['ops']);
  const [name = '', value = ''] = cookie.split('=');
  await context.addCookies([{ name, value, url: origin }]);
  const watch = watchContext(context);
  await context.route(
    (url) => url.origin !== origin,
    (route) => route.abort('blockedbyclient'),
  );
  const violations: string[] = [];
  await context.exposeFunction('reportCspViolation', (violation: string) => violations.push(violation));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) =>
      window.reportCspViolation(
        `${event.violatedDirective} blocked ${event.blockedURI} (${event.sourceFile}:${event.lineNumber})`,
      ),
    );
  });
  return { context, page: await context.newPage(), watch, violations };
}

/** What every admin page must show at the end of a visit. */
function expectSealed(visit: Visit, response: Response | null): void {
  expect(visit.watch.foreignRequests([origin])).toEqual([]);
  expect(visit.violations).toEqual([]);
  visit.watch.assertNoErrors();
  const headers = response?.headers() ?? {};
  expect(headers['content-security-policy']).toContain("default-src 'self'");
  expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
  expect(headers['x-frame-options']).toBe('DENY');
}

describe('admin pages in a real browser', () => {
  it('/admin/queues shows the steps queue, from recoup’s own origin only', async () => {
    const visit = await opsBrowser();
    try {
      const event = makeEvent();
      expect((await svc.post(event)).status).toBe(202);
      const recovery = await waitFor(async () => (await svc.getOrder(event.order.id)).recovery ?? undefined, {
        what: 'the recovery',
      });

      const { page } = visit;
      const response = await page.goto(`${origin}/admin/queues`);
      expect(response?.status()).toBe(200);
      await page.getByRole('link', { name: /steps/ }).first().click();
      await page.waitForURL((url) => url.pathname === '/admin/queues/queue/steps');
      await page
        .getByRole('link', { name: /delayed/i })
        .first()
        .click();
      // Its wake-up: a job card naming the recovery, its data highlighted.
      await page.getByText(String(recovery.id)).first().waitFor();
      await page.waitForLoadState('networkidle');
      await screenshot(page, 'admin-queues');
      expectSealed(visit, response);
    } finally {
      await visit.context.close();
    }
  });

  it('/docs lists the API operations, from recoup’s own origin only', async () => {
    const visit = await opsBrowser();
    try {
      const { page } = visit;
      const response = await page.goto(`${origin}/docs`);
      expect(response?.status()).toBe(200);
      // Opened, an operation shows its request body and responses (rendered and highlighted).
      await page.locator('.opblock-summary-path', { hasText: /^\/v1\/events$/ }).click();
      expect(await page.locator('.opblock').count()).toBeGreaterThan(10);
      await page.locator('.opblock.is-open').getByRole('heading', { name: 'Responses' }).waitFor();
      // "Try it out" calls the API from the page (PUBLIC_URL, this origin here).
      await page.locator('.opblock-summary-path', { hasText: /^\/healthz$/ }).click();
      const healthz = page.locator('.opblock.is-open', { hasText: 'Process liveness' });
      await healthz.getByRole('button', { name: 'Try it out' }).click();
      await healthz.getByRole('button', { name: 'Execute' }).click();
      await healthz.locator('.live-responses-table .response-col_status', { hasText: '200' }).waitFor();
      await page.waitForLoadState('networkidle');
      await screenshot(page, 'docs');
      expectSealed(visit, response);
    } finally {
      await visit.context.close();
    }
  });
});
