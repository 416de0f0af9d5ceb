import fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { ConnectionLimits } from './db/client.js';
import type { PaymentMethod } from './domain.js';
import { formatDuration, parseDuration } from './duration.js';
import { RecoupError } from './errors.js';
import { sendLeaseFor } from './recoveries/send-lease.js';
import { parseCountryCosts, parseUnitCost, type MessageCostRates, type UnitCost } from './reports/message-cost.js';

function toMs(text: string, ctx: z.RefinementCtx): number {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like 30s, 15m, 2h or 3d, got "${text}"` });
    return z.NEVER;
  }
  return ms;
}

const duration = (fallback: string) => z.string().default(fallback).transform(toMs);

export const gatewayNames = ['sandbox', 'stripe', 'alipay', 'wechat_pay'] as const;
export type GatewayName = (typeof gatewayNames)[number];

const emptyToUndefined = (value: unknown) => (value === '' ? undefined : value);
const optionalString = z.preprocess(emptyToUndefined, z.string().optional());
/**
 * A number read from the environment. Empty counts as unset, as for strings: `Number('')` is 0,
 * so `PORT=` would otherwise silently mean "any free port" instead of the default 3000.
 */
const whole = <T extends z.ZodType>(schema: T) => z.preprocess(emptyToUndefined, schema);
/** A duration whose default depends on other variables: undefined when unset or empty. */
const optionalDuration = z.preprocess(emptyToUndefined, z.string().transform(toMs).optional());

const envSchema = z
  .object({
    /** HTTP port. Default 3000. */
    PORT: whole(z.coerce.number().int().min(0).max(65535).default(3000)),
    /** Interface to bind. Default 127.0.0.1; containers set 0.0.0.0. */
    HOST: z.string().default('127.0.0.1'),
    /** Public base URL of this service: retry links and webhook URLs start with it. Default http://localhost:PORT. */
    PUBLIC_URL: z.preprocess(emptyToUndefined, z.url().optional()),
    /** Postgres connection string. Unset: an embedded Postgres (PGlite) under DATA_DIR. */
    DATABASE_URL: optionalString,
    /** Redis URL; a database index in the path (redis://host:6379/3) is honoured. */
    REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
    /**
     * Redis Cluster seed nodes, comma separated (`10.0.0.1:6379,10.0.0.2:6379`). Set: REDIS_URL is
     * ignored and QUEUE_PREFIX must be hash-tagged. Unset: a single Redis at REDIS_URL.
     */
    REDIS_CLUSTER_NODES: optionalString,
    /** Key prefix of every BullMQ key. Wrap it in braces ({recoup}) on Redis Cluster. Default `recoup`. */
    QUEUE_PREFIX: z
      .string()
      .regex(/^[^:]+$/, 'must not contain ":"')
      .default('recoup'),
    /** Comma-separated bootstrap API keys (scopes ingest + admin). Unset: one is generated and kept in DATA_DIR. */
    RECOUP_API_KEYS: optionalString,
    /** YAML file of cadences applied at start. */
    CADENCES_FILE: optionalString,
    /** Local state of the embedded defaults (PGlite data, generated API key, outbox). Default ./.data. */
    DATA_DIR: z.string().default('.data'),
    /** Where outbox transports write messages. Default DATA_DIR/outbox. */
    OUTBOX_DIR: optionalString,
    /** Handlebars templates folder. Default: the templates/ folder shipped with recoup. */
    TEMPLATES_DIR: optionalString,
    /** `outbox` or `twilio`. Default: twilio when its credentials are set, else outbox. */
    SMS_TRANSPORT: z.preprocess(emptyToUndefined, z.enum(['outbox', 'twilio']).optional()),
    /** `outbox` or `smtp`. Default: smtp when SMTP_URL is set, else outbox. */
    EMAIL_TRANSPORT: z.preprocess(emptyToUndefined, z.enum(['outbox', 'smtp']).optional()),
    TWILIO_ACCOUNT_SID: optionalString,
    TWILIO_AUTH_TOKEN: optionalString,
    TWILIO_MESSAGING_SERVICE_SID: optionalString,
    TWILIO_FROM: optionalString,
    /** Base URL of the Twilio API. For tests against a local fake; default Twilio's own. */
    TWILIO_API_URL: optionalString,
    /** SMTP connection, e.g. smtp://user:pass@mail.example.com:587. */
    SMTP_URL: optionalString,
    /** Sender of reminder emails. Default `recoup <noreply@localhost>`. */
    EMAIL_FROM: z.string().default('recoup <noreply@localhost>'),
    /** Shop name shown in messages and pages. Default `Our shop`. */
    SHOP_NAME: z.string().default('Our shop'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** An order.created with no payment after this long starts an `abandoned` recovery. Default 30m. */
    ABANDON_AFTER: duration('30m'),
    /** Timezone used when the customer has none. Default UTC. */
    DEFAULT_TIMEZONE: z.string().default('UTC'),
    /** Locale used when the customer has none. Default en. */
    DEFAULT_LOCALE: z.string().default('en'),
    /** How long a retry link stays valid after its message is sent. Default 7d. */
    RETRY_LINK_TTL: duration('7d'),
    /** Messages released at the end of quiet hours are spread over this window. Default 20m. */
    QUIET_HOURS_SPREAD: duration('20m'),
    /**
     * How often the reconciler restores lost wake-ups and starts abandoned recoveries, and the
     * payment sweeper (servers) looks for webhook events and payment attempts left unsettled. Default 5s.
     */
    RECONCILE_INTERVAL: duration('5s'),
    /** A wake-up overdue by more than this is considered lost and re-created. Default 30s. */
    RECONCILE_GRACE: duration('30s'),
    /**
     * An SMS whose sending outcome is unknown is looked up at the provider (Twilio) this long after
     * its claim, and again each time its age has doubled; lookup passes run this often. Default 2m.
     */
    SMS_LOOKUP_AFTER: duration('2m').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /**
     * No more lookups once the claim is this old. Default 24h: past the 10 hours Twilio may keep a
     * message queued, after which finding nothing proves a message was never sent.
     */
    SMS_LOOKUP_UNTIL: duration('24h'),
    /** Concurrent step jobs per worker process. Default 16. */
    WORKER_CONCURRENCY: whole(z.coerce.number().int().min(1).max(1000).default(16)),
    /**
     * Postgres connections per process. Default: WORKER_CONCURRENCY + 4 (at least 10), so every
     * running step job has one while the reconciler, circuits and HTTP requests get theirs.
     */
    DATABASE_POOL_SIZE: whole(z.coerce.number().int().min(1).max(1000).optional()),
    /**
     * Postgres ends a session that sits this long inside a transaction without a statement, and
     * with it the transaction's locks: a frozen or cut-off process's locks on orders, which would
     * hold those orders' payments. Sends hold no transaction across provider calls, but a payment
     * attempt asks its gateway under the order's lock, so this must exceed the send lease (start
     * window + PROVIDER_TIMEOUT + 1 s, src/recoveries/send-lease.ts). Default: the send lease + 4 s
     * (20s with the default settings).
     */
    DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: optionalDuration,
    /**
     * A statement waiting this long for a lock fails; payment transactions retry it a few times
     * (src/db/tx.ts), other requests answer 503. Must be shorter than DATABASE_STATEMENT_TIMEOUT.
     * Default 5s.
     */
    DATABASE_LOCK_TIMEOUT: duration('5s').refine((ms) => ms >= 100, 'must be at least 100ms'),
    /** A statement running this long is cancelled (report rollups and migrations lift it). Default 30s. */
    DATABASE_STATEMENT_TIMEOUT: duration('30s').refine((ms) => ms >= 100, 'must be at least 100ms'),
    /** Waiting this long for a free pool connection (or a new one to open) fails with 503. Default 5s. */
    DATABASE_CONNECT_TIMEOUT: duration('5s').refine((ms) => ms >= 100, 'must be at least 100ms'),
    /** TCP keepalive probes on Postgres connections start after this long without traffic. Default 10s. */
    DATABASE_KEEPALIVE_DELAY: duration('10s').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /**
     * Provider throughput across all workers together: at most this many step jobs (each sends at
     * most one message, SMS or email) start per SEND_RATE_WINDOW. BullMQ's global rate limiter: a
     * limited job waits in the queue, it does not fail. Unset: no limit.
     */
    SEND_RATE_LIMIT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).optional()),
    /** The window of SEND_RATE_LIMIT. Default 1s. */
    SEND_RATE_WINDOW: duration('1s').refine((ms) => ms >= 10, 'must be at least 10ms'),
    /** Attempts for a message whose provider answered with a transient error. Default 5. */
    SEND_MAX_ATTEMPTS: whole(z.coerce.number().int().min(1).max(20).default(5)),
    /** First retry delay after a transient provider error (429, 5xx); doubles per attempt. Default 15s. */
    SEND_RETRY_BACKOFF: duration('15s'),
    /** Provider call timeout. Default 10s. */
    PROVIDER_TIMEOUT: duration('10s'),
    /**
     * How long after its timeout a provider may still accept a request it received: a message whose
     * call timed out or was cut (`unknown`) holds the answers to payments, STOP and address changes
     * this much longer than one in flight (src/messages/in-flight.ts). recoup's guarantee assumes
     * providers accept within PROVIDER_TIMEOUT + this. Default 5s.
     */
    PROVIDER_ACCEPT_GRACE: duration('5s'),
    /**
     * How long a worker's lock on a running job lasts; a killed worker's job is handed to
     * another worker after about this long. Default 30s.
     */
    JOB_LOCK_DURATION: duration('30s'),
    /** Graceful shutdown deadline. Default 10s. */
    SHUTDOWN_TIMEOUT: duration('10s'),
    /** How long `start` and `worker` wait for Redis at startup (a restart, a failover) before giving up. Default 15s. */
    REDIS_STARTUP_WAIT: duration('15s'),
    /**
     * Gateway for every method: `sandbox` (embedded, the default), `stripe`, or a direct wallet
     * (`alipay`, `wechat_pay`: each takes only its own method, in CNY).
     */
    PAYMENT_GATEWAY: z.enum(gatewayNames).default('sandbox'),
    /** Per-method overrides of PAYMENT_GATEWAY. */
    PAYMENT_GATEWAY_CARD: z.preprocess(emptyToUndefined, z.enum(gatewayNames).optional()),
    PAYMENT_GATEWAY_ALIPAY: z.preprocess(emptyToUndefined, z.enum(gatewayNames).optional()),
    PAYMENT_GATEWAY_WECHAT_PAY: z.preprocess(emptyToUndefined, z.enum(gatewayNames).optional()),
    STRIPE_SECRET_KEY: optionalString,
    STRIPE_WEBHOOK_SECRET: optionalString,
    STRIPE_PUBLISHABLE_KEY: optionalString,
    /** Base URL of the Stripe API, for tests against a local fake. Default Stripe's own. */
    STRIPE_API_URL: optionalString,
    /** Alipay direct: the open-platform application's id. */
    ALIPAY_APP_ID: optionalString,
    /** The application's RSA2 private key: PEM, the bare base64 of Alipay's key tool, or a file path. */
    ALIPAY_PRIVATE_KEY: optionalString,
    /** Alipay's public key for the application (not the app's own): PEM, bare base64, or a file path. */
    ALIPAY_PUBLIC_KEY: optionalString,
    /** `page` (default: page pay on desktop, wap pay on mobile) or `qr` (face-to-face QR code). */
    ALIPAY_FLOW: z.preprocess(emptyToUndefined, z.enum(['page', 'qr']).default('page')),
    /** Alipay's gateway, e.g. the sandbox's or a local fake's. Default https://openapi.alipay.com/gateway.do. */
    ALIPAY_GATEWAY_URL: optionalString,
    /** WeChat Pay direct (API v3): the app id bound to the merchant, and the merchant id. */
    WECHAT_PAY_APP_ID: optionalString,
    WECHAT_PAY_MCH_ID: optionalString,
    /** Serial number of the merchant API certificate. */
    WECHAT_PAY_MERCHANT_SERIAL: optionalString,
    /** The merchant API private key (apiclient_key.pem): PEM or a file path. */
    WECHAT_PAY_PRIVATE_KEY: optionalString,
    /** The APIv3 key (32 characters) set in the merchant platform. */
    WECHAT_PAY_API_V3_KEY: optionalString,
    /** The WeChat Pay public key (PEM or a file path) and its id, `PUB_KEY_ID_…`. */
    WECHAT_PAY_PUBLIC_KEY: optionalString,
    WECHAT_PAY_PUBLIC_KEY_ID: optionalString,
    /** A WeChat Pay platform certificate (PEM or a file path), for merchants not yet on the public key. */
    WECHAT_PAY_PLATFORM_CERT: optionalString,
    /** `true`: mobile visitors get H5 pay (needs the H5 product and a registered domain). Default false. */
    WECHAT_PAY_H5: z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')),
    /** Base URL of the WeChat Pay API, for tests against a local fake. Default https://api.mch.weixin.qq.com/. */
    WECHAT_PAY_API_URL: optionalString,
    /**
     * Key for signing page forms (CSRF) and the sandbox's webhooks. Every server process must
     * share it. Unset: generated once into DATA_DIR/secret (fine for a single host).
     */
    RECOUP_SECRET: optionalString,
    /** A payment within this long after a retry-link click counts as `clicked`. Default 24h. */
    CLICK_ATTRIBUTION_WINDOW: duration('24h'),
    /** At most one incentive per customer within this period. Default 90d. */
    INCENTIVE_PERIOD: duration('90d'),
    /**
     * A gateway event claimed this long ago and still not applied belongs to a delivery that died
     * (a killed server): a resend of it, or the payment sweeper, takes it over. Younger, a resend is
     * refused with 409 so that the gateway tries again later. It must outlast the slowest handling of
     * one event: waiting for a reminder in flight on the order (PROVIDER_TIMEOUT, then the send lease)
     * and a duplicate payment's refund call (Stripe: 30 s, retried once). Shorter is safe, as applying
     * an event twice has one effect, but does the work twice. Default 2m.
     */
    WEBHOOK_STALE_AFTER: duration('2m').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /**
     * A payment attempt still open this long after it started (no webhook told its outcome) is
     * looked up at the gateway by the payment sweeper, and again after twice its age each time
     * while it stays open. Default 5m.
     */
    PAYMENT_CHECK_AFTER: duration('5m').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /** Trust X-Forwarded-For/-Proto: `true`, or the proxy addresses/CIDRs (comma separated). Default off. */
    TRUST_PROXY: optionalString,
    /** Requests per client IP per minute on the retry pages (/r/*). Default 60. */
    RETRY_PAGE_RATE_LIMIT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).default(60)),
    /** A bearer token that may read /metrics without an ops key. Unset: ops keys and console sessions only. */
    METRICS_TOKEN: optionalString,
    /** Serve GET /metrics on this port from any role (workers have no other HTTP server). Unset: none. */
    METRICS_PORT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(65535).optional()),
    /** A pending order this old with no recovery counts as stuck. Default 2h. */
    STUCK_ORDER_AFTER: duration('2h'),
    /** Test harnesses only: crash the worker or the server at chosen points (see src/fault-injection.ts). */
    FAULT_INJECTION: optionalString,
    /** A request whose body has not fully arrived after this long is answered 408 (slow clients). Default 30s. */
    REQUEST_TIMEOUT: duration('30s').refine((ms) => ms >= 100, 'must be at least 100ms'),
    /** Largest accepted request body in bytes. Default 262144. */
    BODY_LIMIT: whole(z.coerce.number().int().min(1024).default(262_144)),
    /**
     * Share of eligible orders (0–50 %) kept as a control group that gets no messages; a
     * cadence's `holdout_percent` overrides it. Default 0: no holdout.
     */
    HOLDOUT_PERCENT: whole(z.coerce.number().min(0).max(50).default(0)),
    /** Estimated SMS cost per segment when Twilio reports no price, e.g. `0.0079 USD`. Unset: unknown. */
    SMS_COST_PER_SEGMENT: optionalString,
    /** Per destination country, overriding SMS_COST_PER_SEGMENT: `CN=0.045 USD,US=0.0079 USD`. */
    SMS_COST_PER_SEGMENT_BY_COUNTRY: optionalString,
    /** Cost of one email, e.g. `0.0004 USD`. Unset: unknown. */
    EMAIL_COST: optionalString,
    /** Gateway circuits: gateway_outage/network failures are counted over this sliding window. Default 5m. */
    CIRCUIT_WINDOW: duration('5m').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /** Failures in the window needed to open a gateway's circuit (with CIRCUIT_FAILURE_RATIO). Default 10. */
    CIRCUIT_MIN_FAILURES: whole(z.coerce.number().int().min(1).default(10)),
    /** Least share (0–1) of the window's attempts that failed, needed to open a circuit. Default 0.5. */
    CIRCUIT_FAILURE_RATIO: whole(z.coerce.number().min(0).max(1).default(0.5)),
    /** An open circuit closes after this long once the failure share stays below the ratio. Default 2m. */
    CIRCUIT_COOL_DOWN: duration('2m'),
    /** Reminders held by an open circuit are released over this window once it closes. Default 20m. */
    CIRCUIT_RELEASE_SPREAD: duration('20m'),
    /** How often a held reminder checks its circuits again. Default 1m. */
    CIRCUIT_RECHECK: duration('1m').refine((ms) => ms >= 1_000, 'must be at least 1s'),
    /** How often each worker process evaluates the gateways' circuits. Default 10s. */
    CIRCUIT_EVALUATE_INTERVAL: duration('10s').refine((ms) => ms >= 1_000, 'must be at least 1s'),
  })
  .superRefine(
    (env, ctx) => {
      const sms = smsTransportOf(env);
      if (sms === 'twilio') {
        // Twilio is either asked for or chosen because its credentials are set; say which.
        const because = env.SMS_TRANSPORT ? 'when SMS_TRANSPORT=twilio' : 'to send SMS through Twilio';
        for (const key of ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN'] as const) {
          if (!env[key]) ctx.addIssue({ code: 'custom', path: [key], message: `required ${because}` });
        }
        if (!env.TWILIO_MESSAGING_SERVICE_SID && !env.TWILIO_FROM) {
          ctx.addIssue({
            code: 'custom',
            path: ['TWILIO_FROM'],
            message: `set TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM ${because}`,
          });
        }
      }
      if (env.REDIS_CLUSTER_NODES !== undefined) {
        if (parseClusterNodes(env.REDIS_CLUSTER_NODES) === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['REDIS_CLUSTER_NODES'],
            message: 'expected host:port pairs separated by commas, e.g. 10.0.0.1:6379,10.0.0.2:6379',
          });
        }
        // BullMQ's scripts touch several keys of a queue at once: on a cluster they must share a slot.
        if (typeof env.QUEUE_PREFIX === 'string' && !/^\{[^{}]+\}/.test(env.QUEUE_PREFIX)) {
          ctx.addIssue({
            code: 'custom',
            path: ['QUEUE_PREFIX'],
            message: 'must start with a hash tag such as {recoup} when REDIS_CLUSTER_NODES is set',
          });
        }
      }
      if (env.EMAIL_TRANSPORT === 'smtp' && !env.SMTP_URL) {
        ctx.addIssue({ code: 'custom', path: ['SMTP_URL'], message: 'required when EMAIL_TRANSPORT=smtp' });
      }
      const usesStripe = [
        env.PAYMENT_GATEWAY,
        env.PAYMENT_GATEWAY_CARD,
        env.PAYMENT_GATEWAY_ALIPAY,
        env.PAYMENT_GATEWAY_WECHAT_PAY,
      ].includes('stripe');
      if (usesStripe) {
        for (const key of ['STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET'] as const) {
          if (!env[key])
            ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is stripe' });
        }
      }
      for (const key of ['SMS_COST_PER_SEGMENT', 'EMAIL_COST'] as const) {
        const text = env[key];
        if (text !== undefined && !parseUnitCost(text)) {
          ctx.addIssue({ code: 'custom', path: [key], message: 'must be an amount and a currency, e.g. "0.0079 USD"' });
        }
      }
      if (env.SMS_COST_PER_SEGMENT_BY_COUNTRY !== undefined) {
        const parsed = parseCountryCosts(env.SMS_COST_PER_SEGMENT_BY_COUNTRY);
        if ('error' in parsed) {
          ctx.addIssue({
            code: 'custom',
            path: ['SMS_COST_PER_SEGMENT_BY_COUNTRY'],
            message: `"${String(parsed.error)}" is not COUNTRY=amount currency, e.g. "CN=0.045 USD"`,
          });
        }
      }
      const chosen = [
        env.PAYMENT_GATEWAY,
        env.PAYMENT_GATEWAY_CARD,
        env.PAYMENT_GATEWAY_ALIPAY,
        env.PAYMENT_GATEWAY_WECHAT_PAY,
      ];
      const keyFile = (key: keyof typeof env) => {
        const value = env[key];
        if (
          typeof value === 'string' &&
          !value.includes('-----BEGIN') &&
          looksLikePath(value) &&
          !fs.existsSync(value)
        ) {
          ctx.addIssue({ code: 'custom', path: [key], message: `no file ${value}` });
        }
      };
      // A direct wallet takes only its own method: naming it for another is a mistake, not a choice.
      const ownMethod = { alipay: 'PAYMENT_GATEWAY_ALIPAY', wechat_pay: 'PAYMENT_GATEWAY_WECHAT_PAY' } as const;
      for (const key of ['PAYMENT_GATEWAY_CARD', 'PAYMENT_GATEWAY_ALIPAY', 'PAYMENT_GATEWAY_WECHAT_PAY'] as const) {
        const gateway = env[key];
        if ((gateway === 'alipay' || gateway === 'wechat_pay') && ownMethod[gateway] !== key) {
          ctx.addIssue({ code: 'custom', path: [key], message: `${gateway} takes only its own method` });
        }
      }
      if (chosen.includes('alipay')) {
        for (const key of ['ALIPAY_APP_ID', 'ALIPAY_PRIVATE_KEY', 'ALIPAY_PUBLIC_KEY'] as const) {
          if (!env[key])
            ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is alipay' });
          else keyFile(key);
        }
      }
      if (chosen.includes('wechat_pay')) {
        for (const key of [
          'WECHAT_PAY_APP_ID',
          'WECHAT_PAY_MCH_ID',
          'WECHAT_PAY_MERCHANT_SERIAL',
          'WECHAT_PAY_PRIVATE_KEY',
          'WECHAT_PAY_API_V3_KEY',
        ] as const) {
          if (!env[key]) {
            ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is wechat_pay' });
          }
        }
        keyFile('WECHAT_PAY_PRIVATE_KEY');
        keyFile('WECHAT_PAY_PUBLIC_KEY');
        keyFile('WECHAT_PAY_PLATFORM_CERT');
        if (env.WECHAT_PAY_API_V3_KEY && Buffer.byteLength(env.WECHAT_PAY_API_V3_KEY) !== 32) {
          ctx.addIssue({ code: 'custom', path: ['WECHAT_PAY_API_V3_KEY'], message: 'must be 32 characters' });
        }
        if (!env.WECHAT_PAY_PLATFORM_CERT && !(env.WECHAT_PAY_PUBLIC_KEY && env.WECHAT_PAY_PUBLIC_KEY_ID)) {
          ctx.addIssue({
            code: 'custom',
            path: ['WECHAT_PAY_PUBLIC_KEY'],
            message: 'set WECHAT_PAY_PUBLIC_KEY with WECHAT_PAY_PUBLIC_KEY_ID, or WECHAT_PAY_PLATFORM_CERT',
          });
        }
        if (env.WECHAT_PAY_PUBLIC_KEY && !env.WECHAT_PAY_PUBLIC_KEY_ID) {
          ctx.addIssue({
            code: 'custom',
            path: ['WECHAT_PAY_PUBLIC_KEY_ID'],
            message: 'required with WECHAT_PAY_PUBLIC_KEY',
          });
        }
      }
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
      if (
        typeof env.DATABASE_LOCK_TIMEOUT === 'number' &&
        typeof env.DATABASE_STATEMENT_TIMEOUT === 'number' &&
        env.DATABASE_LOCK_TIMEOUT >= env.DATABASE_STATEMENT_TIMEOUT
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['DATABASE_LOCK_TIMEOUT'],
          message: 'must be shorter than DATABASE_STATEMENT_TIMEOUT (a lock wait is cut by whichever comes first)',
        });
      }
      if (!isValidTimezone(env.DEFAULT_TIMEZONE)) {
        ctx.addIssue({
          code: 'custom',
          path: ['DEFAULT_TIMEZONE'],
          message: `unknown IANA timezone "${env.DEFAULT_TIMEZONE}"`,
        });
      }
    },
    // Zod skips refinements once a field failed; run these anyway so that every problem
    // (a bad PORT *and* missing Twilio keys) is reported in one go. They only read fields
    // that are plain strings, so a failed field elsewhere cannot confuse them.
    { when: () => true },
  );

/** `SMS_TRANSPORT`, else twilio when its credentials are set, else outbox. */
function smsTransportOf(env: {
  SMS_TRANSPORT?: 'outbox' | 'twilio' | undefined;
  TWILIO_ACCOUNT_SID?: string | undefined;
  TWILIO_AUTH_TOKEN?: string | undefined;
}): 'outbox' | 'twilio' {
  return env.SMS_TRANSPORT ?? (env.TWILIO_ACCOUNT_SID && env.TWILIO_AUTH_TOKEN ? 'twilio' : 'outbox');
}

export type Env = z.output<typeof envSchema>;

/** How long a lost sender's message may still reach a provider after its claim (src/recoveries/send-lease.ts). */
function sendLeaseOf(env: { PROVIDER_TIMEOUT: number; JOB_LOCK_DURATION: number }): number {
  return sendLeaseFor(env.PROVIDER_TIMEOUT, env.JOB_LOCK_DURATION).leaseMs;
}

/** Kept between the send lease and the idle-in-transaction timeout: a busy event loop's delay before the next statement. */
const idleBeyondLeaseMs = 4_000;

export interface RedisNode {
  host: string;
  port: number;
}

/** `host:port,host:port` (IPv6 as `[::1]:7000`); undefined when a part cannot be read. */
export function parseClusterNodes(text: string): RedisNode[] | undefined {
  const nodes: RedisNode[] = [];
  for (const part of text.split(',').map((p) => p.trim())) {
    const match = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(part);
    const port = Number(match?.[2]);
    if (!match?.[1] || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
    nodes.push({ host: match[1].replace(/^\[|\]$/g, ''), port });
  }
  return nodes.length > 0 ? nodes : undefined;
}

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
  sms:
    | { transport: 'outbox' }
    | {
        transport: 'twilio';
        accountSid: string;
        authToken: string;
        messagingServiceSid: string | undefined;
        from: string | undefined;
        apiUrl: string | undefined;
      };
  email: { transport: 'outbox'; from: string } | { transport: 'smtp'; from: string; smtpUrl: string };
  shopName: string;
  logLevel: Env['LOG_LEVEL'];
  abandonAfterMs: number;
  defaultTimezone: string;
  defaultLocale: string;
  retryLinkTtlMs: number;
  quietHoursSpreadMs: number;
  reconcileIntervalMs: number;
  reconcileGraceMs: number;
  /** Lookups of SMS whose outcome is unknown (SMS_LOOKUP_AFTER, SMS_LOOKUP_UNTIL). */
  smsLookup: { afterMs: number; untilMs: number };
  workerConcurrency: number;
  databasePoolSize: number;
  /** Bounds on the waits of every Postgres connection (DATABASE_*_TIMEOUT, DATABASE_KEEPALIVE_DELAY). */
  databaseLimits: ConnectionLimits;
  /** SEND_RATE_LIMIT per SEND_RATE_WINDOW, across all workers; undefined: unlimited. */
  sendRateLimit: { max: number; durationMs: number } | undefined;
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
    stripe:
      | { secretKey: string; webhookSecret: string; publishableKey: string | undefined; apiUrl: string | undefined }
      | undefined;
    /** Alipay direct, when chosen for a method. Keys are PEM or bare base64 (files already read). */
    alipay:
      | {
          appId: string;
          privateKey: string;
          alipayPublicKey: string;
          flow: 'page' | 'qr';
          gatewayUrl: string | undefined;
        }
      | undefined;
    /** WeChat Pay direct, when chosen for a method. `platformKeys`: serial → PEM (certificate or public key). */
    wechatPay:
      | {
          appId: string;
          mchId: string;
          merchantSerial: string;
          privateKey: string;
          apiV3Key: string;
          platformKeys: Record<string, string>;
          h5: boolean;
          apiUrl: string | undefined;
        }
      | undefined;
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
  finance: { holdoutPercent: number; messageCosts: MessageCostRates };
  /** Gateway circuit breakers (src/circuits/). */
  circuits: {
    windowMs: number;
    minFailures: number;
    failureRatio: number;
    coolDownMs: number;
    releaseSpreadMs: number;
    recheckMs: number;
    evaluateIntervalMs: number;
  };
  /** RECOUP_SECRET; undefined means "generate one under dataDir". */
  secret: string | undefined;
}

// Every event with a customer asks (POST /v1/events), and building an Intl.DateTimeFormat costs
// about as much as the rest of the event's validation: each distinct name is checked once.
const timezoneValidity = new Map<string, boolean>();
const timezoneValidityLimit = 10_000;

export function isValidTimezone(zone: string): boolean {
  const known = timezoneValidity.get(zone);
  if (known !== undefined) return known;
  let valid: boolean;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    valid = true;
  } catch {
    valid = false;
  }
  // Bounded: garbage names in requests must not grow it without end.
  if (timezoneValidity.size < timezoneValidityLimit) timezoneValidity.set(zone, valid);
  return valid;
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
  const smsTransport = smsTransportOf(env);
  const emailTransport = env.EMAIL_TRANSPORT ?? (env.SMTP_URL ? 'smtp' : 'outbox');
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
    sms:
      smsTransport === 'twilio'
        ? {
            transport: 'twilio',
            accountSid: env.TWILIO_ACCOUNT_SID ?? '',
            authToken: env.TWILIO_AUTH_TOKEN ?? '',
            messagingServiceSid: env.TWILIO_MESSAGING_SERVICE_SID,
            from: env.TWILIO_FROM,
            apiUrl: env.TWILIO_API_URL,
          }
        : { transport: 'outbox' },
    email:
      emailTransport === 'smtp'
        ? { transport: 'smtp', from: env.EMAIL_FROM, smtpUrl: env.SMTP_URL ?? '' }
        : { transport: 'outbox', from: env.EMAIL_FROM },
    shopName: env.SHOP_NAME,
    logLevel: env.LOG_LEVEL,
    abandonAfterMs: env.ABANDON_AFTER,
    defaultTimezone: env.DEFAULT_TIMEZONE,
    defaultLocale: env.DEFAULT_LOCALE,
    retryLinkTtlMs: env.RETRY_LINK_TTL,
    quietHoursSpreadMs: env.QUIET_HOURS_SPREAD,
    reconcileIntervalMs: env.RECONCILE_INTERVAL,
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
      gatewayFor: {
        card: env.PAYMENT_GATEWAY_CARD ?? env.PAYMENT_GATEWAY,
        alipay: env.PAYMENT_GATEWAY_ALIPAY ?? env.PAYMENT_GATEWAY,
        wechat_pay: env.PAYMENT_GATEWAY_WECHAT_PAY ?? env.PAYMENT_GATEWAY,
      },
      stripe:
        env.STRIPE_SECRET_KEY && env.STRIPE_WEBHOOK_SECRET
          ? {
              secretKey: env.STRIPE_SECRET_KEY,
              webhookSecret: env.STRIPE_WEBHOOK_SECRET,
              publishableKey: env.STRIPE_PUBLISHABLE_KEY,
              apiUrl: env.STRIPE_API_URL,
            }
          : undefined,
      alipay:
        usesGateway(env, 'alipay') && env.ALIPAY_APP_ID && env.ALIPAY_PRIVATE_KEY && env.ALIPAY_PUBLIC_KEY
          ? {
              appId: env.ALIPAY_APP_ID,
              privateKey: pemOrFile(env.ALIPAY_PRIVATE_KEY),
              alipayPublicKey: pemOrFile(env.ALIPAY_PUBLIC_KEY),
              flow: env.ALIPAY_FLOW,
              gatewayUrl: env.ALIPAY_GATEWAY_URL,
            }
          : undefined,
      wechatPay:
        usesGateway(env, 'wechat_pay') &&
        env.WECHAT_PAY_APP_ID &&
        env.WECHAT_PAY_MCH_ID &&
        env.WECHAT_PAY_MERCHANT_SERIAL &&
        env.WECHAT_PAY_PRIVATE_KEY &&
        env.WECHAT_PAY_API_V3_KEY
          ? {
              appId: env.WECHAT_PAY_APP_ID,
              mchId: env.WECHAT_PAY_MCH_ID,
              merchantSerial: env.WECHAT_PAY_MERCHANT_SERIAL,
              privateKey: pemOrFile(env.WECHAT_PAY_PRIVATE_KEY),
              apiV3Key: env.WECHAT_PAY_API_V3_KEY,
              platformKeys: wechatPlatformKeys(env),
              h5: env.WECHAT_PAY_H5 === 'true',
              apiUrl: env.WECHAT_PAY_API_URL,
            }
          : undefined,
      clickAttributionWindowMs: env.CLICK_ATTRIBUTION_WINDOW,
      incentivePeriodMs: env.INCENTIVE_PERIOD,
      webhookStaleAfterMs: env.WEBHOOK_STALE_AFTER,
      checkOpenAttemptAfterMs: env.PAYMENT_CHECK_AFTER,
    },
    secret: env.RECOUP_SECRET,
    ops: { metricsToken: env.METRICS_TOKEN, metricsPort: env.METRICS_PORT, stuckOrderAfterMs: env.STUCK_ORDER_AFTER },
    trustProxy: env.TRUST_PROXY === undefined ? false : env.TRUST_PROXY === 'true' ? true : env.TRUST_PROXY,
    retryPageRateLimit: env.RETRY_PAGE_RATE_LIMIT,
    finance: {
      holdoutPercent: env.HOLDOUT_PERCENT,
      messageCosts: {
        smsPerSegment: env.SMS_COST_PER_SEGMENT ? parseUnitCost(env.SMS_COST_PER_SEGMENT) : undefined,
        smsPerSegmentByCountry: countryCosts(env.SMS_COST_PER_SEGMENT_BY_COUNTRY),
        email: env.EMAIL_COST ? parseUnitCost(env.EMAIL_COST) : undefined,
      },
    },
    circuits: {
      windowMs: env.CIRCUIT_WINDOW,
      minFailures: env.CIRCUIT_MIN_FAILURES,
      failureRatio: env.CIRCUIT_FAILURE_RATIO,
      coolDownMs: env.CIRCUIT_COOL_DOWN,
      releaseSpreadMs: env.CIRCUIT_RELEASE_SPREAD,
      recheckMs: env.CIRCUIT_RECHECK,
      evaluateIntervalMs: env.CIRCUIT_EVALUATE_INTERVAL,
    },
  };
}

function countryCosts(text: string | undefined): Record<string, UnitCost> {
  if (text === undefined) return {};
  const parsed = parseCountryCosts(text);
  return 'error' in parsed ? {} : parsed;
}

function usesGateway(env: Env, name: GatewayName): boolean {
  return [
    env.PAYMENT_GATEWAY,
    env.PAYMENT_GATEWAY_CARD,
    env.PAYMENT_GATEWAY_ALIPAY,
    env.PAYMENT_GATEWAY_WECHAT_PAY,
  ].includes(name);
}

/** A key given as a file path rather than its text (PEM, or the bare base64 Alipay's tools print). */
function looksLikePath(value: string): boolean {
  return /^\.{0,2}\//.test(value) || /\.(pem|crt|cer|key|txt)$/i.test(value);
}

/** The key's text: the value itself, or the file it names. */
function pemOrFile(value: string): string {
  if (value.includes('-----BEGIN') || !looksLikePath(value)) return value.replace(/\\n/g, '\n');
  return fs.readFileSync(value, 'utf8');
}

/** Serial → PEM: the WeChat Pay public key by its id, and the platform certificate by its own serial. */
function wechatPlatformKeys(env: Env): Record<string, string> {
  const keys: Record<string, string> = {};
  if (env.WECHAT_PAY_PUBLIC_KEY && env.WECHAT_PAY_PUBLIC_KEY_ID) {
    keys[env.WECHAT_PAY_PUBLIC_KEY_ID] = pemOrFile(env.WECHAT_PAY_PUBLIC_KEY);
  }
  if (env.WECHAT_PAY_PLATFORM_CERT) {
    const pem = pemOrFile(env.WECHAT_PAY_PLATFORM_CERT);
    keys[new X509Certificate(pem).serialNumber.toUpperCase()] = pem;
  }
  return keys;
}
