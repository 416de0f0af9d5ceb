import { createHmac, randomInt } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { simpleParser } from 'mailparser';
import type { BrowserContext, Page } from 'playwright-core';
import Stripe from 'stripe';
import { expect } from 'vitest';
import { rows } from '../../../src/db/rows.js';
import { waitFor, type TestService } from '../../helpers/service.js';

// What the connector end-to-end tests share: platform deliveries signed as each platform signs
// them, the reminders and rows they lead to, and the customer paying on recoup's retry page.

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A payload from test/fixtures/<platform>/, parsed afresh for each use. */
export function fixture(platform: 'woocommerce' | 'shopify' | 'stripe', name: string): Json {
  return JSON.parse(
    fs.readFileSync(new URL(`../../fixtures/${platform}/${name}.json`, import.meta.url), 'utf8'),
  ) as Json;
}

/** A number no other run uses at the same time: ids, phone digits and addresses are built from it. */
export function uniqueNumber(digits = 9): number {
  return randomInt(10 ** (digits - 1), 10 ** digits);
}

/** A delivery as a platform posts it: the exact bytes its signature covers, and its headers. */
export interface ShopDelivery {
  body: string;
  headers: Record<string, string>;
}

export function postShopWebhook(svc: TestService, platform: string, delivery: ShopDelivery): Promise<Response> {
  return fetch(`${svc.url}/webhooks/shops/${platform}`, {
    method: 'POST',
    headers: delivery.headers,
    body: delivery.body,
  });
}

/** WooCommerce: base64 HMAC-SHA256 of the body with the webhook's secret. */
export function wooDelivery(order: Json, secret: string, topic = 'order.updated'): ShopDelivery {
  const body = JSON.stringify(order);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)',
      'x-wc-webhook-source': 'https://shop.example.com/',
      'x-wc-webhook-topic': topic,
      'x-wc-webhook-resource': topic.split('.')[0] ?? 'order',
      'x-wc-webhook-event': topic.split('.')[1] ?? 'updated',
      'x-wc-webhook-signature': createHmac('sha256', secret).update(body).digest('base64'),
      'x-wc-webhook-id': '12',
      'x-wc-webhook-delivery-id': `${uniqueNumber(12)}${uniqueNumber(12)}`,
    },
  };
}

/** WooCommerce's `_gmt` dates: UTC, seconds, no zone. */
export function wooGmt(at: Date = new Date()): string {
  return at.toISOString().slice(0, 19);
}

/** Shopify: base64 HMAC-SHA256 of the body with the app's client secret. */
export function shopifyDelivery(topic: string, payload: Json, secret: string): ShopDelivery {
  const body = JSON.stringify(payload);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-shopify-topic': topic,
      'x-shopify-hmac-sha256': createHmac('sha256', secret).update(body).digest('base64'),
      'x-shopify-shop-domain': 'tea-house.myshopify.com',
      'x-shopify-api-version': '2026-10',
      'x-shopify-webhook-id': `wh-${uniqueNumber(12)}-${uniqueNumber(12)}`,
      'x-shopify-triggered-at': new Date().toISOString(),
    },
  };
}

/** Stripe: a `Stripe-Signature` header made by the SDK, timestamped now. */
export function stripeDelivery(event: Json, secret: string): ShopDelivery {
  const body = JSON.stringify(event);
  return {
    body,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret }),
    },
  };
}

export interface OrderRow {
  status: string;
  platform: string | null;
  payment_url: string | null;
  items: Array<Record<string, unknown>> | null;
}

export async function orderRow(svc: TestService, orderId: string): Promise<OrderRow | undefined> {
  const [order] = await rows<OrderRow>(
    svc.database.db,
    sql`select status, platform, payment_url, items from orders where id = ${orderId}`,
  );
  return order;
}

export interface MessageRow {
  id: string;
  step: number | null;
  channel: string;
  status: string;
  reason: string | null;
  link_token: string | null;
}

/** Every message recoup made for the order, sent or not, in step order. */
export async function messagesOf(svc: TestService, orderId: string): Promise<MessageRow[]> {
  return rows<MessageRow>(
    svc.database.db,
    sql`select id, step, channel, status, reason, link_token from messages where order_id = ${orderId}
        order by step, created_at`,
  );
}

/** The messages a provider accepted (the outbox wrote them). */
export async function sentMessagesOf(svc: TestService, orderId: string): Promise<MessageRow[]> {
  return (await messagesOf(svc, orderId)).filter((m) => m.status === 'sent' || m.status === 'delivered');
}

export async function paymentsOf(
  svc: TestService,
  orderId: string,
): Promise<
  Array<{ id: string; gateway: string | null; external_id: string; duplicate: boolean; attribution: string }>
> {
  return rows(
    svc.database.db,
    sql`select id, gateway, external_id, duplicate, attribution from payments where order_id = ${orderId}
        order by created_at`,
  );
}

export async function clicksOf(svc: TestService, orderId: string): Promise<Array<{ id: string; message_id: string }>> {
  return rows(svc.database.db, sql`select id, message_id from clicks where order_id = ${orderId}`);
}

/** The order's recovery as its row holds it. */
export async function recoveryOf(
  svc: TestService,
  orderId: string,
): Promise<{ state: string; ended_reason: string | null; failure_category: string } | undefined> {
  const [recovery] = await rows<{ state: string; ended_reason: string | null; failure_category: string }>(
    svc.database.db,
    sql`select state, ended_reason, failure_category from recoveries where order_id = ${orderId}`,
  );
  return recovery;
}

/** Deliveries of outbound events to a connector's write-back endpoint, with each one's last attempt. */
export async function writeBackDeliveries(
  svc: TestService,
  platform: string,
  orderId: string,
): Promise<Array<{ type: string; status: string; excerpt: string | null; error: string | null }>> {
  return rows(
    svc.database.db,
    sql`select e.type, d.status, a.excerpt, a.error
        from webhook_deliveries d
        join outbound_events e on e.id = d.event_id
        left join lateral (select excerpt, error from webhook_attempts
                           where delivery_id = d.id order by attempt desc limit 1) a on true
        where d.endpoint_id = ${`ep_${platform}`} and e.order_id = ${orderId}
        order by e.written`,
  );
}

const tokenPattern = '[A-Za-z0-9_-]{22}';

/**
 * The retry link of the order's first reminder, as the customer got it: read from the outbox
 * file the provider wrote (the SMS body, or the email's text part), and checked to be the link
 * recoup recorded for that message.
 */
export async function firstReminderLink(
  svc: TestService,
  orderId: string,
): Promise<{ link: string; message: MessageRow }> {
  const message = await waitFor(async () => (await sentMessagesOf(svc, orderId))[0], {
    what: `the first reminder for order ${orderId}`,
  });
  const smsFile = path.join(svc.outboxDir, `${message.id}.sms.json`);
  const emlFile = path.join(svc.outboxDir, `${message.id}.eml`);
  let text: string;
  if (fs.existsSync(smsFile)) {
    text = (JSON.parse(fs.readFileSync(smsFile, 'utf8')) as { body: string }).body;
  } else {
    const mail = await simpleParser(fs.readFileSync(emlFile));
    text = mail.text ?? '';
  }
  const match = new RegExp(`${svc.config.publicUrl.replace(/[.]/g, '\\.')}/r/${tokenPattern}`).exec(text);
  if (!match) throw new Error(`no retry link in the reminder:\n${text}`);
  expect(match[0]).toBe(`${svc.config.publicUrl}/r/${message.link_token}`);
  return { link: match[0], message };
}

/**
 * The customer pays by card on recoup's retry page, through the sandbox gateway's checkout, and
 * lands on the thank-you page.
 */
export async function payByCard(context: BrowserContext, link: string): Promise<Page> {
  const page = await context.newPage();
  expect((await page.goto(link))?.status()).toBe(200);
  await page.getByLabel('Card').check();
  await page.getByRole('button', { name: /^Pay / }).click();
  await page.waitForURL(/\/sandbox\/checkout\/sbx_/);
  await page.getByRole('button', { name: /^Pay / }).click();
  await page.waitForURL(new RegExp(`/r/${tokenPattern}/return\\?attempt=att_`));
  expect(await page.locator('h1').innerText()).toBe('Thank you!');
  return page;
}

/** A page standing in for the shop's own checkout, served locally so the browser can load it. */
export interface ShopPage {
  readonly url: string;
  /** Paths requested, oldest first. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startShopPage(title: string): Promise<ShopPage> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '/');
    if ((req.url ?? '/').startsWith('/favicon')) {
      res.writeHead(204);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><title>${title}</title></head><body><h1>${title}</h1></body></html>`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Waits this long: for checks that something did NOT happen once it would have been due. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
