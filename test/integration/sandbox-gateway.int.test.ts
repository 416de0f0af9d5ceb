import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FixedClock } from '../../src/platform/clock.js';
import type { PaymentMethod } from '../../src/domain/vocabulary.js';
import type { CreatedPayment, GatewayEvent } from '../../src/payments/payment-gateway.js';
import {
  SandboxGateway,
  type SandboxGatewayOptions,
  type SandboxWebhookDelivery,
} from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { sandboxRoutes } from '../../src/payments/gateways/sandbox/sandbox.routes.js';
import { paymentGatewayContract, paymentRequest, type RawWebhook } from '../helpers/payment-gateway.contract.js';

const publicUrl = 'http://recoup.test';
const webhookUrl = `${publicUrl}/webhooks/payments/sandbox`;
const secret = 'sbx_secret_for_tests_only';

/** insufficient_funds, in each method's own vocabulary. */
const notEnoughMoney: Record<PaymentMethod, string> = {
  card: 'insufficient_funds',
  alipay: 'ACQ.BUYER_BALANCE_NOT_ENOUGH',
  wechat_pay: 'NOTENOUGH',
};

/** A sandbox whose webhooks land in `deliveries` instead of going over HTTP. */
function recordingSandbox(options: Partial<SandboxGatewayOptions> = {}) {
  const deliveries: SandboxWebhookDelivery[] = [];
  const gateway = new SandboxGateway({
    publicUrl,
    webhookSecret: secret,
    webhookUrl,
    dispatchWebhook: async (delivery) => {
      deliveries.push(delivery);
    },
    ...options,
  });
  const webhookFor = (paymentId: string, type: GatewayEvent['type']): RawWebhook => {
    const delivery = deliveries.findLast((d) => {
      const body = JSON.parse(d.body) as { type: string; data: { payment_id: string } };
      return body.type === type && body.data.payment_id === paymentId;
    });
    if (!delivery) throw new Error(`no ${type} webhook for ${paymentId}`);
    return { rawBody: Buffer.from(delivery.body), headers: delivery.headers };
  };
  const typesFor = (paymentId: string) =>
    deliveries
      .map((d) => JSON.parse(d.body) as { type: string; data: { payment_id: string } })
      .filter((body) => body.data.payment_id === paymentId)
      .map((body) => body.type);
  return { gateway, deliveries, webhookFor, typesFor };
}

paymentGatewayContract('SandboxGateway', async () => {
  const { gateway, webhookFor } = recordingSandbox();
  return {
    gateway,
    currency: 'CNY',
    cardNextAction: 'redirect',
    async customerPays(payment: CreatedPayment) {
      await gateway.complete(payment.gatewayPaymentId, { type: 'succeed' });
      return webhookFor(payment.gatewayPaymentId, 'payment.succeeded');
    },
    async customerIsDeclined(payment, request) {
      await gateway.complete(payment.gatewayPaymentId, { type: 'decline', code: notEnoughMoney[request.method] });
      return webhookFor(payment.gatewayPaymentId, 'payment.failed');
    },
    signWithWrongSecret(webhook) {
      return {
        rawBody: webhook.rawBody,
        headers: {
          ...webhook.headers,
          'recoup-sandbox-signature': signSandboxPayload(webhook.rawBody, 'not-the-secret', new Date()),
        },
      };
    },
    async dispose() {
      gateway.close();
    },
  };
});

describe('SandboxGateway', () => {
  const start = new Date('2026-03-08T01:30:00Z');
  let clock: FixedClock;
  let sandbox: ReturnType<typeof recordingSandbox>;

  beforeEach(() => {
    clock = new FixedClock(start);
    sandbox = recordingSandbox({ clock });
  });
  afterEach(() => sandbox.gateway.close());

  const request = (overrides: Parameters<typeof paymentRequest>[1] = {}) =>
    paymentRequest('CNY', { expiresAt: new Date(start.getTime() + 15 * 60_000), ...overrides });

  it('points card and Alipay at its hosted checkout and WeChat Pay at its scan page', async () => {
    const card = await sandbox.gateway.createPayment(request({ method: 'card' }));
    const alipay = await sandbox.gateway.createPayment(request({ method: 'alipay' }));
    const wechat = await sandbox.gateway.createPayment(request({ method: 'wechat_pay' }));
    expect(card.nextAction).toEqual({
      type: 'redirect',
      url: `${publicUrl}/sandbox/checkout/${card.gatewayPaymentId}`,
    });
    expect(alipay.nextAction).toEqual({
      type: 'redirect',
      url: `${publicUrl}/sandbox/checkout/${alipay.gatewayPaymentId}`,
    });
    expect(wechat.nextAction).toEqual({
      type: 'qr',
      payload: `${publicUrl}/sandbox/scan/${wechat.gatewayPaymentId}`,
      expiresAt: new Date(start.getTime() + 15 * 60_000),
      // The QR page links there too: a laptop cannot scan its own screen.
      simulateUrl: `${publicUrl}/sandbox/scan/${wechat.gatewayPaymentId}`,
    });
  });

  it('classifies declines by the method’s own codes', async () => {
    const cases: [PaymentMethod, string, string][] = [
      ['card', 'expired_card', 'card_data'],
      ['card', 'do_not_honor', 'account_frozen'],
      ['card', 'fraudulent', 'fraud_suspected'],
      ['card', 'authentication_required', 'authentication_required'],
      ['alipay', 'ACQ.BUYER_ENABLE_STATUS_FORBID', 'account_frozen'],
      ['alipay', 'ACQ.SYSTEM_ERROR', 'gateway_outage'],
      ['wechat_pay', 'ACCOUNTERROR', 'account_frozen'],
      ['wechat_pay', 'NOTSUPORTCARD', 'method_unsupported'],
    ];
    for (const [method, code, category] of cases) {
      const created = await sandbox.gateway.createPayment(request({ method }));
      await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'decline', code });
      expect(await sandbox.gateway.retrievePayment(created.gatewayPaymentId), `${method} ${code}`).toMatchObject({
        status: 'failed',
        failureCode: code,
        failureCategory: category,
      });
      const event = await sandbox.gateway.parseWebhook(
        ...webhookArgs(sandbox.webhookFor(created.gatewayPaymentId, 'payment.failed')),
      );
      expect(event).toMatchObject({ failureCode: code, failureCategory: category });
    }
  });

  it('refuses a decline code the method does not have', async () => {
    const created = await sandbox.gateway.createPayment(request({ method: 'alipay' }));
    await expect(
      sandbox.gateway.complete(created.gatewayPaymentId, { type: 'decline', code: 'NOTENOUGH' }),
    ).rejects.toMatchObject({
      kind: 'invalid_request',
    });
    expect((await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).status).toBe('requires_action');
  });

  it('expires an unpaid payment at expiresAt, once, as abandoned', async () => {
    const created = await sandbox.gateway.createPayment(request({ method: 'wechat_pay' }));
    clock.advance(15 * 60_000 - 1);
    expect((await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).status).toBe('requires_action');
    clock.advance(1);
    const expired = await sandbox.gateway.retrievePayment(created.gatewayPaymentId);
    expect(expired).toMatchObject({ status: 'failed', failureCode: 'expired', failureCategory: 'abandoned' });
    await sandbox.gateway.retrievePayment(created.gatewayPaymentId);
    await vi.waitFor(() => expect(sandbox.typesFor(created.gatewayPaymentId)).toEqual(['payment.failed']));
    await expect(sandbox.gateway.complete(created.gatewayPaymentId, { type: 'succeed' })).rejects.toMatchObject({
      kind: 'conflict',
    });
  });

  it('times out on the customer’s request like an expiry', async () => {
    const created = await sandbox.gateway.createPayment(request({ method: 'alipay' }));
    await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'timeout' });
    expect(await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
      status: 'failed',
      failureCategory: 'abandoned',
    });
  });

  it('sends payment.cancelled when an attempt is superseded or cancelled', async () => {
    const first = request({ method: 'alipay' });
    const previous = await sandbox.gateway.createPayment(first);
    const next = await sandbox.gateway.createPayment(
      request({
        orderId: first.orderId,
        attemptNumber: 2,
        idempotencyKey: `${first.orderId}-2`,
        previousGatewayPaymentId: previous.gatewayPaymentId,
      }),
    );
    await sandbox.gateway.cancelPayment(next.gatewayPaymentId);
    await vi.waitFor(() => {
      expect(sandbox.typesFor(previous.gatewayPaymentId)).toEqual(['payment.cancelled']);
      expect(sandbox.typesFor(next.gatewayPaymentId)).toEqual(['payment.cancelled']);
    });
    const event = await sandbox.gateway.parseWebhook(
      ...webhookArgs(sandbox.webhookFor(previous.gatewayPaymentId, 'payment.cancelled')),
    );
    expect(event).toMatchObject({ type: 'payment.cancelled', orderId: first.orderId, attemptId: first.attemptId });
  });

  it('refuses a previous payment of another order', async () => {
    const other = await sandbox.gateway.createPayment(request());
    await expect(
      sandbox.gateway.createPayment(request({ previousGatewayPaymentId: other.gatewayPaymentId })),
    ).rejects.toMatchObject({ kind: 'invalid_request', code: 'previous_payment_mismatch' });
    expect((await sandbox.gateway.retrievePayment(other.gatewayPaymentId)).status).toBe('requires_action');
  });

  it('refuses an idempotency key reused for a different payment', async () => {
    const req = request({ amount: 1_000 });
    await sandbox.gateway.createPayment(req);
    await expect(sandbox.gateway.createPayment({ ...req, amount: 2_000 })).rejects.toMatchObject({
      kind: 'conflict',
      code: 'idempotency_key_reused',
    });
  });

  it('refuses invalid requests without creating anything', async () => {
    const invalid = [
      request({ amount: 0 }),
      request({ amount: 12.5 }),
      request({ currency: 'yuan' }),
      request({ returnUrl: 'javascript:alert(1)' }),
      request({ expiresAt: start }),
    ];
    for (const req of invalid) {
      await expect(sandbox.gateway.createPayment(req)).rejects.toMatchObject({ kind: 'invalid_request' });
    }
    await expect(sandbox.gateway.retrievePayment('sbx_nope')).rejects.toMatchObject({
      kind: 'invalid_request',
      code: 'not_found',
    });
  });

  it('refunds with a refund.succeeded webhook, in the payment’s currency only', async () => {
    const created = await sandbox.gateway.createPayment(request({ amount: 9_900 }));
    await expect(
      sandbox.gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 100,
        currency: 'CNY',
        refundKey: 'early',
        reason: 'x',
      }),
    ).rejects.toMatchObject({ kind: 'conflict', code: 'payment_not_paid' });
    await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
    await expect(
      sandbox.gateway.refund({
        gatewayPaymentId: created.gatewayPaymentId,
        amount: 100,
        currency: 'USD',
        refundKey: 'usd',
        reason: 'x',
      }),
    ).rejects.toMatchObject({ kind: 'invalid_request', code: 'currency_mismatch' });

    const refund = await sandbox.gateway.refund({
      gatewayPaymentId: created.gatewayPaymentId,
      amount: 9_900,
      currency: 'cny',
      refundKey: 'dup-1',
      reason: 'duplicate',
    });
    expect(refund.status).toBe('succeeded');
    expect(await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({ amountRefunded: 9_900 });
    await vi.waitFor(() => expect(sandbox.typesFor(created.gatewayPaymentId)).toContain('refund.succeeded'));
    const event = await sandbox.gateway.parseWebhook(
      ...webhookArgs(sandbox.webhookFor(created.gatewayPaymentId, 'refund.succeeded')),
    );
    expect(event).toMatchObject({
      type: 'refund.succeeded',
      gatewayPaymentId: created.gatewayPaymentId,
      refundId: refund.gatewayRefundId,
      amount: 9_900,
      currency: 'CNY',
    });
  });

  describe('webhook signatures', () => {
    it('accepts a signature within five minutes either way, and refuses older or newer ones', async () => {
      const created = await sandbox.gateway.createPayment(request());
      await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
      const { rawBody } = sandbox.webhookFor(created.gatewayPaymentId, 'payment.succeeded');
      const signedAt = (offsetSeconds: number) => ({
        'recoup-sandbox-signature': signSandboxPayload(
          rawBody,
          secret,
          new Date(start.getTime() + offsetSeconds * 1000),
        ),
      });
      for (const offset of [-300, 0, 300]) {
        await expect(sandbox.gateway.parseWebhook(rawBody, signedAt(offset))).resolves.toMatchObject({
          type: 'payment.succeeded',
        });
      }
      for (const offset of [-301, 301, -86_400]) {
        await expect(sandbox.gateway.parseWebhook(rawBody, signedAt(offset))).rejects.toMatchObject({
          kind: 'invalid_signature',
        });
      }
    });

    it('accepts a header carrying the old and the new secret’s signatures (rotation)', async () => {
      const created = await sandbox.gateway.createPayment(request());
      await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
      const { rawBody } = sandbox.webhookFor(created.gatewayPaymentId, 'payment.succeeded');
      const good = signSandboxPayload(rawBody, secret, start);
      const other = signSandboxPayload(rawBody, 'old-secret', start).split(',')[1];
      await expect(
        sandbox.gateway.parseWebhook(rawBody, { 'Recoup-Sandbox-Signature': `${good},${other}` }),
      ).resolves.toMatchObject({ type: 'payment.succeeded' });
      await expect(
        sandbox.gateway.parseWebhook(rawBody, { 'recoup-sandbox-signature': `t=${start.getTime() / 1000},v1=zz` }),
      ).rejects.toMatchObject({ kind: 'invalid_signature' });
    });

    it('signs each delivery as HMAC-SHA256 over `${timestamp}.${body}`', async () => {
      const created = await sandbox.gateway.createPayment(request());
      await sandbox.gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
      const delivery = sandbox.deliveries.at(-1);
      if (!delivery) throw new Error('no delivery');
      const { createHmac } = await import('node:crypto');
      const timestamp = start.getTime() / 1000;
      const expected = createHmac('sha256', secret).update(`${timestamp}.${delivery.body}`).digest('hex');
      expect(delivery).toMatchObject({ url: webhookUrl, attempt: 1 });
      expect(delivery.headers['recoup-sandbox-signature']).toBe(`t=${timestamp},v1=${expected}`);
      expect(delivery.headers['content-type']).toBe('application/json');
    });
  });

  describe('webhook delivery', () => {
    it('retries a failed delivery with the same event, re-signed, then stops', async () => {
      const attempts: SandboxWebhookDelivery[] = [];
      const warn = vi.fn();
      const flaky = recordingSandbox({
        clock,
        webhookRetryDelaysMs: [5, 10],
        logger: { warn } as never,
        dispatchWebhook: async (delivery) => {
          attempts.push(delivery);
          if (attempts.length < 3) throw new Error('503 from the receiver');
        },
      });
      const created = await flaky.gateway.createPayment(request());
      await flaky.gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
      await vi.waitFor(() => expect(attempts).toHaveLength(3));
      expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
      expect(new Set(attempts.map((a) => a.eventId)).size).toBe(1);
      for (const attempt of attempts) {
        await expect(flaky.gateway.parseWebhook(Buffer.from(attempt.body), attempt.headers)).resolves.toMatchObject({
          type: 'payment.succeeded',
        });
      }
      expect(warn).toHaveBeenCalledTimes(2);

      attempts.length = 0;
      const failing = recordingSandbox({
        clock,
        webhookRetryDelaysMs: [5],
        logger: { warn } as never,
        dispatchWebhook: async (delivery) => {
          attempts.push(delivery);
          throw new Error('down');
        },
      });
      const other = await failing.gateway.createPayment(request());
      await failing.gateway.complete(other.gatewayPaymentId, { type: 'succeed' });
      await vi.waitFor(() =>
        expect(warn).toHaveBeenLastCalledWith(expect.objectContaining({ giveUp: true }), expect.any(String)),
      );
      expect(attempts).toHaveLength(2);
      flaky.gateway.close();
      failing.gateway.close();
    });

    it('does not deadlock when the webhook receiver asks the gateway about the payment', async () => {
      let seen: string | undefined;
      const gateway: SandboxGateway = new SandboxGateway({
        publicUrl,
        webhookSecret: secret,
        webhookUrl,
        clock,
        dispatchWebhook: async (delivery) => {
          const event = await gateway.parseWebhook(Buffer.from(delivery.body), delivery.headers);
          if (event) seen = (await gateway.retrievePayment(event.gatewayPaymentId)).status;
        },
      });
      const created = await gateway.createPayment(request());
      await gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
      expect(seen).toBe('succeeded');
      gateway.close();
    });

    it('POSTs to the webhook URL with fetch by default', async () => {
      const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
      const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
          res.writeHead(received.length === 1 ? 500 : 204).end();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      const gateway = new SandboxGateway({
        publicUrl,
        webhookSecret: secret,
        webhookUrl: `http://127.0.0.1:${port}/webhooks/payments/sandbox`,
        webhookRetryDelaysMs: [5],
      });
      try {
        const created = await gateway.createPayment(paymentRequest('CNY'));
        await gateway.complete(created.gatewayPaymentId, { type: 'succeed' });
        await vi.waitFor(() => expect(received).toHaveLength(2));
        const last = received[1];
        if (!last) throw new Error('no delivery');
        const signature = last.headers['recoup-sandbox-signature'];
        const event = await gateway.parseWebhook(Buffer.from(last.body), { 'recoup-sandbox-signature': signature });
        expect(event).toMatchObject({ type: 'payment.succeeded', gatewayPaymentId: created.gatewayPaymentId });
      } finally {
        gateway.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });
  });
});

describe('sandboxRoutes', () => {
  let sandbox: ReturnType<typeof recordingSandbox>;
  let app: FastifyInstance;

  beforeEach(async () => {
    sandbox = recordingSandbox();
    app = Fastify();
    await app.register(sandboxRoutes(sandbox.gateway));
    await app.ready();
  });
  afterEach(async () => {
    await app.close();
    sandbox.gateway.close();
  });

  const create = (overrides: Parameters<typeof paymentRequest>[1] = {}) =>
    sandbox.gateway.createPayment(paymentRequest('CNY', overrides));
  const pathOf = (created: CreatedPayment) => {
    const url =
      created.nextAction.type === 'redirect'
        ? created.nextAction.url
        : created.nextAction.type === 'qr'
          ? created.nextAction.payload
          : '';
    return new URL(url).pathname;
  };
  const tokenIn = (html: string) => /name="token" value="([^"]+)"/.exec(html)?.[1] ?? '';
  const post = (path: string, form: Record<string, string>) =>
    app.inject({
      method: 'POST',
      url: path,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(form).toString(),
    });

  it('renders the card page: amount, choices, no scripts, its own strict CSP', async () => {
    const created = await create({ method: 'card', amount: 12_345, customer: { locale: 'en-US' } });
    const page = await app.inject({ method: 'GET', url: pathOf(created) });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(page.headers['content-security-policy']).toMatch(/form-action 'self' https:\/\/shop\.example/);
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.body).toContain('name="viewport"');
    expect(page.body).toContain('CN¥123.45');
    expect(page.body).toMatch(/value="succeed"/);
    expect(page.body).toMatch(/value="decline"/);
    expect(page.body).toMatch(/value="timeout"/);
    for (const code of ['card_declined', 'insufficient_funds', 'expired_card', 'do_not_honor'])
      expect(page.body).toContain(`value="${code}"`);
    expect(page.body).not.toMatch(/<script/i);
    expect(tokenIn(page.body)).toBe(sandbox.gateway.formToken(created.gatewayPaymentId));
    const css = await app.inject({ method: 'GET', url: '/sandbox/assets/sandbox.css' });
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
  });

  it('styles the same page as Alipay, and the scan page as WeChat Pay, in Chinese for zh locales', async () => {
    const alipay = await create({ method: 'alipay', customer: { locale: 'zh-CN' } });
    const alipayPage = await app.inject({ method: 'GET', url: pathOf(alipay) });
    expect(pathOf(alipay)).toMatch(/^\/sandbox\/checkout\//);
    expect(alipayPage.body).toContain('class="m-alipay"');
    expect(alipayPage.body).toContain('支付宝');
    expect(alipayPage.body).toContain('value="ACQ.BUYER_BALANCE_NOT_ENOUGH"');

    const wechat = await create({ method: 'wechat_pay', customer: { locale: 'zh-CN' } });
    expect(pathOf(wechat)).toMatch(/^\/sandbox\/scan\//);
    const scanPage = await app.inject({ method: 'GET', url: pathOf(wechat) });
    expect(scanPage.statusCode).toBe(200);
    expect(scanPage.body).toContain('class="m-wechat_pay"');
    expect(scanPage.body).toContain('模拟扫码并支付');
    expect(scanPage.body).toContain('value="NOTENOUGH"');
  });

  it('escapes what the shop wrote', async () => {
    const created = await create({ description: '<script>alert("x")</script> & tea' });
    const page = await app.inject({ method: 'GET', url: pathOf(created) });
    expect(page.body).not.toContain('<script>');
    expect(page.body).toContain('&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; tea');
  });

  it('changes nothing on GET', async () => {
    const created = await create();
    for (let i = 0; i < 3; i++) await app.inject({ method: 'GET', url: pathOf(created) });
    expect((await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).status).toBe('requires_action');
    expect(sandbox.deliveries).toHaveLength(0);
  });

  it('on "succeed": records it, sends a correctly signed webhook, then redirects to returnUrl', async () => {
    const created = await create({ method: 'wechat_pay', returnUrl: 'https://shop.example/r/tok_1/done?lang=en' });
    const page = await app.inject({ method: 'GET', url: pathOf(created) });
    const answer = await post(pathOf(created), { token: tokenIn(page.body), action: 'succeed' });
    expect(answer.statusCode).toBe(303);
    expect(answer.headers.location).toBe(
      `https://shop.example/r/tok_1/done?lang=en&payment=${created.gatewayPaymentId}`,
    );
    // The webhook went out before the customer was sent back.
    expect(sandbox.deliveries).toHaveLength(1);
    const delivery = sandbox.deliveries[0];
    if (!delivery) throw new Error('no delivery');
    expect(delivery.url).toBe(webhookUrl);
    const event = await sandbox.gateway.parseWebhook(Buffer.from(delivery.body), delivery.headers);
    expect(event).toMatchObject({
      type: 'payment.succeeded',
      gatewayPaymentId: created.gatewayPaymentId,
      method: 'wechat_pay',
    });
    expect((await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).status).toBe('succeeded');

    const again = await post(pathOf(created), { token: tokenIn(page.body), action: 'decline', code: 'NOTENOUGH' });
    expect(again.statusCode).toBe(409);
    expect(again.body).toContain('此笔支付已支付');
    expect(sandbox.deliveries).toHaveLength(1);
    const revisit = await app.inject({ method: 'GET', url: pathOf(created) });
    expect(revisit.body).not.toMatch(/value="succeed"/);
  });

  it('on "decline": fails the payment with the chosen code', async () => {
    const created = await create({ method: 'card' });
    const page = await app.inject({ method: 'GET', url: pathOf(created) });
    const answer = await post(pathOf(created), { token: tokenIn(page.body), action: 'decline', code: 'do_not_honor' });
    expect(answer.statusCode).toBe(303);
    expect(await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).toMatchObject({
      status: 'failed',
      failureCode: 'do_not_honor',
      failureCategory: 'account_frozen',
    });
    const delivery = sandbox.deliveries[0];
    if (!delivery) throw new Error('no delivery');
    expect(await sandbox.gateway.parseWebhook(Buffer.from(delivery.body), delivery.headers)).toMatchObject({
      type: 'payment.failed',
      failureCategory: 'account_frozen',
    });
  });

  it('refuses posts without the page’s token, and nonsense choices', async () => {
    const created = await create();
    const forged = await post(pathOf(created), { token: 'guess', action: 'succeed' });
    expect(forged.statusCode).toBe(403);
    const missing = await post(pathOf(created), { action: 'succeed' });
    expect(missing.statusCode).toBe(403);
    const token = sandbox.gateway.formToken(created.gatewayPaymentId);
    expect((await post(pathOf(created), { token, action: 'refund-me' })).statusCode).toBe(400);
    expect((await post(pathOf(created), { token, action: 'decline', code: 'NOTENOUGH' })).statusCode).toBe(400);
    expect((await sandbox.gateway.retrievePayment(created.gatewayPaymentId)).status).toBe('requires_action');
    expect(sandbox.deliveries).toHaveLength(0);
  });

  it('answers unknown payments with a friendly 404 page', async () => {
    const page = await app.inject({ method: 'GET', url: '/sandbox/checkout/sbx_unknown' });
    expect(page.statusCode).toBe(404);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('does not exist');
    expect((await post('/sandbox/scan/sbx_unknown', { action: 'succeed' })).statusCode).toBe(404);
  });
});

function webhookArgs(webhook: RawWebhook): [Buffer, Record<string, string>] {
  return [webhook.rawBody, webhook.headers];
}
