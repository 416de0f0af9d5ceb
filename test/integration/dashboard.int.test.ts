import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardCharts } from '../../src/console/dashboard-view.js';
import { rows } from '../../src/db/rows.js';
import { channels, failureCategories, paymentMethods } from '../../src/domain/vocabulary.js';
import { recordPayment } from '../../src/payments/record-payment.js';
import { makeEvent, signIn, startTestService, type TestService } from '../helpers/service.js';

// The dashboard as the server renders it, in both languages: every word of the page and every
// chart label (the data the chart script draws from) in the page's language, no code of the
// vocabulary (`sms`, `gateway_outage`, `wechat_pay`) left for a person to decode, and steps
// numbered as the order timeline numbers them.

const cadence = `
name: default
expire_after: 7d
steps:
  - { after: 1h, channel: sms, template: nudge }
  - { after: 1d, channel: email, template: last-call }
`;

const html = { accept: 'text/html' };
let svc: TestService;
let app: FastifyInstance;
let opsCookie: string;

beforeAll(async () => {
  svc = await startTestService({ cadences: cadence, roles: { http: true, worker: false } });
  if (!svc.service.app) throw new Error('no app');
  app = svc.service.app;
  opsCookie = (await signIn(svc, ['ops'])).cookie;
  await seed();
});
afterAll(async () => {
  await svc?.close();
});

/** Six CNY orders: three methods, three failure categories, SMS and email reminders, half paid. */
async function seed() {
  const db = svc.database.db;
  const failures = [
    ['card', 'insufficient_funds'],
    ['alipay', 'processing_error'],
    ['wechat_pay', 'expired_card'],
  ] as const;
  for (let i = 0; i < 6; i += 1) {
    const [method, code] = failures[i % 3] ?? failures[0];
    const event = makeEvent({ payment: { gateway: 'stripe', method, failure_code: code } });
    expect((await svc.post(event)).status).toBe(202);
    const orderId = event.order.id;
    const [recovery] = await rows<{ id: string; customer_id: string }>(
      db,
      sql`select id, customer_id from recoveries where order_id = ${orderId}`,
    );
    if (!recovery) throw new Error(`no recovery for ${orderId}`);
    const smsAt = new Date(Date.now() - 3 * 3_600_000);
    const emailAt = new Date(smsAt.getTime() + 3_600_000);
    for (const [step, channel, sentAt] of [
      [0, 'sms', smsAt],
      [1, 'email', emailAt],
    ] as const) {
      await db.execute(
        sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                                  sent_at, created_at, updated_at)
            values (${`msg_${orderId}_${step}`}, ${recovery.id}, ${orderId}, ${recovery.customer_id}, ${step},
                    ${channel}, 'nudge', 'sent', 'x', ${sentAt}, ${sentAt}, ${sentAt})`,
      );
    }
    if (i % 2 === 0) {
      await db.transaction(async (tx) => {
        await tx.execute(sql`select id from orders where id = ${orderId} for update`);
        await recordPayment(
          tx,
          {
            orderId,
            gateway: 'sandbox',
            externalId: `pay_${orderId}`,
            amount: 12_900,
            currency: 'CNY',
            // Won by the SMS (orders 0 and 4) or by the email after it (order 2).
            paidAt: new Date((i % 4 === 0 ? smsAt : emailAt).getTime() + 60_000),
          },
          { now: new Date(), clickWindowMs: 86_400_000 },
        );
      });
    }
  }
}

async function dashboard(query: string) {
  const response = await app.inject({
    method: 'GET',
    url: `/dashboard?${query}`,
    headers: { ...html, cookie: opsCookie },
  });
  expect(response.statusCode, response.body).toBe(200);
  const attribute = /data-report="([^"]*)"/.exec(response.body)?.[1];
  if (attribute === undefined) throw new Error('no chart data on the page');
  const charts = JSON.parse(unescapeHtml(attribute)) as DashboardCharts;
  return { body: response.body, charts };
}

/** What the browser makes of an attribute value Handlebars escaped. */
function unescapeHtml(text: string): string {
  const entities: Record<string, string> = {
    quot: '"',
    '#x27': "'",
    '#x3D': '=',
    '#x60': '`',
    lt: '<',
    gt: '>',
    amp: '&',
  };
  return text.replace(/&(quot|#x27|#x3D|#x60|lt|gt|amp);/g, (_, name: string) => entities[name] ?? '');
}

/** Every label the charts show: axis categories and series names. */
function chartLabels(charts: DashboardCharts): string[] {
  return [
    charts.rateAxis,
    ...charts.revenue.series.map((s) => s.label),
    ...charts.funnel.labels,
    ...charts.byStep.labels,
    ...charts.byCategory.labels,
    ...charts.byMethod.labels,
    ...(charts.holdout?.labels ?? []),
  ];
}

const codes = new Set<string>([...channels, ...failureCategories, ...paymentMethods]);
/** The page's text (tags, attribute values and the chart data left out). */
const visibleText = (body: string) =>
  body
    .replace(/<script[\s\S]*?<\/script>/g, '')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ');

describe('the dashboard', () => {
  it('reads in Chinese throughout: the frame, the page and every chart label', async () => {
    const { body, charts } = await dashboard('lang=zh-CN');
    expect(body).toContain('<html lang="zh-CN">');
    const text = visibleText(body);
    const english = ['Dashboard', 'Cadences', 'Orders', 'Suppressions', 'Webhooks', 'Health', 'Sign out', 'console'];
    for (const word of english) expect(text, word).not.toContain(word);
    expect(text).toContain('数据看板');
    expect(text).toContain('退出登录');
    expect(body).toMatch(/<nav aria-label="栏目">/);
    expect(body).toContain('<title>挽回收入 · recoup 控制台</title>');

    const labels = chartLabels(charts);
    expect(labels.filter((label) => codes.has(label))).toEqual([]);
    // Nothing reads like a code: words of the vocabulary are labelled, not passed through.
    expect(labels.filter((label) => /^[a-z_]+$/.test(label))).toEqual([]);
    expect(charts.revenue.series.map((s) => s.label).sort()).toEqual(['短信', '邮件'].sort());
    expect(charts.byMethod.labels).toEqual(expect.arrayContaining(['银行卡', '支付宝', '微信支付']));
    expect(charts.byCategory.labels).toEqual(expect.arrayContaining(['余额不足', '支付网关故障', '银行卡信息有误']));
    // The first step is step 0, as on the order timeline (`SMS step 0 · nudge`).
    expect(charts.byStep.labels).toEqual(['步骤 0', '步骤 1']);
  });

  it('labels the same charts in English, steps from 0', async () => {
    const { body, charts } = await dashboard('lang=en');
    expect(body).toContain('<html lang="en">');
    expect(chartLabels(charts).filter((label) => codes.has(label))).toEqual([]);
    expect(charts.revenue.series.map((s) => s.label).sort()).toEqual(['Email', 'SMS']);
    expect(charts.byMethod.labels).toEqual(expect.arrayContaining(['Card', 'Alipay', 'WeChat Pay']));
    expect(charts.byCategory.labels).toEqual(
      expect.arrayContaining(['Insufficient funds', 'Payment gateway outage', 'Wrong card details']),
    );
    expect(charts.byStep.labels).toEqual(['Step 0', 'Step 1']);
  });

  it('picks Chinese from the browser’s language without ?lang', async () => {
    const response = await app.inject({
      method: 'GET',
      url: '/dashboard',
      headers: { ...html, cookie: opsCookie, 'accept-language': 'zh-CN,zh;q=0.9,en;q=0.8' },
    });
    expect(response.body).toContain('<html lang="zh-CN">');
    expect(visibleText(response.body)).not.toContain('Sign out');
  });
});
