import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { isRecoupError, RecoupError } from '../platform/errors.js';
import { callApi, embeddedServerApi, localApiKey, type ApiTarget } from './api-client.js';

interface DemoOrder {
  id: string;
  amount: number;
  currency: string;
  description: string;
  customer: { id: string; name: string; email: string; phone: string; locale: string; timezone: string };
  failure: { gateway: string; method: string; code: string };
}

/**
 * Sends a handful of sample orders to a running recoup, pinned to the bundled `demo`
 * cadence (second-level delays), then watches the outbox fill up. One order is paid
 * midway, to show the reminders stop.
 */
export async function runDemo(config: Config, options: { url?: string; key?: string }): Promise<number> {
  // The recoup running here on the embedded database says where it listens; else PUBLIC_URL
  // (by default http://localhost:PORT).
  const running = embeddedServerApi(config);
  const api: ApiTarget = {
    url: (options.url ?? running?.url ?? config.publicUrl).replace(/\/+$/, ''),
    key: options.key ?? localApiKey(config),
  };
  const url = api.url;
  const run = randomBytes(3).toString('hex');
  const orders: DemoOrder[] = [
    {
      id: `demo-${run}-1`,
      amount: 12900,
      currency: 'CNY',
      description: '2 件商品：羊毛围巾、手套',
      customer: customer(run, 1, '李雷', 'li.lei', '+8613800138000', 'zh-CN', 'Asia/Shanghai'),
      failure: { gateway: 'stripe', method: 'card', code: 'insufficient_funds' },
    },
    {
      id: `demo-${run}-2`,
      amount: 4999,
      currency: 'USD',
      description: 'Running shoes, size 42',
      customer: customer(run, 2, 'Ada Lovelace', 'ada', '+14155550123', 'en', 'America/New_York'),
      failure: { gateway: 'stripe', method: 'card', code: 'expired_card' },
    },
    {
      id: `demo-${run}-3`,
      amount: 25800,
      currency: 'CNY',
      description: '智能手表',
      customer: customer(run, 3, '韩梅梅', 'han.meimei', '+8613900139000', 'zh-CN', 'Asia/Shanghai'),
      failure: { gateway: 'alipay', method: 'alipay', code: 'ACQ.SYSTEM_ERROR' },
    },
    {
      id: `demo-${run}-4`,
      amount: 1999,
      currency: 'USD',
      description: 'Gift card',
      customer: customer(run, 4, 'Grace Hopper', 'grace', '+14155550199', 'en-US', 'America/Los_Angeles'),
      failure: { gateway: 'stripe', method: 'card', code: 'card_declined' },
    },
  ];

  console.log(`recoup demo: sending ${orders.length} failed payments to ${url} (cadence "demo")`);
  for (const order of orders) {
    const status = await postEvent(api, {
      id: `evt-${order.id}-failed`,
      type: 'payment.failed',
      occurred_at: new Date().toISOString(),
      order: {
        id: order.id,
        amount: order.amount,
        currency: order.currency,
        description: order.description,
        cadence: 'demo',
        customer: order.customer,
      },
      payment: { gateway: order.failure.gateway, method: order.failure.method, failure_code: order.failure.code },
    });
    console.log(`  ${order.id}  ${order.customer.locale.padEnd(5)}  ${order.currency} ${order.amount}  → ${status}`);
  }

  const paid = orders[3];
  const outbox = config.outboxDir;
  const before = countOutbox(outbox);
  console.log(`\nWatching ${outbox} for 45 s (${paid?.id} gets paid after 20 s: its reminders stop).`);
  const started = Date.now();
  let paidSent = false;
  let last = -1;
  while (Date.now() - started < 45_000) {
    if (!paidSent && paid && Date.now() - started > 20_000) {
      await postEvent(api, {
        id: `evt-${paid.id}-paid`,
        type: 'payment.succeeded',
        occurred_at: new Date().toISOString(),
        order: {
          id: paid.id,
          amount: paid.amount,
          currency: paid.currency,
          description: paid.description,
          customer: paid.customer,
        },
        payment: { gateway: 'stripe', method: 'card' },
      });
      paidSent = true;
      console.log(`  ${Math.round((Date.now() - started) / 1000)}s  ${paid.id} paid`);
    }
    const now = countOutbox(outbox) - before;
    if (now !== last) {
      console.log(`  ${Math.round((Date.now() - started) / 1000)}s  ${now} new message(s) in the outbox`);
      last = now;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  console.log(`\nDone. Open the .sms.json and .eml files in ${outbox};`);
  console.log(`order timelines: curl -H "Authorization: Bearer <key>" ${url}/v1/orders/${orders[0]?.id}`);
  return 0;
}

function customer(run: string, n: number, name: string, user: string, phone: string, locale: string, timezone: string) {
  return { id: `demo-cus-${run}-${n}`, name, email: `${user}@example.com`, phone, locale, timezone };
}

async function postEvent(api: ApiTarget, body: unknown): Promise<string> {
  try {
    const { status, body: answer } = await callApi<{ outcome?: string; status: string }>(api, {
      method: 'POST',
      path: '/v1/events',
      json: body,
    });
    return `${status} ${answer.outcome ?? ''}`.trim();
  } catch (err) {
    if (!isRecoupError(err, 'unavailable')) throw err;
    throw new RecoupError(
      'unavailable',
      `${err.message}: start it with "npm start" first, or give its address with --url`,
      { cause: err },
    );
  }
}

function countOutbox(dir: string): number {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.eml') || f.endsWith('.sms.json')).length;
  } catch {
    return 0;
  }
}
