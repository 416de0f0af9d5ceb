import fs from 'node:fs';
import path from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import { CadenceBook } from '../cadences/cadence-book.js';
import type { EmailSender } from '../channels/email-sender.js';
import { OutboxEmailSender } from '../channels/outbox-email-sender.js';
import { OutboxSmsSender } from '../channels/outbox-sms-sender.js';
import { SmtpEmailSender } from '../channels/smtp-email-sender.js';
import type { SmsSender } from '../channels/sms-sender.js';
import { TwilioSmsSender } from '../channels/twilio-sms-sender.js';
import { systemClock, type Clock } from '../platform/clock.js';
import type { Config } from '../config.js';
import { DatabaseClock } from '../db/database-clock.js';
import { openDatabase, type Database } from '../db/client.js';
import { twilioStatusCallbackPath } from '../compliance/twilio-webhooks.routes.js';
import type { Logger } from '../platform/logger.js';
import { TemplateRenderer } from '../messages/template-renderer.js';
import { AlipayGateway } from '../payments/gateways/alipay/alipay-gateway.js';
import { SandboxGateway } from '../payments/gateways/sandbox/sandbox-gateway.js';
import { StripeGateway } from '../payments/gateways/stripe/stripe-gateway.js';
import { WechatPayGateway } from '../payments/gateways/wechat-pay/wechat-pay-gateway.js';
import { PaymentGateways } from '../payments/gateways.js';
import type { PaymentGateway } from '../payments/payment-gateway.js';
import type { DispatchSettings } from '../recoveries/dispatch-step.js';
import { sendLeaseFor, type SendLease } from '../recoveries/send-lease.js';

/** The one place that chooses implementations from config. */
export function buildSmsSender(config: Config): SmsSender {
  const sms = config.sms;
  if (sms.transport === 'outbox') return new OutboxSmsSender({ dir: config.outboxDir });
  return new TwilioSmsSender({
    accountSid: sms.accountSid,
    authToken: sms.authToken,
    messagingServiceSid: sms.messagingServiceSid,
    from: sms.from,
    // Every message's callbacks name it, so they find it even when Twilio's answer to the send was lost.
    statusCallbackBase: `${config.publicUrl}${twilioStatusCallbackPath}`,
    apiUrl: sms.apiUrl,
    timeoutMs: config.providerTimeoutMs,
  });
}

export function buildEmailSender(config: Config): EmailSender {
  const email = config.email;
  if (email.transport === 'outbox') return new OutboxEmailSender({ dir: config.outboxDir, from: email.from });
  return new SmtpEmailSender({ smtpUrl: email.smtpUrl, from: email.from, timeoutMs: config.providerTimeoutMs });
}

export function dispatchSettings(config: Config): DispatchSettings & { sendLease: SendLease } {
  const sendLease = sendLeaseFor(config.providerTimeoutMs, config.jobLockDurationMs);
  return {
    publicUrl: config.publicUrl,
    shopName: config.shopName,
    defaultTimezone: config.defaultTimezone,
    defaultLocale: config.defaultLocale,
    retryLinkTtlMs: config.retryLinkTtlMs,
    quietHoursSpreadMs: config.quietHoursSpreadMs,
    stepMinGapMs: config.stepMinGapMs,
    incentivePeriodMs: config.payments.incentivePeriodMs,
    sendMaxAttempts: config.sendMaxAttempts,
    sendRetryBaseMs: config.sendRetryBaseMs,
    // Past the provider timeout and a job lock, nobody is still sending it; and never before its send
    // lease ended, since taking a claim over ends the wait of a payment on it (send-lease.ts).
    claimStaleAfterMs: Math.max(config.providerTimeoutMs * 2 + config.jobLockDurationMs, sendLease.leaseMs + 1_000),
    sendLease,
  };
}

export interface CoreDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  database: Database;
  cadences: CadenceBook;
  renderer: TemplateRenderer;
}

/**
 * `clock`: the process's own clock. With `onDatabaseTime`, the services get Postgres's time
 * instead, measured through it (src/db/database-clock.ts); the caller starts its measurements.
 */
export async function buildCoreDeps(
  config: Config,
  logger: Logger,
  clock: Clock = systemClock,
  options: { onDatabaseTime?: boolean } = {},
): Promise<CoreDeps> {
  const renderer = TemplateRenderer.load(config.templatesDir);
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    limits: config.databaseLimits,
    // An idle connection, or one checked out between two statements (src/db/client.ts).
    onError: (err) => logger.warn({ err }, 'Postgres connection failed'),
  });
  return {
    config,
    logger,
    clock: options.onDatabaseTime ? new DatabaseClock(clock, database.db) : clock,
    database,
    cadences: new CadenceBook(database.db, { defaultHoldoutPercent: config.finance.holdoutPercent }),
    renderer,
  };
}

/** The sandbox's webhook signing key, derived from RECOUP_SECRET. */
export function sandboxWebhookSecret(secret: string): string {
  return createHmac('sha256', secret).update('sandbox-webhooks').digest('hex');
}

/** Builds the configured payment gateways. */
export function buildPaymentGateways(config: Config, secret: string, logger: Logger): PaymentGateways {
  const gateways: PaymentGateway[] = [];
  // Only where a method is on it: its checkout pages and webhook settle orders without money,
  // so beside a real gateway they would let anyone holding a link "pay" for free.
  if (Object.values(config.payments.gatewayFor).includes('sandbox')) {
    gateways.push(
      new SandboxGateway({
        publicUrl: config.publicUrl,
        webhookSecret: sandboxWebhookSecret(secret),
        webhookUrl: `${config.publicUrl}/webhooks/payments/sandbox`,
        logger,
      }),
    );
  }
  const stripe = config.payments.stripe;
  if (stripe) {
    const api = stripe.apiUrl ? new URL(stripe.apiUrl) : undefined;
    gateways.push(
      new StripeGateway({
        secretKey: stripe.secretKey,
        webhookSecret: stripe.webhookSecret,
        publishableKey: stripe.publishableKey,
        ...(api
          ? {
              host: api.hostname,
              port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)),
              protocol: api.protocol === 'https:' ? 'https' : 'http',
            }
          : {}),
      }),
    );
  }
  const alipay = config.payments.alipay;
  if (alipay) {
    gateways.push(
      new AlipayGateway({
        appId: alipay.appId,
        privateKey: alipay.privateKey,
        alipayPublicKey: alipay.alipayPublicKey,
        notifyUrl: `${config.publicUrl}/webhooks/payments/alipay`,
        flow: alipay.flow,
        ...(alipay.gatewayUrl ? { gatewayUrl: alipay.gatewayUrl } : {}),
        timeoutMs: config.providerTimeoutMs,
      }),
    );
  }
  const wechatPay = config.payments.wechatPay;
  if (wechatPay) {
    gateways.push(
      new WechatPayGateway({
        appId: wechatPay.appId,
        mchId: wechatPay.mchId,
        merchantSerial: wechatPay.merchantSerial,
        privateKey: wechatPay.privateKey,
        apiV3Key: wechatPay.apiV3Key,
        platformKeys: wechatPay.platformKeys,
        notifyUrl: `${config.publicUrl}/webhooks/payments/wechat_pay`,
        h5: wechatPay.h5,
        ...(wechatPay.apiUrl ? { baseUrl: wechatPay.apiUrl } : {}),
        timeoutMs: config.providerTimeoutMs,
      }),
    );
  }
  return new PaymentGateways(gateways, config.payments.gatewayFor);
}

/**
 * Origins of the configured gateways' hosted pages, which a retry page's form POST may be
 * redirected to (and on through): the CSP `form-action` must allow each.
 */
export function gatewayPageOrigins(config: Config): string[] {
  const origins: string[] = [];
  if (config.payments.stripe) origins.push('https://checkout.stripe.com', 'https://hooks.stripe.com');
  const alipay = config.payments.alipay;
  if (alipay?.flow === 'page') {
    // The signed link goes to the open-platform gateway, which forwards to the desktop or mobile cashier.
    origins.push(new URL(alipay.gatewayUrl ?? 'https://openapi.alipay.com/gateway.do').origin);
    if (!alipay.gatewayUrl) origins.push('https://excashier.alipay.com', 'https://mclient.alipay.com');
  }
  if (config.payments.wechatPay?.h5) origins.push('https://wx.tenpay.com');
  return origins;
}

/**
 * RECOUP_SECRET, or one generated on first start and kept in DATA_DIR/secret (mode 0600).
 * It keys page CSRF tokens and the sandbox's webhook signatures.
 */
export function resolveSecret(config: Config): string {
  if (config.secret) return config.secret;
  const file = path.join(config.dataDir, 'secret');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(config.dataDir, { recursive: true });
    fs.writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/** Where recoup keeps the API key it generates when RECOUP_API_KEYS is empty. */
export function generatedApiKeyFile(config: Pick<Config, 'dataDir'>): string {
  return path.join(config.dataDir, 'api-key');
}

/**
 * Bootstrap API keys: RECOUP_API_KEYS, or one generated on first start and kept in
 * DATA_DIR/api-key (mode 0600) so `npm start` works with no set-up.
 */
export function resolveApiKeys(config: Config): { keys: string[]; generatedFile?: string } {
  if (config.apiKeys) return { keys: config.apiKeys };
  const file = generatedApiKeyFile(config);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(config.dataDir, { recursive: true });
    fs.writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  return { keys: [fs.readFileSync(file, 'utf8').trim()], generatedFile: file };
}
