/**
 * Takes the README's screenshots (docs/images/) from a running recoup with the demo's orders:
 *
 *   npm start                      # terminal 1
 *   npm run demo                   # terminal 2, then:
 *   npx tsx scripts/readme-screenshots.ts
 *
 * Reads the API key and a retry link from DATA_DIR (default ./.data), and uses Chromium at
 * CHROMIUM_PATH (default /usr/bin/chromium).
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const dataDir = path.resolve(process.env.DATA_DIR ?? '.data');
const base = process.env.RECOUP_URL ?? `http://127.0.0.1:${process.env.PORT ?? '3000'}`;
const out = path.resolve(import.meta.dirname, '../docs/images');

const key = fs.readFileSync(path.join(dataDir, 'api-key'), 'utf8').trim();
const outbox = path.join(dataDir, 'outbox');
const sms = fs
  .readdirSync(outbox)
  .filter((f) => f.endsWith('.sms.json'))
  .map((f) => JSON.parse(fs.readFileSync(path.join(outbox, f), 'utf8')) as { body: string; to: string });
const links = sms.filter((m) => m.to.startsWith('+1')).flatMap((m) => /\/r\/[\w-]{22}/.exec(m.body) ?? []);
if (links.length === 0) throw new Error(`no retry link in ${outbox}: run the demo first`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, locale: 'en-US' });
  // An English order still unpaid (the demo pays one of them).
  let open = false;
  for (const link of links) {
    await phone.goto(`${base}${link}`);
    if ((await phone.getByLabel('Card').count()) > 0) {
      open = true;
      break;
    }
  }
  if (!open) throw new Error('no English demo order is still unpaid: run the demo again');
  await phone.screenshot({ path: path.join(out, 'retry-page.png'), fullPage: true });
  // The customer pays by card on the sandbox's checkout: the dashboard then has a recovery to show.
  await phone.getByLabel('Card').check();
  await phone.getByRole('button', { name: /^Pay / }).click();
  await phone.locator('button[value="succeed"]').click();
  await phone
    .getByText(/thank you/i)
    .first()
    .waitFor();
  await phone.waitForLoadState('networkidle');

  const laptop = await browser.newPage({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  await laptop.goto(`${base}/console/login?next=/console/orders`);
  await laptop.getByLabel('API key').fill(key);
  await laptop.keyboard.press('Enter');
  await laptop.waitForURL(/\/console\/orders/);
  const order = laptop.locator('a[href^="/console/orders/demo-"]').first();
  await order.click();
  await laptop.waitForLoadState('networkidle');
  await laptop.screenshot({ path: path.join(out, 'console-order.png') });
  // The demo pays one USD order.
  await laptop.goto(`${base}/dashboard?currency=USD`);
  await laptop.waitForLoadState('networkidle');
  await laptop.screenshot({ path: path.join(out, 'dashboard.png') });
  console.log(`screenshots written to ${out}`);
} finally {
  await browser.close();
}
