import { sql } from 'drizzle-orm';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { rows } from '../../src/db/rows.js';
import { recordPayment } from '../../src/payments/record-payment.js';
import { inHoldout } from '../../src/recoveries/holdout.js';
import { freePort, makeEvent, startTestService, type TestService } from '../helpers/service.js';
import { closeBrowser, launchBrowser, newMobileContext, screenshot, watchContext } from './helpers/browser.js';

// A finance person opens the dashboard in a real browser: every chart draws (a canvas with
// pixels on it), nothing is fetched from anywhere but recoup, no console errors; then the same
// page in Chinese on a phone.

const cadence = `
name: default
expire_after: 7d
holdout_percent: 30
steps:
  - { after: 1h, channel: sms, template: nudge }
  - { after: 1d, channel: email, template: last-call }
`;

declare const document: {
  querySelectorAll(selector: string): ArrayLike<{ width: number; height: number; toDataURL(): string }>;
  documentElement: { scrollWidth: number; clientWidth: number };
};
declare const Chart: {
  getChart(canvas: unknown): { data: { labels?: unknown[]; datasets: Array<{ label?: string }> } } | undefined;
};

let browser: Browser;
let svc: TestService;
let financeKey: string;

beforeAll(async () => {
  browser = await launchBrowser();
  const port = await freePort();
  svc = await startTestService({
    cadences: cadence,
    roles: { http: true, worker: false },
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` },
  });
  financeKey = (
    await createApiKey(
      svc.database.db,
      { name: 'Fang (finance)', scopes: ['finance'] },
      { actor: 'test', at: new Date() },
    )
  ).key;
  await seed();
});
afterAll(async () => {
  await closeBrowser(browser);
  await svc?.close();
});

/** Twenty CNY orders in recovery: some messaged, some clicked, some paid, some in the holdout. */
async function seed() {
  const db = svc.database.db;
  const now = Date.now();
  for (let i = 0; i < 20; i += 1) {
    const event = makeEvent(
      {
        payment: {
          gateway: 'stripe',
          method: i % 3 === 0 ? 'alipay' : 'card',
          failure_code: i % 2 ? 'expired_card' : 'insufficient_funds',
        },
      },
      { amount: 5_000 + i * 100 },
    );
    expect((await svc.post(event)).status).toBe(202);
    const orderId = event.order.id;
    const [recovery] = await rows<{ id: string; customer_id: string; holdout: boolean }>(
      db,
      sql`select id, customer_id, holdout from recoveries where order_id = ${orderId}`,
    );
    expect(recovery?.holdout).toBe(inHoldout(orderId, 30));
    if (!recovery) continue;
    const sentAt = new Date(now + (1 + (i % 3)) * 60_000);
    if (!recovery.holdout) {
      for (const [step, channel] of [
        [0, 'sms'],
        [1, 'email'],
      ] as const) {
        if (step === 1 && i % 2) continue;
        await db.execute(
          sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                    sent_at, cost_micros, cost_currency, cost_source, created_at, updated_at)
              values (${`msg_${orderId}_${step}`}, ${recovery.id}, ${orderId}, ${recovery.customer_id}, ${step},
                      ${channel}, 'nudge', 'sent', 'x', ${sentAt}, 45000, 'USD', 'estimate', ${sentAt}, ${sentAt})`,
        );
      }
      if (i % 4 === 0) {
        await db.execute(
          sql`insert into clicks (id, message_id, recovery_id, order_id, at)
              values (${`clk_${orderId}`}, ${`msg_${orderId}_0`}, ${recovery.id}, ${orderId}, ${new Date(sentAt.getTime() + 60_000)})`,
        );
      }
    }
    if (i % 2 === 0 || recovery.holdout) {
      await db.transaction(async (tx) => {
        await tx.execute(sql`select id from orders where id = ${orderId} for update`);
        await recordPayment(
          tx,
          {
            orderId,
            gateway: 'sandbox',
            externalId: `pay_${orderId}`,
            amount: 5_000 + i * 100,
            currency: 'CNY',
            paidAt: new Date(sentAt.getTime() + 120_000),
          },
          { now: new Date(), clickWindowMs: 86_400_000 },
        );
      });
    }
  }
}

async function signIn(page: Page, path: string): Promise<void> {
  await page.goto(`${svc.url}${path}`);
  await page.waitForURL(/\/console\/login\?next=/);
  await page.locator('input[type="password"], input[name="key"]').first().fill(financeKey);
  await page.locator('button[type="submit"]').first().click();
  await page.waitForURL((url) => url.pathname === '/dashboard');
}

/** Every label Chart.js drew: categories of each axis and names of each series. */
async function drawnLabels(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('#dashboard canvas')).flatMap((canvas) => {
      const chart = Chart.getChart(canvas);
      if (!chart) return [];
      return [...(chart.data.labels ?? []), ...chart.data.datasets.map((d) => d.label)].filter(
        (label): label is string => typeof label === 'string',
      );
    }),
  );
}

/** Canvases that Chart.js sized and painted (an unpainted canvas is one flat colour). */
async function paintedCanvases(page: Page): Promise<number> {
  await page.locator('#dashboard[data-charts="drawn"]').waitFor();
  return page.evaluate(() => {
    const blank = new Set<string>();
    let painted = 0;
    for (const canvas of Array.from(document.querySelectorAll('#dashboard canvas'))) {
      if (canvas.width === 0 || canvas.height === 0) continue;
      const url = canvas.toDataURL();
      if (!blank.has(url) && url.length > 2_000) painted += 1;
      blank.add(url);
    }
    return painted;
  });
}

describe('the finance dashboard in a real browser', () => {
  it('draws every chart from recoup’s own Chart.js, with the table and a CSV link, without errors', async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-GB' });
    context.setDefaultTimeout(15_000);
    const watch = watchContext(context);
    try {
      const page = await context.newPage();
      await signIn(page, '/dashboard');
      expect(await page.locator('h1').innerText()).toBe('Recovered revenue · CNY');
      // Revenue, funnel, step, category, method and holdout charts.
      expect(await page.locator('#dashboard canvas').count()).toBe(6);
      expect(await paintedCanvases(page)).toBe(6);
      expect(await page.locator('#report-table tbody tr').count()).toBeGreaterThanOrEqual(1);
      expect(await page.locator('#holdout').innerText()).toMatch(/95 % interval: \[[-+]?\d+\.\d pp, [-+]?\d+\.\d pp\]/);
      const csv = await page.locator('a[download]').getAttribute('href');
      expect(csv).toMatch(/^\/v1\/reports\/recovery\?.*format=csv/);
      // The CSV button works with the console session (no API key in the page).
      const download = await page.request.get(`${svc.url}${csv}`);
      expect(download.status()).toBe(200);
      expect((await download.text()).split('\r\n')[0]).toMatch(/^day,currency,/);
      await screenshot(page, 'dashboard-en-laptop');
      expect(watch.foreignRequests()).toEqual([]);
      watch.assertNoErrors();
    } finally {
      await context.close();
    }
  });

  it('reads in Chinese on a phone, without sideways scrolling', async () => {
    const context = await newMobileContext(browser, { locale: 'zh-CN' });
    const watch = watchContext(context);
    try {
      const page = await context.newPage();
      await signIn(page, '/dashboard');
      // Accept-Language zh-CN picks the Chinese page.
      expect(await page.locator('html').getAttribute('lang')).toBe('zh-CN');
      expect(await page.locator('h1').innerText()).toContain('挽回收入');
      expect(await paintedCanvases(page)).toBe(6);
      // The frame too, and every label the charts drew: no English word, no code (`sms`, `card_data`, `alipay`).
      const topbar = await page.locator('header.topbar').innerText();
      expect(topbar).toContain('数据看板');
      expect(topbar).toContain('退出登录');
      expect(topbar).not.toMatch(/Dashboard|Orders|Sign out|console/);
      const labels = await drawnLabels(page);
      expect(labels).toEqual(
        expect.arrayContaining(['短信', '步骤 0', '银行卡', '支付宝', '余额不足', '银行卡信息有误']),
      );
      expect(labels.filter((label) => /[A-Za-z]{2}/.test(label) && !/^\d{4}-\d\d-\d\d$/.test(label))).toEqual([]);
      const overflow = await page.evaluate(
        () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
      );
      expect(overflow).toBeLessThanOrEqual(1);
      await screenshot(page, 'dashboard-zh-CN-phone');
      watch.assertNoErrors();
    } finally {
      await context.close();
    }
  });

  it('keeps financial data behind the login', async () => {
    const anonymous = await fetch(`${svc.url}/dashboard`, { redirect: 'manual' });
    expect([303, 401]).toContain(anonymous.status);
    expect(await anonymous.text()).not.toContain('data-report');
  });
});
