import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { checkSmtpEnv, smtpChosen, smtpConfig, smtpEnv, type SmtpConfig } from './channels/smtp-config.js';
import { checkTwilioEnv, twilioChosen, twilioConfig, twilioEnv, type TwilioConfig } from './channels/twilio-config.js';
import { sendingEnv } from './channels/sending-config.js';
import { circuitConfig, circuitEnv, type CircuitConfig } from './circuits/circuit-config.js';
import { documented, duration, emptyToUndefined, optionalText, whole } from './platform/config-fields.js';
import type { ConnectionLimits } from './db/client.js';
import { checkDatabaseEnv, databaseEnv } from './db/database-config.js';
import type { PhoneNumberType } from './domain/phone-numbers.js';
import type { PaymentMethod } from './domain/vocabulary.js';
import { formatDuration } from './platform/duration.js';
import { RecoupError } from './platform/errors.js';
import {
  alipayConfig,
  alipayEnv,
  checkAlipayEnv,
  type AlipayConfig,
} from './payments/gateways/alipay/alipay-config.js';
import {
  checkStripeEnv,
  stripeConfig,
  stripeEnv,
  type StripeConfig,
} from './payments/gateways/stripe/stripe-config.js';
import {
  checkWechatPayEnv,
  wechatPayConfig,
  wechatPayEnv,
  type WechatPayConfig,
} from './payments/gateways/wechat-pay/wechat-pay-config.js';
import { checkSandboxInProduction, gatewayFor, paymentsEnv, type GatewayName } from './payments/payments-config.js';
import { opsEnv } from './ops/ops-config.js';
import { checkQueueEnv, parseClusterNodes, queueEnv, type RedisNode } from './queue/queue-config.js';
import { sendLeaseFor } from './recoveries/send-lease.js';
import { checkFinanceEnv, financeConfig, financeEnv, type FinanceConfig } from './reports/finance-config.js';
import { webhooksConfig, webhooksEnv, type WebhooksConfig } from './webhooks/webhooks-config.js';
import {
  checkConnectorsEnv,
  connectorsConfig,
  connectorsEnv,
  type ConnectorsConfig,
} from './connectors/connectors-config.js';
import { isValidTimezone } from './platform/timezones.js';

export { gatewayNames, type GatewayName } from './payments/payments-config.js';
export { parseClusterNodes, type RedisNode } from './queue/queue-config.js';
export { isValidTimezone } from './platform/timezones.js';

const server = 'Server';
const messages = 'Recoveries and messages';

/** The HTTP server and the process's own state. */
const serverEnv = {
  PORT: documented(whole(z.coerce.number().int().min(0).max(65535).default(3000)), {
    group: server,
    description: 'HTTP port; `0` picks a free one.',
    default: '`3000`',
  }),
  HOST: documented(z.string().default('127.0.0.1'), {
    group: server,
    description: 'Interface to bind; containers set `0.0.0.0`.',
    default: '`127.0.0.1`',
  }),
  PUBLIC_URL: documented(z.preprocess(emptyToUndefined, z.url().optional()), {
    group: server,
    description: 'Public base URL of this service: retry links and webhook URLs start with it.',
    default: '`http://localhost:PORT`',
    example: 'https://pay.example-shop.com',
  }),
  RECOUP_API_KEYS: optionalText({
    group: server,
    secret: true,
    description: 'Comma-separated bootstrap API keys (scopes `ingest` and `admin`).',
    default: 'one generated and kept in `DATA_DIR/api-key`',
  }),
  RECOUP_SECRET: optionalText({
    group: server,
    secret: true,
    description:
      "Key for signing page forms (CSRF) and the sandbox gateway's webhooks. Every server process must share it.",
    default: 'generated once into `DATA_DIR/secret` (fine for a single host)',
  }),
  DATA_DIR: documented(z.string().default('.data'), {
    group: server,
    description: 'Local state of the embedded defaults: PGlite data, the generated API key and secret, the outbox.',
    default: '`./.data`',
  }),
  TRUST_PROXY: optionalText({
    group: server,
    description: 'Trust `X-Forwarded-For` / `-Proto`: `true`, or the proxy addresses or CIDRs, comma separated.',
    default: 'off',
  }),
  REQUEST_TIMEOUT: duration(
    '30s',
    {
      group: server,
      description: 'A request whose body has not fully arrived after this long is answered 408 (slow clients).',
    },
    '100ms',
  ),
  BODY_LIMIT: documented(whole(z.coerce.number().int().min(1024).default(262_144)), {
    group: server,
    description: 'Largest accepted request body, in bytes.',
    default: '`262144`',
  }),
  RETRY_PAGE_RATE_LIMIT: documented(z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).default(60)), {
    group: server,
    description: 'Requests per client IP per minute on the retry pages (`/r/*`).',
    default: '`60`',
  }),
  SHUTDOWN_TIMEOUT: duration('10s', { group: server, description: 'Graceful shutdown deadline.' }),
};

/** What recoveries send, and when, whatever the channel. */
const messagesEnv = {
  SHOP_NAME: documented(z.string().default('Our shop'), {
    group: messages,
    description: 'Shop name shown in messages and pages.',
    default: '`Our shop`',
  }),
  CADENCES_FILE: optionalText({ group: messages, description: 'YAML file of cadences applied at start.' }),
  TEMPLATES_DIR: optionalText({
    group: messages,
    description: 'Handlebars templates folder.',
    default: 'the `templates/` folder shipped with recoup',
  }),
  ABANDON_AFTER: duration('30m', {
    group: messages,
    description: 'An `order.created` with no payment after this long starts an `abandoned` recovery.',
  }),
  DEFAULT_TIMEZONE: documented(z.string().default('UTC'), {
    group: messages,
    description: 'IANA timezone used when the customer has none.',
    default: '`UTC`',
  }),
  DEFAULT_LOCALE: documented(z.string().default('en'), {
    group: messages,
    description: 'Locale used when the customer has none.',
    default: '`en`',
  }),
  RETRY_LINK_TTL: duration('7d', {
    group: messages,
    description: 'How long a retry link stays valid after its message is sent.',
  }),
  QUIET_HOURS_SPREAD: duration('20m', {
    group: messages,
    description: 'Messages released at the end of quiet hours are spread over this window.',
  }),
  STEP_MIN_GAP: duration('2h', {
    group: messages,
    description:
      "After a step that went out late (deferred by quiet hours or the daily cap, held, retried), the next step waits at least this long after it (or the cadence's own spacing between the two, when shorter), so that two reminders do not arrive together. `0s` turns it off.",
  }),
};

const harnessEnv = {
  FAULT_INJECTION: optionalText({
    group: 'Test harnesses',
    description:
      'Crash the worker or the server at chosen points (src/platform/fault-injection.ts). Never in production.',
  }),
};

const envSchema = z
  .object({
    ...serverEnv,
    ...databaseEnv,
    ...queueEnv,
    ...messagesEnv,
    ...sendingEnv,
    ...twilioEnv,
    ...smtpEnv,
    ...paymentsEnv,
    ...stripeEnv,
    ...alipayEnv,
    ...wechatPayEnv,
    ...financeEnv,
    ...circuitEnv,
    ...webhooksEnv,
    ...connectorsEnv,
    ...opsEnv,
    ...harnessEnv,
  })
  .superRefine(
    (env, ctx) => {
      checkQueueEnv(env, ctx);
      checkDatabaseEnv(env, ctx);
      checkCoreEnv(env, ctx);
      checkTwilioEnv(env, ctx);
      checkSmtpEnv(env, ctx);
      checkStripeEnv(env, ctx);
      checkAlipayEnv(env, ctx);
      checkWechatPayEnv(env, ctx);
      checkFinanceEnv(env, ctx);
      checkConnectorsEnv(env, ctx);
      checkSandboxInProduction(env, ctx);
    },
    // Zod skips refinements once a field failed; run these anyway so that every problem
    // (a bad PORT *and* missing Twilio keys) is reported in one go. They only read fields
    // that are plain strings, or check the type of those they compare, so a failed field
    // elsewhere cannot confuse them.
    { when: () => true },
  );

export type Env = z.output<typeof envSchema>;

/** Every variable recoup reads, by name: the source of docs/configuration.md. */
export const envFields: Readonly<Record<string, z.ZodType>> = envSchema.shape;

/** Checks of the core settings, and the one that joins areas: the database's idle timeout outlasts the send lease. */
function checkCoreEnv(env: Env, ctx: z.RefinementCtx): void {
  const idle = env.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT;
  // The durations read here may have failed their own checks (reported already): skip then.
  if (
    typeof idle === 'number' &&
    typeof env.PROVIDER_TIMEOUT === 'number' &&
    typeof env.JOB_LOCK_DURATION === 'number'
  ) {
    const lease = sendLeaseOf(env);
    if (idle <= lease) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_IDLE_IN_TRANSACTION_TIMEOUT'],
        message: `must be longer than the send lease (${formatDuration(lease)} with this PROVIDER_TIMEOUT and JOB_LOCK_DURATION): a payment attempt waits on its gateway inside its transaction`,
      });
    }
  }
  if (!isValidTimezone(env.DEFAULT_TIMEZONE)) {
    ctx.addIssue({
      code: 'custom',
      path: ['DEFAULT_TIMEZONE'],
      message: `unknown IANA timezone "${env.DEFAULT_TIMEZONE}"`,
    });
  }
}

/** How long a lost sender's message may still reach a provider after its claim (src/recoveries/send-lease.ts). */
function sendLeaseOf(env: { PROVIDER_TIMEOUT: number; JOB_LOCK_DURATION: number }): number {
  return sendLeaseFor(env.PROVIDER_TIMEOUT, env.JOB_LOCK_DURATION).leaseMs;
}

/** Kept between the send lease and the idle-in-transaction timeout: a busy event loop's delay before the next statement. */
const idleBeyondLeaseMs = 4_000;

// src/config.ts and dist/config.js both sit one level below the package root.
const packageTemplatesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../templates');

export interface Config {
  port: number;
  host: string;
  publicUrl: string;
  databaseUrl: string | undefined;
  redisUrl: string;
  /** Redis Cluster seed nodes (REDIS_CLUSTER_NODES); undefined for a single Redis at redisUrl. */
  redisClusterNodes: RedisNode[] | undefined;
  queuePrefix: string;
  /** Bootstrap keys from RECOUP_API_KEYS; undefined means "generate one under dataDir". */
  apiKeys: string[] | undefined;
  cadencesFile: string | undefined;
  dataDir: string;
  outboxDir: string;
  templatesDir: string;
  sms: { transport: 'outbox' } | ({ transport: 'twilio' } & TwilioConfig);
  email: { transport: 'outbox'; from: string } | ({ transport: 'smtp'; from: string } & SmtpConfig);
  shopName: string;
  logLevel: Env['LOG_LEVEL'];
  abandonAfterMs: number;
  defaultTimezone: string;
  defaultLocale: string;
  retryLinkTtlMs: number;
  quietHoursSpreadMs: number;
  /** STEP_MIN_GAP. */
  stepMinGapMs: number;
  reconcileIntervalMs: number;
  wakeupHorizonMs: number;
  reconcileGraceMs: number;
  /** Lookups of SMS whose outcome is unknown (SMS_LOOKUP_AFTER, SMS_LOOKUP_UNTIL). */
  smsLookup: { afterMs: number; untilMs: number };
  workerConcurrency: number;
  databasePoolSize: number;
  /** Bounds on the waits of every Postgres connection (DATABASE_*_TIMEOUT, DATABASE_KEEPALIVE_DELAY). */
  databaseLimits: ConnectionLimits;
  /** SEND_RATE_LIMIT per SEND_RATE_WINDOW, across all workers; undefined: unlimited. */
  sendRateLimit: { max: number; durationMs: number } | undefined;
  /** SMS_NUMBER_TYPES: the kinds of phone number intake keeps and the retry page takes. */
  smsNumberTypes: PhoneNumberType[];
  sendMaxAttempts: number;
  sendRetryBaseMs: number;
  providerTimeoutMs: number;
  /** PROVIDER_ACCEPT_GRACE. */
  providerAcceptGraceMs: number;
  redisStartupWaitMs: number;
  shutdownTimeoutMs: number;
  jobLockDurationMs: number;
  bodyLimit: number;
  requestTimeoutMs: number;
  faultInjection: string | undefined;
  payments: {
    /** Gateway per payment method. */
    gatewayFor: Record<PaymentMethod, GatewayName>;
    stripe: StripeConfig | undefined;
    alipay: AlipayConfig | undefined;
    wechatPay: WechatPayConfig | undefined;
    clickAttributionWindowMs: number;
    incentivePeriodMs: number;
    /** WEBHOOK_STALE_AFTER: a claimed event not applied after this long is taken over. */
    webhookStaleAfterMs: number;
    /** PAYMENT_CHECK_AFTER: an attempt open this long is looked up at its gateway. */
    checkOpenAttemptAfterMs: number;
  };
  trustProxy: boolean | string;
  ops: { metricsToken: string | undefined; metricsPort: number | undefined; stuckOrderAfterMs: number };
  retryPageRateLimit: number;
  /** Finance: the holdout share and the unit costs that price messages a provider does not. */
  finance: FinanceConfig;
  /** Gateway circuit breakers (src/circuits/). */
  circuits: CircuitConfig;
  /** Signed webhooks to the shop (src/webhooks/). */
  webhooks: WebhooksConfig;
  connectors: ConnectorsConfig;
  /** RECOUP_SECRET; undefined means "generate one under dataDir". */
  secret: string | undefined;
}

/**
 * Reads and validates the environment. The only reader of process.env.
 * Reports every problem at once; never echoes secret values.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({
      path: issue.path.join('.') || '(environment)',
      message: issue.message,
    }));
    const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
    throw new RecoupError('config', `Invalid configuration:\n${lines}`, { issues });
  }
  const env = parsed.data;
  const apiKeys = env.RECOUP_API_KEYS?.split(',')
    .map((key) => key.trim())
    .filter((key) => key.length > 0);
  return {
    port: env.PORT,
    host: env.HOST,
    publicUrl: (env.PUBLIC_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, ''),
    databaseUrl: env.DATABASE_URL,
    redisUrl: env.REDIS_URL,
    redisClusterNodes: env.REDIS_CLUSTER_NODES === undefined ? undefined : parseClusterNodes(env.REDIS_CLUSTER_NODES),
    queuePrefix: env.QUEUE_PREFIX,
    apiKeys: apiKeys && apiKeys.length > 0 ? apiKeys : undefined,
    cadencesFile: env.CADENCES_FILE,
    dataDir: path.resolve(env.DATA_DIR),
    outboxDir: path.resolve(env.OUTBOX_DIR ?? path.join(env.DATA_DIR, 'outbox')),
    templatesDir: env.TEMPLATES_DIR ? path.resolve(env.TEMPLATES_DIR) : packageTemplatesDir,
    sms: twilioChosen(env) ? { transport: 'twilio', ...twilioConfig(env) } : { transport: 'outbox' },
    email: smtpChosen(env)
      ? { transport: 'smtp', from: env.EMAIL_FROM, ...smtpConfig(env) }
      : { transport: 'outbox', from: env.EMAIL_FROM },
    shopName: env.SHOP_NAME,
    logLevel: env.LOG_LEVEL,
    abandonAfterMs: env.ABANDON_AFTER,
    defaultTimezone: env.DEFAULT_TIMEZONE,
    defaultLocale: env.DEFAULT_LOCALE,
    retryLinkTtlMs: env.RETRY_LINK_TTL,
    quietHoursSpreadMs: env.QUIET_HOURS_SPREAD,
    stepMinGapMs: env.STEP_MIN_GAP,
    reconcileIntervalMs: env.RECONCILE_INTERVAL,
    wakeupHorizonMs: env.WAKEUP_HORIZON,
    reconcileGraceMs: env.RECONCILE_GRACE,
    smsLookup: { afterMs: env.SMS_LOOKUP_AFTER, untilMs: env.SMS_LOOKUP_UNTIL },
    workerConcurrency: env.WORKER_CONCURRENCY,
    databasePoolSize: env.DATABASE_POOL_SIZE ?? Math.max(10, env.WORKER_CONCURRENCY + 4),
    databaseLimits: {
      idleInTransactionTimeoutMs: env.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT ?? sendLeaseOf(env) + idleBeyondLeaseMs,
      lockTimeoutMs: env.DATABASE_LOCK_TIMEOUT,
      statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT,
      connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT,
      keepAliveDelayMs: env.DATABASE_KEEPALIVE_DELAY,
    },
    sendRateLimit:
      env.SEND_RATE_LIMIT === undefined ? undefined : { max: env.SEND_RATE_LIMIT, durationMs: env.SEND_RATE_WINDOW },
    smsNumberTypes: env.SMS_NUMBER_TYPES,
    sendMaxAttempts: env.SEND_MAX_ATTEMPTS,
    sendRetryBaseMs: env.SEND_RETRY_BACKOFF,
    providerTimeoutMs: env.PROVIDER_TIMEOUT,
    providerAcceptGraceMs: env.PROVIDER_ACCEPT_GRACE,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT,
    redisStartupWaitMs: env.REDIS_STARTUP_WAIT,
    jobLockDurationMs: env.JOB_LOCK_DURATION,
    bodyLimit: env.BODY_LIMIT,
    requestTimeoutMs: env.REQUEST_TIMEOUT,
    faultInjection: env.FAULT_INJECTION,
    payments: {
      gatewayFor: gatewayFor(env),
      stripe: stripeConfig(env),
      alipay: alipayConfig(env),
      wechatPay: wechatPayConfig(env),
      clickAttributionWindowMs: env.CLICK_ATTRIBUTION_WINDOW,
      incentivePeriodMs: env.INCENTIVE_PERIOD,
      webhookStaleAfterMs: env.WEBHOOK_STALE_AFTER,
      checkOpenAttemptAfterMs: env.PAYMENT_CHECK_AFTER,
    },
    secret: env.RECOUP_SECRET,
    ops: { metricsToken: env.METRICS_TOKEN, metricsPort: env.METRICS_PORT, stuckOrderAfterMs: env.STUCK_ORDER_AFTER },
    trustProxy: env.TRUST_PROXY === undefined ? false : env.TRUST_PROXY === 'true' ? true : env.TRUST_PROXY,
    retryPageRateLimit: env.RETRY_PAGE_RATE_LIMIT,
    finance: financeConfig(env),
    circuits: circuitConfig(env),
    webhooks: webhooksConfig(env),
    connectors: connectorsConfig(env),
  };
}
