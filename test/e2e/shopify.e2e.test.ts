import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { pageStringsFor } from '../../src/http/pages/page-strings.js';
import { startFakeShopify, type FakeShopify } from '../helpers/fake-shopify.js';
import { freePort, startTestService, waitFor, type TestService } from '../helpers/service.js';
import { closeBrowser, launchBrowser, newMobileContext, watchContext } from './helpers/browser.js';
import {
  clicksOf,
  firstReminderLink,
  fixture,
  messagesOf,
  orderRow,
  pause,
  payByCard,
  paymentsOf,
  postShopWebhook,
  recoveryOf,
  sentMessagesOf,
  shopifyDelivery,
  startShopPage,
  uniqueNumber,
  writeBackDeliveries,
  type Json,
} from './helpers/shop-webhooks.js';

// A Shopify shop's webhooks drive recoveries in a real recoup: an unpaid order and an abandoned
// checkout, each left unpaid past ABANDON_AFTER. A payment recoup collects is marked paid in
// Shopify (a local fake of its Admin API); a checkout's reminder leads to the checkout's own
// recovery page, since only Shopify can take its payment.

const secret = 'shopify-app-secret-e2e';

/** An email a second after the recovery starts; the second one is due two seconds after that. */
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: email, template: nudge }
  - { after: 3s, channel: email, template: last-call }
`;

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

async function startShop(env: Record<string, string> = {}): Promise<{ svc: TestService; shopify: FakeShopify }> {
  const shopify = await startFakeShopify();
  onTestFinished(() => shopify.close());
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: {
      PORT: String(port),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      SHOP_NAME: 'Tea House',
      WEBHOOK_POLL_INTERVAL: '50ms',
      ABANDON_AFTER: '1s',
      SHOPIFY_WEBHOOK_SECRET: secret,
      SHOPIFY_SHOP: 'tea-house.myshopify.com',
      SHOPIFY_ADMIN_TOKEN: shopify.accessToken,
      SHOPIFY_API_URL: shopify.url,
      ...env,
    },
  });
  onTestFinished(() => svc.close());
  return { svc, shopify };
}

/** The pending-order fixture as a new order of a new customer, placed now. */
function pendingOrder(): Json {
  const order = fixture('shopify', 'order-pending');
  const id = String(uniqueNumber(13));
  const customer = uniqueNumber(12);
  const now = new Date().toISOString();
  order.id = Number(id);
  order.admin_graphql_api_id = `gid://shopify/Order/${id}`;
  order.created_at = now;
  order.processed_at = now;
  order.updated_at = now;
  order.email = `jon.${id}@example.com`;
  order.contact_email = order.email;
  order.customer = {
    ...order.customer,
    id: customer,
    email: order.email,
    admin_graphql_api_id: `gid://shopify/Customer/${customer}`,
  };
  return order;
}

/** The abandoned-checkout fixture as a new checkout of a new customer, recoverable at `recoveryUrl`. */
function abandonedCheckout(recoveryUrl: string): Json {
  const checkout = fixture('shopify', 'checkout-abandoned');
  const n = uniqueNumber(12);
  const now = new Date().toISOString();
  checkout.id = n;
  checkout.token = `e2e${n}${uniqueNumber(9)}`;
  checkout.created_at = now;
  checkout.updated_at = now;
  checkout.email = `mei.${n}@example.com`;
  checkout.abandoned_checkout_url = recoveryUrl;
  if (checkout.customer) {
    const customer = uniqueNumber(12);
    checkout.customer = {
      ...checkout.customer,
      id: customer,
      email: checkout.email,
      admin_graphql_api_id: `gid://shopify/Customer/${customer}`,
    };
  }
  return checkout;
}

describe('Shopify → recoup → Shopify, end to end', () => {
  it('an unpaid order: abandoned, reminded, paid on the retry page, marked paid and tagged in Shopify; orders/paid then changes nothing', async () => {
    const { svc, shopify } = await startShop();
    const context = await newMobileContext(browser, { locale: 'en-US', timezoneId: 'America/New_York' });
    onTestFinished(() => context.close());
    const watch = watchContext(context);

    const order = pendingOrder();
    const id = String(order.id);
    const gid = `gid://shopify/Order/${id}`;
    shopify.addOrder(id);

    const created = await postShopWebhook(svc, 'shopify', shopifyDelivery('orders/create', order, secret));
    expect(created.status).toBe(200);
    expect(await created.json()).toMatchObject({ status: 'accepted', events: [{ status: 'accepted' }] });
    expect(await orderRow(svc, id)).toMatchObject({ status: 'pending', platform: 'shopify' });

    // No payment within ABANDON_AFTER: an abandoned recovery starts, and its first email goes out.
    const recovery = await waitFor(() => recoveryOf(svc, id), { what: 'the abandoned recovery' });
    expect(recovery).toMatchObject({ state: 'active', failure_category: 'abandoned' });
    expect((await svc.getOrder(id)).order).toMatchObject({ amount: 40300, currency: 'USD' });
    const { link, message } = await firstReminderLink(svc, id);
    expect(message).toMatchObject({ step: 0, channel: 'email' });

    await payByCard(context, link);
    const [payment] = await waitFor(async () => {
      const found = await paymentsOf(svc, id);
      return found.length > 0 ? found : undefined;
    });
    expect(payment).toMatchObject({ gateway: 'sandbox', duplicate: false, attribution: 'clicked' });

    // Shopify hears of it: marked paid, then tagged.
    await waitFor(() => (shopify.order(id)?.tags.includes('recoup-recovered') ? true : undefined), {
      what: 'the recoup-recovered tag in Shopify',
    });
    expect(shopify.order(id)).toMatchObject({ financialStatus: 'PAID', tags: ['recoup-recovered'] });
    const markPaid = shopify.requests.filter((r) => r.operation === 'RecoupMarkPaid');
    expect(markPaid).toHaveLength(1);
    expect(markPaid[0]).toMatchObject({ token: shopify.accessToken, variables: { input: { id: gid } } });
    expect(shopify.requests.find((r) => r.operation === 'RecoupTagOrder')?.variables).toMatchObject({
      id: gid,
      tags: ['recoup-recovered'],
    });
    const deliveries = await waitFor(
      async () => {
        const found = await writeBackDeliveries(svc, 'shopify', id);
        return found.some((d) => d.status !== 'pending') ? found : undefined;
      },
      { what: 'the write-back delivery settled' },
    );
    expect(deliveries).toEqual([expect.objectContaining({ type: 'payment.succeeded', status: 'delivered' })]);
    expect(await recoveryOf(svc, id)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });

    // What Shopify sends once the order is marked paid: recoup has it already.
    const messagesBefore = await messagesOf(svc, id);
    const operationsBefore = shopify.operations().length;
    const paidOrder = { ...order, financial_status: 'paid', updated_at: new Date().toISOString() };
    const echo = await postShopWebhook(svc, 'shopify', shopifyDelivery('orders/paid', paidOrder, secret));
    expect(echo.status).toBe(200);
    // The platform confirming recoup's own payment: not a second payment.
    expect(await echo.json()).toMatchObject({ status: 'accepted', events: [{ outcome: 'payment_confirmed' }] });
    expect((await svc.getOrder(id)).order).toMatchObject({ status: 'paid' });
    expect(await recoveryOf(svc, id)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
    await pause(3_500);
    expect(await messagesOf(svc, id)).toEqual(messagesBefore);
    expect(await paymentsOf(svc, id)).toEqual([payment]);
    // Nothing new was asked of Shopify beyond, at most, reading the order.
    expect(
      shopify
        .operations()
        .slice(operationsBefore)
        .filter((op) => op !== 'RecoupOrderState'),
    ).toEqual([]);

    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });

  it("an abandoned checkout, whatever the link mode: the reminder's link is counted and leads to the checkout's recovery page; completed, the recovery ends", async () => {
    const shopPage = await startShopPage('Tea House checkout');
    onTestFinished(() => shopPage.close());
    // The default link mode: only Shopify can take a checkout's payment, so its page is where the link leads.
    const { svc, shopify } = await startShop();
    const context = await newMobileContext(browser, { locale: 'en-US' });
    onTestFinished(() => context.close());
    const watch = watchContext(context);

    const recoveryUrl = `${shopPage.url}/checkouts/ac/recover?key=${uniqueNumber()}`;
    const checkout = abandonedCheckout(recoveryUrl);
    const token = String(checkout.token);
    const created = await postShopWebhook(svc, 'shopify', shopifyDelivery('checkouts/create', checkout, secret));
    expect(created.status).toBe(200);
    expect(await orderRow(svc, token)).toMatchObject({
      status: 'pending',
      platform: 'shopify',
      payment_url: recoveryUrl,
    });

    const recovery = await waitFor(() => recoveryOf(svc, token), { what: 'the abandoned recovery' });
    expect(recovery).toMatchObject({ state: 'active', failure_category: 'abandoned' });
    const { link, message } = await firstReminderLink(svc, token);

    // A link scanner fetching the reminder's link is not the customer: nothing counted, nothing followed.
    expect((await fetch(link, { redirect: 'manual' })).status).toBe(200);
    expect(await clicksOf(svc, token)).toEqual([]);
    expect(shopPage.requests).toEqual([]);

    // The customer opens it: recoup's page reports the click, and the browser moves on to Shopify's page.
    const page = await context.newPage();
    const response = await page.goto(link);
    expect(response?.status()).toBe(200);
    await page.waitForURL(recoveryUrl);
    expect(await page.locator('h1').innerText()).toBe('Tea House checkout');
    expect(shopPage.requests).toContain(recoveryUrl.slice(shopPage.url.length));
    const clicks = await waitFor(
      async () => {
        const found = await clicksOf(svc, token);
        return found.length > 0 ? found : undefined;
      },
      { what: "the click reported by recoup's page" },
    );
    expect(clicks).toEqual([expect.objectContaining({ message_id: message.id })]);
    // The customer completed the checkout on Shopify.
    const completed = {
      ...checkout,
      completed_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
      gateway: 'shopify_payments',
    };
    const done = await postShopWebhook(svc, 'shopify', shopifyDelivery('checkouts/update', completed, secret));
    expect(done.status).toBe(200);
    expect(await done.json()).toMatchObject({ status: 'accepted', events: [{ outcome: 'order_paid' }] });
    expect(await recoveryOf(svc, token)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
    expect(await paymentsOf(svc, token)).toEqual([
      expect.objectContaining({ gateway: 'shop', duplicate: false, attribution: 'clicked' }),
    ]);
    // Back from Shopify's page skips recoup's (it replaced itself), rather than being sent forward again.
    await page.goBack();
    expect(page.url()).toBe('about:blank');

    // Past when the second email was due: nothing more sent, and Shopify was not asked to mark anything paid.
    await pause(3_500);
    expect(await sentMessagesOf(svc, token)).toEqual([expect.objectContaining({ id: message.id })]);
    expect(shopify.operations().filter((op) => op !== 'RecoupOrderState')).toEqual([]);

    watch.assertNoErrors();
  });
  it("an abandoned checkout's link in a browser without JavaScript: its button counts the click and leads to the checkout", async () => {
    const shopPage = await startShopPage('Tea House checkout');
    onTestFinished(() => shopPage.close());
    const { svc } = await startShop();
    const recoveryUrl = `${shopPage.url}/checkouts/ac/recover?key=${uniqueNumber()}`;
    const checkout = abandonedCheckout(recoveryUrl);
    const token = String(checkout.token);
    expect((await postShopWebhook(svc, 'shopify', shopifyDelivery('checkouts/create', checkout, secret))).status).toBe(
      200,
    );
    const { link, message } = await firstReminderLink(svc, token);

    const noScript = await browser.newContext({ javaScriptEnabled: false, locale: 'en-US' });
    onTestFinished(() => noScript.close());
    const watch = watchContext(noScript);
    const page = await noScript.newPage();
    expect((await page.goto(link))?.status()).toBe(200);
    expect(await clicksOf(svc, token)).toEqual([]);
    expect(shopPage.requests).toEqual([]);

    // The checkout's customer_locale is ja: the page speaks Japanese.
    expect(await page.locator('html').getAttribute('lang')).toBe('ja');
    // The page's CSP lets the button's POST be redirected to the shop's page, and nowhere else.
    await page.getByRole('button', { name: pageStringsFor('ja').continueButton }).click();
    await page.waitForURL(recoveryUrl);
    expect(await page.locator('h1').innerText()).toBe('Tea House checkout');
    expect(await clicksOf(svc, token)).toEqual([expect.objectContaining({ message_id: message.id })]);
    watch.assertNoErrors();
  });
});
