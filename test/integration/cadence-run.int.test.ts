import fs from 'node:fs';
import path from 'node:path';
import { Cluster } from 'ioredis';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type LocalRedisCluster } from '../helpers/redis-cluster.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const secondsCadence = `
name: default
expire_after: 20s
steps:
  - { after: 1s, channel: sms,   template: nudge }
  - { after: 2s, channel: email, template: alternative-methods, offer_methods: [alipay, wechat_pay, card] }
  - { after: 5s, channel: sms,   template: last-call }
`;

const shortCadence = `
name: default
expire_after: 3s
steps:
  - { after: 1s, channel: sms, template: nudge }
`;

function outboxFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.sms.json') || f.endsWith('.eml'));
  } catch {
    return [];
  }
}

describe('a whole cadence, end to end', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ cadences: secondsCadence });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('sends SMS then email, then stops for good when the order is paid', () => sendsThenStopsWhenPaid(svc), 30_000);
});

describe('a whole cadence, end to end, on a three-master Redis Cluster', () => {
  let cluster: LocalRedisCluster;
  let svc: TestService;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    // The hash tag puts every key of the queue in one slot, as BullMQ's multi-key scripts need.
    svc = await startTestService({
      cadences: secondsCadence,
      prefix: '{recoup}',
      env: { REDIS_CLUSTER_NODES: cluster.spec },
    });
  });
  afterAll(async () => {
    await svc?.close();
    await cluster?.stop();
  });

  it('sends SMS then email, then stops for good when the order is paid', async () => {
    await sendsThenStopsWhenPaid(svc);
    // The queue really lives on the cluster: its keys sit in the {recoup} slot there.
    const client = new Cluster(cluster.nodes);
    try {
      expect(await client.exists('{recoup}:steps:meta')).toBe(1);
      expect(await client.exists('{recoup}:recoup:promoted')).toBe(1);
    } finally {
      client.disconnect();
    }
  }, 40_000);
});

async function sendsThenStopsWhenPaid(svc: TestService): Promise<void> {
  const failed = makeEvent();
  expect((await svc.post(failed)).status).toBe(202);

  const smsFile = await waitFor(() => outboxFiles(svc.outboxDir).find((f) => f.endsWith('.sms.json')), {
    what: 'the first SMS',
  });
  const sms = JSON.parse(fs.readFileSync(path.join(svc.outboxDir, smsFile), 'utf8')) as { to: string; body: string };
  expect(sms.to).toBe('+8613800138000');
  expect(sms.body).toMatch(/https:\/\/pay\.example-shop\.com\/r\/[A-Za-z0-9_-]{22}/);

  const emlFile = await waitFor(() => outboxFiles(svc.outboxDir).find((f) => f.endsWith('.eml')), {
    what: 'the email',
  });
  const mail = await simpleParser(fs.readFileSync(path.join(svc.outboxDir, emlFile)));
  expect(mail.to && 'text' in mail.to ? mail.to.text : '').toContain('li@example.com');
  expect(mail.text).toMatch(/https:\/\/pay\.example-shop\.com\/r\/[A-Za-z0-9_-]{22}/);

  const paid = { ...makeEvent({ type: 'payment.succeeded', payment: { gateway: 'stripe', method: 'alipay' } }) };
  paid.order = failed.order;
  expect((await svc.post(paid)).status).toBe(202);

  const view = await svc.getOrder(failed.order.id);
  expect(view.recovery).toMatchObject({ state: 'recovered', ended_reason: 'paid' });
  expect(view.messages.map((m) => [m.step, m.channel, m.status])).toEqual([
    [0, 'sms', 'sent'],
    [1, 'email', 'sent'],
  ]);
  // The ops API tells of each link's state, never the link: it is a bearer credential that shows the
  // customer's unmasked contact and lets its holder change it.
  expect(view.messages[0]).toMatchObject({
    to: '+86*******8000',
    link: { state: 'open', expires_at: expect.any(String) as unknown },
  });
  expect(JSON.stringify(view)).not.toMatch(/\/r\/[A-Za-z0-9_-]{22}/);

  // The third step was due at 5 s: wait past it and check nothing else went out.
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  expect(outboxFiles(svc.outboxDir)).toHaveLength(2);
  const after = await svc.getOrder(failed.order.id);
  expect(after.messages).toHaveLength(2);
}

describe('a cadence that runs out', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ cadences: shortCadence });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('ends the recovery as exhausted after expire_after', async () => {
    const failed = makeEvent();
    await svc.post(failed);
    const view = await waitFor(
      async () => {
        const v = await svc.getOrder(failed.order.id);
        return v.recovery?.state === 'exhausted' ? v : undefined;
      },
      { what: 'the recovery to be exhausted' },
    );
    expect(view.recovery).toMatchObject({ ended_reason: 'expired' });
    expect(view.messages.map((m) => m.status)).toEqual(['sent']);
  });

  it('switches to email when the customer has no phone', async () => {
    const failed = makeEvent(
      {},
      {
        customer: { id: `cus_nophone_${Date.now()}`, name: 'Ada', email: 'ada@example.com', locale: 'en' },
      },
    );
    await svc.post(failed);
    const view = await waitFor(
      async () => {
        const v = await svc.getOrder(failed.order.id);
        return v.messages[0]?.status === 'sent' ? v : undefined;
      },
      { what: 'the first message' },
    );
    expect(view.messages[0]).toMatchObject({ channel: 'email', template: 'nudge', locale: 'en' });
  });
});
