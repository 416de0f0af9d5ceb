import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { isRecoupError, type RecoupError } from '../../src/platform/errors.js';

/** The RecoupError loadConfig throws for `env`; fails the test when it does not throw one. */
function configError(env: Record<string, string>): RecoupError {
  try {
    loadConfig(env);
  } catch (err) {
    if (isRecoupError(err, 'config')) return err;
    throw err;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(Object.keys(env))}`);
}

const twilioKeys = {
  TWILIO_ACCOUNT_SID: 'AC0123456789abcdef',
  TWILIO_AUTH_TOKEN: 'twilio-token-7f3a9c',
  TWILIO_FROM: '+15005550006',
};

describe('loadConfig', () => {
  it('refuses, in production, a payment method left on the free sandbox gateway, unless allowed', () => {
    const error = configError({ NODE_ENV: 'production' });
    expect(error.issues).toEqual([
      { path: 'PAYMENT_GATEWAY', message: expect.stringContaining('the sandbox gateway takes payments for free') },
    ]);
    const oneMethod = configError({
      NODE_ENV: 'production',
      PAYMENT_GATEWAY: 'alipay',
      ALIPAY_APP_ID: 'x',
      PAYMENT_GATEWAY_CARD: 'sandbox',
    });
    expect(oneMethod.issues.map((i) => i.path)).toContain('PAYMENT_GATEWAY_CARD');
    expect(loadConfig({ NODE_ENV: 'production', RECOUP_ALLOW_SANDBOX: 'true' }).payments.gatewayFor.card).toBe(
      'sandbox',
    );
    expect(loadConfig({}).payments.gatewayFor.card).toBe('sandbox');
  });

  it('runs with an empty environment, on documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      publicUrl: 'http://localhost:3000',
      databaseUrl: undefined,
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: 'recoup',
      apiKeys: undefined,
      cadencesFile: undefined,
      dataDir: path.resolve('.data'),
      outboxDir: path.resolve('.data', 'outbox'),
      sms: { transport: 'outbox' },
      email: { transport: 'outbox', from: 'recoup <noreply@localhost>' },
      shopName: 'Our shop',
      logLevel: 'info',
      abandonAfterMs: 30 * 60_000,
      defaultTimezone: 'UTC',
      defaultLocale: 'en',
      retryLinkTtlMs: 7 * 86_400_000,
      quietHoursSpreadMs: 20 * 60_000,
      reconcileIntervalMs: 5_000,
      reconcileGraceMs: 30_000,
      workerConcurrency: 16,
      sendMaxAttempts: 5,
      sendRetryBaseMs: 15_000,
      providerTimeoutMs: 10_000,
      shutdownTimeoutMs: 10_000,
      bodyLimit: 262_144,
      faultInjection: undefined,
    });
    // The templates shipped with recoup, wherever the process was started from.
    expect(config.templatesDir).toBe(path.resolve(import.meta.dirname, '../../templates'));
    expect(config.payments).toMatchObject({ webhookStaleAfterMs: 120_000, checkOpenAttemptAfterMs: 300_000 });
  });

  it('reads the kinds of phone number recoup texts, and names a kind it does not know', () => {
    expect(loadConfig({}).smsNumberTypes).toEqual(['mobile', 'fixed_line', 'fixed_line_or_mobile']);
    expect(loadConfig({ SMS_NUMBER_TYPES: '' }).smsNumberTypes).toEqual([
      'mobile',
      'fixed_line',
      'fixed_line_or_mobile',
    ]);
    expect(loadConfig({ SMS_NUMBER_TYPES: ' Mobile, premium_rate,mobile' }).smsNumberTypes).toEqual([
      'mobile',
      'premium_rate',
    ]);
    expect(configError({ SMS_NUMBER_TYPES: 'mobile,premium' }).issues).toEqual([
      { path: 'SMS_NUMBER_TYPES', message: expect.stringContaining('unknown number type "premium"') },
    ]);
  });

  it('reads the payment follow-up durations and refuses ones under a second', () => {
    const config = loadConfig({ WEBHOOK_STALE_AFTER: '90s', PAYMENT_CHECK_AFTER: '10m' });
    expect(config.payments).toMatchObject({ webhookStaleAfterMs: 90_000, checkOpenAttemptAfterMs: 600_000 });
    const error = configError({ WEBHOOK_STALE_AFTER: '500ms', PAYMENT_CHECK_AFTER: 'soon' });
    expect(error.issues.map((i) => i.path).sort()).toEqual(['PAYMENT_CHECK_AFTER', 'WEBHOOK_STALE_AFTER']);
  });

  it('reads values, derives the public URL from the port and trims its trailing slash', () => {
    expect(loadConfig({ PORT: '8080' }).publicUrl).toBe('http://localhost:8080');
    const config = loadConfig({
      PORT: '0',
      PUBLIC_URL: 'https://pay.example-shop.com/',
      RECOUP_API_KEYS: ' key-one , ,key-two ',
      ABANDON_AFTER: '1h30m',
      RECONCILE_INTERVAL: '200ms',
      DATA_DIR: '/var/lib/recoup',
    });
    expect(config).toMatchObject({
      port: 0,
      publicUrl: 'https://pay.example-shop.com',
      apiKeys: ['key-one', 'key-two'],
      abandonAfterMs: 90 * 60_000,
      reconcileIntervalMs: 200,
      dataDir: '/var/lib/recoup',
      outboxDir: '/var/lib/recoup/outbox',
    });
  });

  it('treats empty variables as unset, numbers included', () => {
    const config = loadConfig({
      PORT: '',
      WORKER_CONCURRENCY: '',
      SMS_TRANSPORT: '',
      PUBLIC_URL: '',
      DATABASE_URL: '',
    });
    expect(config).toMatchObject({ port: 3000, workerConcurrency: 16, sms: { transport: 'outbox' } });
    expect(config.databaseUrl).toBeUndefined();
  });

  it('reports every problem at once, each under its variable', () => {
    const err = configError({
      PORT: 'eighty',
      QUEUE_PREFIX: 'recoup:prod',
      LOG_LEVEL: 'loud',
      ABANDON_AFTER: 'soon',
      PUBLIC_URL: 'not a url',
      WORKER_CONCURRENCY: '0',
      DEFAULT_TIMEZONE: 'Mars/Olympus',
      EMAIL_TRANSPORT: 'smtp',
    });
    const paths = [
      'PORT',
      'QUEUE_PREFIX',
      'LOG_LEVEL',
      'ABANDON_AFTER',
      'PUBLIC_URL',
      'WORKER_CONCURRENCY',
      // Cross-field and custom checks are reported together with the field errors, not after them.
      'DEFAULT_TIMEZONE',
      'SMTP_URL',
    ];
    expect(err.issues.map((i) => i.path).sort()).toEqual([...paths].sort());
    for (const p of paths) expect(err.message).toMatch(new RegExp(`^  ${p}: .+$`, 'm'));
    expect(err.message).toContain('must not contain ":"');
    expect(err.message).toContain('unknown IANA timezone "Mars/Olympus"');
  });

  it('names every missing Twilio variable when SMS_TRANSPORT=twilio', () => {
    const err = configError({ SMS_TRANSPORT: 'twilio' });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN', 'TWILIO_FROM']);
    expect(err.message).toContain('TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM');
    expect(err.message).toContain('SMS_TRANSPORT=twilio');

    const partial = configError({
      SMS_TRANSPORT: 'twilio',
      TWILIO_ACCOUNT_SID: 'AC1',
      TWILIO_MESSAGING_SERVICE_SID: 'MG1',
    });
    expect(partial.issues.map((i) => i.path)).toEqual(['TWILIO_AUTH_TOKEN']);
  });

  it('chooses Twilio when its credentials are set, unless SMS_TRANSPORT says otherwise', () => {
    expect(loadConfig(twilioKeys).sms).toEqual({
      transport: 'twilio',
      accountSid: twilioKeys.TWILIO_ACCOUNT_SID,
      authToken: twilioKeys.TWILIO_AUTH_TOKEN,
      messagingServiceSid: undefined,
      from: twilioKeys.TWILIO_FROM,
      apiUrl: undefined,
    });
    expect(loadConfig({ ...twilioKeys, SMS_TRANSPORT: 'outbox' }).sms).toEqual({ transport: 'outbox' });
    // Only the SID is not enough to choose Twilio.
    expect(loadConfig({ TWILIO_ACCOUNT_SID: 'AC1' }).sms).toEqual({ transport: 'outbox' });
  });

  it('asks for a sender when Twilio is chosen by its credentials, alongside other problems', () => {
    const err = configError({ TWILIO_ACCOUNT_SID: 'AC1', TWILIO_AUTH_TOKEN: 'tok', PORT: '99999' });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['PORT', 'TWILIO_FROM']);
  });

  it('chooses SMTP when SMTP_URL is set, unless EMAIL_TRANSPORT says otherwise', () => {
    const smtpUrl = 'smtp://mailer:pw@mail.example.com:587';
    expect(loadConfig({ SMTP_URL: smtpUrl, EMAIL_FROM: 'Shop <shop@example.com>' }).email).toEqual({
      transport: 'smtp',
      from: 'Shop <shop@example.com>',
      smtpUrl,
    });
    expect(loadConfig({ SMTP_URL: smtpUrl, EMAIL_TRANSPORT: 'outbox' }).email.transport).toBe('outbox');
  });

  it('requires the Stripe keys when Stripe takes a method, alongside other problems', () => {
    const err = configError({ PAYMENT_GATEWAY_CARD: 'stripe', PORT: 'eighty' });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['PORT', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET']);
    expect(err.message).toContain('STRIPE_WEBHOOK_SECRET: required when a payment gateway is stripe');
    // Set keys configure Stripe even while the sandbox takes every method.
    expect(loadConfig({ STRIPE_SECRET_KEY: 'sk_test_x', STRIPE_WEBHOOK_SECRET: 'whsec_x' }).payments).toMatchObject({
      gatewayFor: { card: 'sandbox', alipay: 'sandbox', wechat_pay: 'sandbox' },
      stripe: { secretKey: 'sk_test_x', webhookSecret: 'whsec_x', publishableKey: undefined, apiUrl: undefined },
    });
  });

  it('reads message unit costs and names each one it cannot read', () => {
    const config = loadConfig({
      SMS_COST_PER_SEGMENT: '0.0079 USD',
      SMS_COST_PER_SEGMENT_BY_COUNTRY: 'CN=0.045 USD',
      EMAIL_COST: '0.0004 USD',
    });
    expect(config.finance.messageCosts).toEqual({
      smsPerSegment: { micros: 7_900, currency: 'USD' },
      smsPerSegmentByCountry: { CN: { micros: 45_000, currency: 'USD' } },
      email: { micros: 400, currency: 'USD' },
    });
    const err = configError({
      SMS_COST_PER_SEGMENT: 'cheap',
      SMS_COST_PER_SEGMENT_BY_COUNTRY: 'CN',
      EMAIL_COST: '1',
      CIRCUIT_FAILURE_RATIO: '2',
    });
    expect(err.issues.map((i) => i.path).sort()).toEqual([
      'CIRCUIT_FAILURE_RATIO',
      'EMAIL_COST',
      'SMS_COST_PER_SEGMENT',
      'SMS_COST_PER_SEGMENT_BY_COUNTRY',
    ]);
    expect(err.message).toContain('SMS_COST_PER_SEGMENT: must be an amount and a currency, e.g. "0.0079 USD"');
  });

  it('reads Redis Cluster seed nodes and insists on a hash-tagged queue prefix', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, [::1]:7001', QUEUE_PREFIX: '{recoup}' });
    expect(config.redisClusterNodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '::1', port: 7001 },
    ]);
    expect(loadConfig({}).redisClusterNodes).toBeUndefined();

    const err = configError({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,nohost', QUEUE_PREFIX: 'recoup' });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['QUEUE_PREFIX', 'REDIS_CLUSTER_NODES']);
    expect(err.message).toContain('must start with a hash tag such as {recoup}');
  });

  it('bounds every Postgres wait, the idle-in-transaction timeout just past the send lease', () => {
    expect(loadConfig({}).databaseLimits).toEqual({
      // The 16 s send lease (5 s start window + 10 s PROVIDER_TIMEOUT + 1 s) and 4 s more.
      idleInTransactionTimeoutMs: 20_000,
      lockTimeoutMs: 5_000,
      statementTimeoutMs: 30_000,
      connectTimeoutMs: 5_000,
      keepAliveDelayMs: 10_000,
    });
    // A longer provider call lengthens the lease, and the idle timeout follows it.
    expect(loadConfig({ PROVIDER_TIMEOUT: '30s' }).databaseLimits.idleInTransactionTimeoutMs).toBe(40_000);
    expect(loadConfig({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '' }).databaseLimits.idleInTransactionTimeoutMs).toBe(
      20_000,
    );
    expect(
      loadConfig({
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '1m',
        DATABASE_LOCK_TIMEOUT: '2s',
        DATABASE_STATEMENT_TIMEOUT: '2m',
        DATABASE_CONNECT_TIMEOUT: '1500ms',
        DATABASE_KEEPALIVE_DELAY: '30s',
      }).databaseLimits,
    ).toEqual({
      idleInTransactionTimeoutMs: 60_000,
      lockTimeoutMs: 2_000,
      statementTimeoutMs: 120_000,
      connectTimeoutMs: 1_500,
      keepAliveDelayMs: 30_000,
    });
  });

  it('refuses Postgres bounds that would cut an honest send or wait, every one at once', () => {
    const err = configError({
      DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '16s',
      DATABASE_LOCK_TIMEOUT: '30s',
      DATABASE_CONNECT_TIMEOUT: 'soon',
      DATABASE_KEEPALIVE_DELAY: '10ms',
    });
    expect(err.issues.map((i) => i.path).sort()).toEqual([
      'DATABASE_CONNECT_TIMEOUT',
      'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT',
      'DATABASE_KEEPALIVE_DELAY',
      'DATABASE_LOCK_TIMEOUT',
    ]);
    expect(err.message).toMatch(/DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: must be longer than the send lease \(16s/);
    expect(err.message).toContain('DATABASE_LOCK_TIMEOUT: must be shorter than DATABASE_STATEMENT_TIMEOUT');
    expect(err.message).toContain('DATABASE_CONNECT_TIMEOUT: expected a duration');
    // The lease is judged with the PROVIDER_TIMEOUT and JOB_LOCK_DURATION given.
    expect(
      loadConfig({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '2s', PROVIDER_TIMEOUT: '300ms', JOB_LOCK_DURATION: '1s' })
        .databaseLimits.idleInTransactionTimeoutMs,
    ).toBe(2_000);
    // Too short a statement timeout is reported, and the lock timeout no longer fits under it.
    expect(configError({ DATABASE_STATEMENT_TIMEOUT: '10ms' }).issues.map((i) => i.path)).toEqual([
      'DATABASE_STATEMENT_TIMEOUT',
      'DATABASE_LOCK_TIMEOUT',
    ]);
  });

  it('never echoes secret values in its error', () => {
    const secrets = {
      TWILIO_ACCOUNT_SID: 'AC-sid-4b1d9e',
      TWILIO_AUTH_TOKEN: 'tw-auth-token-S3CR3T-91f2',
      SMTP_URL: 'smtp://mailer:smtp-pass-S3CR3T-77aa@mail.example.com:587',
      DATABASE_URL: 'postgres://recoup:db-pass-S3CR3T-0c4e@db:5432/recoup',
      REDIS_URL: 'redis://:redis-pass-S3CR3T-5d6f@redis:6379',
      RECOUP_API_KEYS: 'api-key-S3CR3T-3e8b',
    };
    const err = configError({
      ...secrets,
      // Invalid neighbours, including the variables that decide whether the secrets are needed.
      SMS_TRANSPORT: 'carrier-pigeon',
      EMAIL_TRANSPORT: 'fax',
      PORT: '-1',
      LOG_LEVEL: 'chatty',
    });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['EMAIL_TRANSPORT', 'LOG_LEVEL', 'PORT', 'SMS_TRANSPORT']);
    const shown = `${err.message}\n${JSON.stringify(err.issues)}`;
    for (const secret of Object.values(secrets)) expect(shown).not.toContain(secret);
    expect(shown).not.toContain('S3CR3T');

    // Errors about the secrets' own group name the variables, never their values.
    const twilio = configError({
      SMS_TRANSPORT: 'twilio',
      TWILIO_AUTH_TOKEN: secrets.TWILIO_AUTH_TOKEN,
      SMTP_URL: secrets.SMTP_URL,
      WORKER_CONCURRENCY: 'many',
    });
    expect(twilio.issues.map((i) => i.path).sort()).toEqual([
      'TWILIO_ACCOUNT_SID',
      'TWILIO_FROM',
      'WORKER_CONCURRENCY',
    ]);
    expect(`${twilio.message}\n${JSON.stringify(twilio.issues)}`).not.toContain('S3CR3T');
  });
});

describe('request log masking', () => {
  it('hides retry-link and unsubscribe tokens in logged URLs', async () => {
    const { maskTokens } = await import('../../src/platform/logger.js');
    expect(maskTokens('/r/AbCdEfGhIjKlMnOpQrStUv/pay/att_1?x=1')).toBe('/r/***/pay/att_1?…');
    expect(maskTokens('/console/orders?q=li%40example.com')).toBe('/console/orders?…');
    expect(maskTokens('/u/msg_1.abc')).toBe('/u/***');
    expect(maskTokens('/v1/orders/ord_1')).toBe('/v1/orders/ord_1');
  });

  it('reads the path as the router does: percent-encoded spellings are masked too', async () => {
    const { loggedUrl, maskTokens } = await import('../../src/platform/logger.js');
    expect(maskTokens('/%72/AbCdEf/nope')).toBe('/r/***/nope');
    expect(maskTokens('/%2572/AbCdEf')).toBe('/r/***');
    expect(maskTokens('/sandbox/%63heckout/sbx_1/x')).toBe('/sandbox/checkout/***/x');
    expect(maskTokens('/r/%E0%A4%A')).toBe('/r/***');
    // A matched request is logged by its route: its tokens and the params it declares secret are masked.
    const statusCheck = {
      url: '/%72/AbCdEf/status/att_1?x=1',
      routeOptions: { url: '/r/:token/status/:attemptId' },
      params: { token: 'AbCdEf', attemptId: 'att_1' },
    };
    expect(loggedUrl(statusCheck)).toBe('/r/***/status/att_1?…');
    const checkout = {
      url: '/sandbox/checkout/sbx_1',
      routeOptions: { url: '/sandbox/checkout/:id', config: { secretParams: ['id'] } },
      params: { id: 'sbx_1' },
    };
    expect(loggedUrl(checkout)).toBe('/sandbox/checkout/***');
    expect(
      loggedUrl({ url: '/v1/orders/ord%201', routeOptions: { url: '/v1/orders/:id' }, params: { id: 'ord 1' } }),
    ).toBe('/v1/orders/ord%201');
  });

  describe('direct Alipay and WeChat Pay', () => {
    const keys = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });

    it('requires each wallet’s keys only when that wallet is chosen for a method', () => {
      const err = configError({ PAYMENT_GATEWAY_ALIPAY: 'alipay', PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay' });
      expect(err.issues.map((i) => i.path).sort()).toEqual([
        'ALIPAY_APP_ID',
        'ALIPAY_PRIVATE_KEY',
        'ALIPAY_PUBLIC_KEY',
        'WECHAT_PAY_API_V3_KEY',
        'WECHAT_PAY_APP_ID',
        'WECHAT_PAY_MCH_ID',
        'WECHAT_PAY_MERCHANT_SERIAL',
        'WECHAT_PAY_PRIVATE_KEY',
        'WECHAT_PAY_PUBLIC_KEY',
      ]);
      const misplaced = configError({ PAYMENT_GATEWAY_CARD: 'alipay', PAYMENT_GATEWAY_ALIPAY: 'wechat_pay' });
      expect(misplaced.issues).toEqual(
        expect.arrayContaining([
          { path: 'PAYMENT_GATEWAY_CARD', message: 'alipay takes only its own method' },
          { path: 'PAYMENT_GATEWAY_ALIPAY', message: 'wechat_pay takes only its own method' },
        ]),
      );
      const defaults = loadConfig({ ALIPAY_APP_ID: '2021000000000000' });
      expect(defaults.payments.alipay).toBeUndefined();
      expect(defaults.payments.wechatPay).toBeUndefined();
    });

    it('reads keys given as PEM text or as file paths, and names the platform certificate by its serial', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-config-'));
      try {
        const keyFile = path.join(dir, 'apiclient_key.pem');
        fs.writeFileSync(keyFile, keys.privateKey);
        const config = loadConfig({
          PAYMENT_GATEWAY: 'stripe',
          STRIPE_SECRET_KEY: 'sk_test_x',
          STRIPE_WEBHOOK_SECRET: 'whsec_x',
          PAYMENT_GATEWAY_ALIPAY: 'alipay',
          PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay',
          ALIPAY_APP_ID: '2021000000000000',
          ALIPAY_PRIVATE_KEY: keyFile,
          ALIPAY_PUBLIC_KEY: keys.publicKey.replace(/\n/g, '\\n'),
          ALIPAY_FLOW: 'qr',
          WECHAT_PAY_APP_ID: 'wx0000000000000000',
          WECHAT_PAY_MCH_ID: '1900000109',
          WECHAT_PAY_MERCHANT_SERIAL: 'ABC123',
          WECHAT_PAY_PRIVATE_KEY: keyFile,
          WECHAT_PAY_API_V3_KEY: 'k'.repeat(32),
          WECHAT_PAY_PUBLIC_KEY: keys.publicKey,
          WECHAT_PAY_PUBLIC_KEY_ID: 'PUB_KEY_ID_0119000000000001',
        });
        expect(config.payments.gatewayFor).toEqual({ card: 'stripe', alipay: 'alipay', wechat_pay: 'wechat_pay' });
        expect(config.payments.alipay).toMatchObject({ privateKey: keys.privateKey, flow: 'qr' });
        expect(config.payments.alipay?.alipayPublicKey).toBe(keys.publicKey);
        expect(config.payments.wechatPay).toMatchObject({
          privateKey: keys.privateKey,
          h5: false,
          platformKeys: { PUB_KEY_ID_0119000000000001: keys.publicKey },
        });

        const missing = configError({
          PAYMENT_GATEWAY_WECHAT_PAY: 'wechat_pay',
          WECHAT_PAY_APP_ID: 'wx0000000000000000',
          WECHAT_PAY_MCH_ID: '1900000109',
          WECHAT_PAY_MERCHANT_SERIAL: 'ABC123',
          WECHAT_PAY_PRIVATE_KEY: path.join(dir, 'nope.pem'),
          WECHAT_PAY_API_V3_KEY: 'short',
          WECHAT_PAY_PLATFORM_CERT: keyFile,
        });
        expect(missing.issues.map((i) => i.path).sort()).toEqual(['WECHAT_PAY_API_V3_KEY', 'WECHAT_PAY_PRIVATE_KEY']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
