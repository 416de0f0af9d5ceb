import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startFakeWoocommerce, type FakeWoocommerce } from '../helpers/fake-woocommerce.js';
import { freePort, startTestService, waitFor, type TestService } from '../helpers/service.js';
import { closeBrowser, launchBrowser, newMobileContext, watchContext } from './helpers/browser.js';
import {
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
  uniqueNumber,
  wooDelivery,
  wooGmt,
  writeBackDeliveries,
  type Json,
} from './helpers/shop-webhooks.js';

// A WooCommerce shop's own webhooks drive a recovery in a real recoup, and recoup tells the shop
// (through a local fake of its REST API) about the payment it collected, and only about that one.

const secret = 'woo-webhook-secret-e2e';

/** A first reminder a second after the failure; the second one is due two seconds after that. */
const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 3s, channel: email, template: last-call }
`;

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await closeBrowser(browser);
});

async function startShop(): Promise<{ svc: TestService; woo: FakeWoocommerce }> {
  const woo = await startFakeWoocommerce();
  onTestFinished(() => woo.close());
  const port = await freePort();
  const svc = await startTestService({
    cadences: cadence,
    env: {
      PORT: String(port),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      SHOP_NAME: 'Lantern & Loom',
      WEBHOOK_POLL_INTERVAL: '50ms',
      WOOCOMMERCE_WEBHOOK_SECRET: secret,
      WOOCOMMERCE_URL: woo.url,
      WOOCOMMERCE_CONSUMER_KEY: woo.consumerKey,
      WOOCOMMERCE_CONSUMER_SECRET: woo.consumerSecret,
    },
  });
  onTestFinished(() => svc.close());
  return { svc, woo };
}

/** The failed-order fixture as a new order of a new customer, modified now. */
function wooOrder(status: string): Json {
  const order = fixture('woocommerce', 'order-failed');
  const n = uniqueNumber();
  order.id = n;
  order.number = String(n);
  order.customer_id = uniqueNumber(6);
  order.status = status;
  order.date_created_gmt = wooGmt();
  order.date_modified_gmt = wooGmt();
  order.billing.email = `jane.${n}@example.co.uk`;
  // A mobile range the retry page's phone check accepts as well.
  order.billing.phone = `+44 (0)7400 ${String(n).slice(0, 6)}`;
  order.payment_url = `https://shop.example.com/checkout/order-pay/${n}/?pay_for_order=true&key=wc_order_${n}`;
  // The documented example's product images live on a host this machine cannot reach; the retry
  // page would try to show them (test/e2e/cart-lines.e2e.test.ts covers images).
  order.line_items = (order.line_items as Json[]).map(({ image: _image, ...line }) => line);
  return order;
}

/** The same order as WooCommerce sends it after a change of status. */
function withStatus(order: Json, status: string, fields: Json = {}): Json {
  return { ...order, status, date_modified_gmt: wooGmt(), ...fields };
}

const putsTo = (woo: FakeWoocommerce, orderId: number) =>
  woo.requests.filter((r) => r.method === 'PUT' && r.path === `/wp-json/wc/v3/orders/${orderId}`);

describe('WooCommerce → recoup → WooCommerce, end to end', () => {
  it('a failed order: reminder, paid on the retry page, WooCommerce marked paid with a note; its own echo changes nothing', async () => {
    const { svc, woo } = await startShop();
    const context = await newMobileContext(browser, { locale: 'en-GB', timezoneId: 'Europe/London' });
    onTestFinished(() => context.close());
    const watch = watchContext(context);

    const order = wooOrder('failed');
    const id = String(order.id);
    woo.addOrder(order.id as number, { status: 'failed' });

    const failed = await postShopWebhook(svc, 'woocommerce', wooDelivery(order, secret));
    expect(failed.status).toBe(200);
    expect(await failed.json()).toMatchObject({ status: 'accepted', events: [{ status: 'accepted' }] });

    // The order is recoup's under WooCommerce's id, with what the platform told of it.
    const view = await svc.getOrder(id);
    expect(view.order).toMatchObject({
      id,
      status: 'pending',
      amount: 2935,
      currency: 'GBP',
      customer_id: `woo-cus-${order.customer_id}`,
    });
    expect(view.recovery).toMatchObject({ state: 'active', failure_category: expect.any(String) as unknown });
    expect(await orderRow(svc, id)).toMatchObject({
      platform: 'woocommerce',
      payment_url: order.payment_url,
      items: [
        { name: 'Woo Single #1', quantity: 2, amount: 600, sku: 'WOO-SINGLE-1' },
        { name: 'Ship Your Idea – Color: Black, Size: M Test', quantity: 1, amount: 1200 },
      ],
    });

    const { link, message } = await firstReminderLink(svc, id);
    expect(message).toMatchObject({ step: 0, channel: 'sms' });
    await payByCard(context, link);

    // Recoup's write-back: WooCommerce's payment completion with the gateway's transaction, and one note.
    const [payment] = await waitFor(async () => {
      const found = await paymentsOf(svc, id);
      return found.length > 0 ? found : undefined;
    });
    expect(payment).toMatchObject({ gateway: 'sandbox', duplicate: false, attribution: 'clicked' });
    await waitFor(() => (woo.order(order.id as number)?.notes.length ? true : undefined), {
      what: 'the note on the WooCommerce order',
    });
    const puts = putsTo(woo, order.id as number);
    expect(puts).toHaveLength(1);
    expect(puts[0]).toMatchObject({
      authorized: true,
      status: 200,
      body: { set_paid: true, transaction_id: payment!.external_id },
    });
    const shopOrder = woo.order(order.id as number)!;
    expect(shopOrder).toMatchObject({ status: 'processing', transactionId: payment!.external_id });
    expect(shopOrder.notes).toHaveLength(1);
    expect(shopOrder.notes[0]!.note).toMatch(/^Paid through recoup: card via sandbox, GBP 29\.35, payment pay_/);
    expect(shopOrder.notes[0]!.customerNote).toBe(false);
    // The delivery is recorded once WooCommerce has answered the last call.
    const deliveries = await waitFor(
      async () => {
        const found = await writeBackDeliveries(svc, 'woocommerce', id);
        return found.length === 3 && found.every((d) => d.status !== 'pending') ? found : undefined;
      },
      { what: 'the write-back deliveries settled' },
    );
    expect(deliveries).toEqual([
      // A failed order is not one WooCommerce would cancel: nothing to hold.
      expect.objectContaining({
        type: 'recovery.started',
        status: 'delivered',
        excerpt: expect.stringMatching(/^nothing to do: WooCommerce order \d+ is failed/) as unknown,
      }),
      expect.objectContaining({
        type: 'payment.succeeded',
        status: 'delivered',
        excerpt: expect.stringMatching(/marked paid, note added/) as unknown,
      }),
      expect.objectContaining({ type: 'recovery.ended', status: 'delivered' }),
    ]);
    expect((await recoveryOf(svc, id))?.state).toBe('recovered');

    // What WooCommerce sends after set_paid: the order, now processing. Recoup has it already.
    const messagesBefore = await messagesOf(svc, id);
    const requestsBefore = woo.requests.length;
    const echo = await postShopWebhook(
      svc,
      'woocommerce',
      wooDelivery(withStatus(order, 'processing', { transaction_id: payment!.external_id }), secret),
    );
    expect(echo.status).toBe(200);
    // The platform confirming recoup's own payment: not a second payment.
    expect(await echo.json()).toMatchObject({ status: 'accepted', events: [{ outcome: 'payment_confirmed' }] });
    expect((await svc.getOrder(id)).order).toMatchObject({ status: 'paid' });
    expect(await recoveryOf(svc, id)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
    // Past when the second reminder would have been due: nothing more went to the customer or the shop.
    await pause(3_500);
    expect(await messagesOf(svc, id)).toEqual(messagesBefore);
    // The ledger holds one payment, recoup's.
    expect(await paymentsOf(svc, id)).toEqual([payment]);
    expect(woo.requests.slice(requestsBefore).filter((r) => r.method !== 'GET')).toEqual([]);

    watch.assertNoErrors();
    expect(watch.foreignRequests()).toEqual([]);
  });

  it('pending, then failed, then paid at the shop: the recovery ends recovered, no more reminders, no set_paid', async () => {
    const { svc, woo } = await startShop();
    const order = wooOrder('pending');
    const id = String(order.id);
    woo.addOrder(order.id as number, { status: 'pending' });

    const created = await postShopWebhook(svc, 'woocommerce', wooDelivery(order, secret, 'order.created'));
    expect(created.status).toBe(200);
    expect((await svc.getOrder(id)).recovery).toBeNull();

    woo.order(order.id as number)!.status = 'failed';
    const failed = await postShopWebhook(svc, 'woocommerce', wooDelivery(withStatus(order, 'failed'), secret));
    expect(failed.status).toBe(200);
    expect((await svc.getOrder(id)).recovery).toMatchObject({ state: 'active' });
    await firstReminderLink(svc, id);
    // WooCommerce's dates are whole seconds: from the next one on, the payment is after the reminder.
    await pause(1_000);

    // The customer paid on the shop's own checkout; WooCommerce reports the order processing.
    const paid = await postShopWebhook(
      svc,
      'woocommerce',
      wooDelivery(withStatus(order, 'processing', { transaction_id: 'ch_shop_own_1' }), secret),
    );
    expect(paid.status).toBe(200);
    expect(await paid.json()).toMatchObject({ status: 'accepted', events: [{ outcome: 'order_paid' }] });
    expect(await recoveryOf(svc, id)).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
    expect(await paymentsOf(svc, id)).toEqual([
      expect.objectContaining({ gateway: 'shop', duplicate: false, attribution: 'influenced' }),
    ]);

    // The write-back heard of the payment and left WooCommerce alone: the shop took it itself.
    const deliveries = await waitFor(
      async () => {
        const found = await writeBackDeliveries(svc, 'woocommerce', id);
        return found.length === 3 && found.every((d) => d.status === 'delivered') ? found : undefined;
      },
      { what: 'the write-back deliveries of the shop-collected payment' },
    );
    expect(deliveries.map((d) => [d.type, d.excerpt])).toEqual([
      ['recovery.started', expect.stringMatching(/^nothing to do: WooCommerce order \d+ is failed/)],
      ['payment.succeeded', expect.stringMatching(/^nothing to do: the shop reported this payment itself/)],
      ['recovery.ended', expect.stringMatching(/^nothing to do: the recovery ended recovered/)],
    ]);

    // Past when the second reminder was due: still the one reminder, and nothing sent to WooCommerce.
    await pause(3_500);
    expect(await sentMessagesOf(svc, id)).toHaveLength(1);
    expect(putsTo(woo, order.id as number)).toEqual([]);
    expect(woo.requests.filter((r) => r.method !== 'GET')).toEqual([]);
    expect(woo.order(order.id as number)?.notes).toEqual([]);
  });
});
