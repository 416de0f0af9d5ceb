import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { MessageContext } from '../../src/messages/message-context.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { closeBrowser, launchBrowser, newMobileContext, screenshot } from './helpers/browser.js';

// The reminder emails as a phone draws them: 375 px wide (the smallest common iPhone), where the
// footer's long retry link must wrap without breaking the words of the sentences around it.

const renderer = TemplateRenderer.load(fileURLToPath(new URL('../../templates', import.meta.url)));

const context: MessageContext = {
  shop: { name: 'Lotus Tea House' },
  customer: { name: 'Alexandra Richardson' },
  order: { id: 'ord_1042', description: 'West Lake Longjing tea gift box', amount: 12900, currency: 'CNY' },
  failureCategory: 'insufficient_funds',
  offerMethods: ['card', 'alipay'],
  retryUrl: 'https://pay.lotus-tea-house.example.com/r/Zx8kQ2mNpR4tVb7yWc1dLe',
  unsubscribeUrl: 'https://pay.lotus-tea-house.example.com/u/msg_0123456789abcdef01234567.Zx8kQ2mNpR4tVb7yWc1dLe',
};

// Functions passed to evaluate() run in the browser; the project has no DOM types, so declare what they use.
interface BrowserRect {
  top: number;
}
interface BrowserNode {
  nodeType: number;
  textContent: string | null;
  parentElement: { closest(selector: string): unknown } | null;
}
declare const document: {
  documentElement: { scrollWidth: number; clientWidth: number };
  body: unknown;
  createTreeWalker(root: unknown, whatToShow: number): { nextNode(): BrowserNode | null };
  createRange(): {
    setStart(node: unknown, offset: number): void;
    setEnd(node: unknown, offset: number): void;
    getClientRects(): ArrayLike<BrowserRect>;
  };
};

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

describe('reminder emails on a 375 px phone', () => {
  it.each(renderer.templates().filter((t) => renderer.locales(t).includes('en')))(
    '%s: no word outside a link is split across lines, and nothing is wider than the screen',
    async (template) => {
      const email = renderer.renderEmail(template, 'en', context);
      const phone = await newMobileContext(browser, { viewport: { width: 375, height: 812 } });
      onTestFinished(() => phone.close());
      const page = await phone.newPage();
      await page.setContent(email.html);
      await screenshot(page, `email-375-${template}`);

      const split = await page.evaluate(() => {
        const broken: string[] = [];
        const walker = document.createTreeWalker(document.body, 4 /* NodeFilter.SHOW_TEXT */);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          // A link's own text (the long retry URL) may wrap anywhere.
          if (node.parentElement?.closest('a, [style*="display:none"]')) continue;
          const text = node.textContent ?? '';
          for (const match of text.matchAll(/\S+/g)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const lines = new Set(Array.from(range.getClientRects(), (rect) => Math.round(rect.top)));
            if (lines.size > 1) broken.push(match[0]);
          }
        }
        return broken;
      });
      expect(split).toEqual([]);
      const widths = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        client: document.documentElement.clientWidth,
      }));
      expect(widths.scroll).toBeLessThanOrEqual(widths.client);
    },
  );
});
