import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium package; `.ci/run` installs it when missing. CHROMIUM_PATH overrides. */
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The repository root, so artifacts land in one place whatever the working directory. */
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const screenshotDir = path.join(repoRoot, 'test-artifacts', 'screenshots');

/**
 * Headless Chromium that stays off the network on its own: no component updates, sync or
 * other background fetches, so every request a test sees comes from the page under test.
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      // Containers run tests as root, where Chromium's sandbox cannot start.
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

export async function closeBrowser(browser: Browser | undefined): Promise<void> {
  await browser?.close();
}

const mobileUserAgent =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
  'Version/17.5 Mobile/15E148 Safari/604.1';

/**
 * A fresh phone-sized context (iPhone 14-ish by default; `viewport` for another phone): what most
 * customers open a reminder on.
 */
export async function newMobileContext(
  browser: Browser,
  options: { locale?: string; timezoneId?: string; viewport?: { width: number; height: number } } = {},
): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    userAgent: mobileUserAgent,
    locale: options.locale ?? 'en-US',
    timezoneId: options.timezoneId ?? 'Asia/Shanghai',
  });
  // Auto-waiting bounds: generous for a loaded CI machine, well under the test timeout.
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  return context;
}

/** What a context did that a test may want to fail on. */
export interface BrowserWatch {
  /** Uncaught exceptions, `console.error` output (with the page URL) and 4xx/5xx responses. */
  readonly errors: string[];
  /** Every URL the context requested (data: URLs are not requests). */
  readonly requests: string[];
  /** Requests to origins other than the given ones (default: localhost only). */
  foreignRequests(allowedOrigins?: string[]): string[];
  /** Throws listing every error, except messages matching `allow` (e.g. an expected 404 page). */
  assertNoErrors(allow?: RegExp[]): void;
}

const localHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Collects page errors, console errors and requests of every page the context opens,
 * including pages opened later, so a test can assert on them at the end.
 */
export function watchContext(context: BrowserContext): BrowserWatch {
  const errors: string[] = [];
  const requests: string[] = [];
  const watchPage = (page: Page) => {
    page.on('pageerror', (error) => errors.push(`pageerror on ${page.url()}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const source = message.location().url;
      // The browser's own favicon probe (not the page's doing; Playwright never sees the request).
      if (new URL(source || page.url()).pathname === '/favicon.ico') return;
      errors.push(`console.error on ${page.url()}${source ? ` (${source})` : ''}: ${message.text()}`);
    });
  };
  context.pages().forEach(watchPage);
  context.on('page', watchPage);
  context.on('request', (request) => requests.push(request.url()));
  // Every failed load with its URL, also those a page's script swallows (e.g. a polling fetch).
  context.on('response', (response) => {
    if (response.status() >= 400) errors.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  return {
    errors,
    requests,
    foreignRequests(allowedOrigins) {
      return requests.filter((url) => {
        const parsed = new URL(url);
        if (parsed.protocol === 'data:' || parsed.protocol === 'blob:') return false;
        return allowedOrigins ? !allowedOrigins.includes(parsed.origin) : !localHosts.has(parsed.hostname);
      });
    },
    assertNoErrors(allow = []) {
      const unexpected = errors.filter((e) => !allow.some((pattern) => pattern.test(e)));
      if (unexpected.length > 0) throw new Error(`browser errors:\n${unexpected.join('\n')}`);
    },
  };
}

/** A full-page PNG under test-artifacts/screenshots/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name.replace(/[^A-Za-z0-9_.-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
