import { randomBytes } from 'node:crypto';
import type { InFlightWait } from '../messages/in-flight.js';
import type { ReminderAfterPaymentObserver } from '../messages/after-payment.js';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { PhoneNumberType } from '../domain/phone-numbers.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { RecoupError, validationError } from '../platform/errors.js';
import { formatPath } from '../platform/errors.js';
import { randomHex } from '../platform/random.js';
import {
  isStorableText,
  maxNestingDepth,
  nestsDeeperThan,
  tooDeepMessage,
  unstorableTextMessage,
  unstorableTextPaths,
} from '../platform/storable-text.js';
import type { Logger } from '../platform/logger.js';
import type { StepQueue } from '../queue/queues.js';
import { EnvKeyResolver, type KeyResolver } from '../access/auth.js';
import { consoleAuthRoutes, consoleSession } from '../console/console-auth.js';
import { PgEndedSessions } from '../console/ended-sessions.js';
import { consoleRoutes, type ConsoleRouteDeps } from '../console/console.routes.js';
import { keyRoutes } from '../access/keys.routes.js';
import { SandboxGateway } from '../payments/gateways/sandbox/sandbox-gateway.js';
import { sandboxRoutes } from '../payments/gateways/sandbox/sandbox.routes.js';
import type { RetryDeps } from '../payments/retry-session.js';
import { eventRoutes } from '../orders/events.routes.js';
import type { ShopConnector } from '../connectors/shop-connector.js';
import { shopWebhookRoutes } from '../connectors/shop-webhooks.routes.js';
import { orderRoutes } from '../orders/orders.routes.js';
import { cadenceRoutes, type CadenceRouteDeps } from '../cadences/cadences.routes.js';
import { paymentWebhookRoutes } from '../payments/payment-webhooks.routes.js';
import { retryPageRoutes, type RetryPageDeps } from '../payments/retry-pages.routes.js';
import { sendProblem } from '../http/problem.js';
import { clientErrorHandler } from '../http/client-errors.js';
import { addTransportHeaders, transportHeaders } from '../http/security-headers.js';
import { twilioWebhookRoutes } from '../compliance/twilio-webhooks.routes.js';
import { unsubscribeRoutes, type UnsubscribeRouteDeps } from '../compliance/unsubscribe.routes.js';
import { forgetCustomerRoutes } from '../compliance/forget-customer.routes.js';
import { registerOpenApi } from './openapi.js';
import { reportRoutes } from '../reports/reports.routes.js';
import { opsRoutes, type OpsRouteDeps } from '../ops/ops.routes.js';
import { webhookRoutes, type WebhookRouteDeps } from '../webhooks/webhooks.routes.js';

export interface AppDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  apiKeys: string[];
  /** Resolves API keys to principals; default: only the bootstrap `apiKeys` (ingest + admin). */
  keyResolver?: KeyResolver;
  /**
   * RECOUP_SECRET: signs console session cookies (and their CSRF tokens). Every server process
   * must share it. Default: random per process (sessions then end with the process).
   */
  secret?: string | undefined;
  publicUrl: string;
  /** How long a retry link works (RETRY_LINK_TTL), also one ops issue by hand. */
  retryLinkTtlMs: number;
  abandonAfterMs: number;
  clickWindowMs: number;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  /** The outbox transports' folder (OUTBOX_DIR): forgetting a customer deletes their files there. */
  outboxDir?: string | undefined;
  /** SMS_NUMBER_TYPES: the kinds of phone number an event's customer keeps. Default: mobile and fixed-line ones. */
  smsNumberTypes?: readonly PhoneNumberType[] | undefined;
  bodyLimit: number;
  /** A request not fully received after this long is answered 408. Default 30 s. */
  requestTimeoutMs?: number | undefined;
  /** Trust X-Forwarded-* from this many proxies / these addresses (TRUST_PROXY). */
  trustProxy?: boolean | string;
  /** Retry links, payment gateways and their webhooks. */
  payments?: { retry: RetryDeps; pages?: Omit<RetryPageDeps, 'retry'> } | undefined;
  /** Twilio's auth token, when SMS goes through Twilio: enables its signed delivery callbacks. */
  twilioAuthToken?: string | undefined;
  /** Told of reminders a delivery callback shows were accepted after their order's payment. */
  onReminderAfterPayment?: ReminderAfterPaymentObserver | undefined;
  /** Email unsubscribe pages (`/u/:token`); its shop name and locale also word the SMS keyword replies. */
  compliance?: (Omit<UnsubscribeRouteDeps, 'db' | 'clock'> & { defaultLocale: string }) | undefined;
  /** Cadence management (`/v1/cadences`): the renderer, and the transports test sends go through. */
  cadenceAdmin?:
    | Pick<
        CadenceRouteDeps,
        'renderer' | 'sms' | 'email' | 'shopName' | 'defaultTimezone' | 'defaultLocale' | 'stepMinGapMs'
      >
    | undefined;
  /** The ops console's pages (`/console/*`, src/console/console.routes.ts); also needs `cadenceAdmin`. */
  console?: Pick<ConsoleRouteDeps, 'pages' | 'stuckOrderAfterMs'> | undefined;
  /** `/readyz`, `/metrics` and bull-board (`/admin/queues`); see src/ops/ops.routes.ts. */
  ops?: Pick<OpsRouteDeps, 'redis' | 'isMigrated' | 'metrics' | 'metricsToken'> | undefined;
  /** Webhook endpoints and the events feed (src/webhooks/webhooks.routes.ts); `wake` also queues the console's resends. */
  webhooks?: Pick<WebhookRouteDeps, 'secretOverlapMs' | 'wake'> | undefined;
  /** Shop platforms' connectors: their webhooks come in at /webhooks/shops/<platform>. */
  connectors?: ShopConnector[] | undefined;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    // Slow or stalled clients cannot hold a connection forever.
    requestTimeout: deps.requestTimeoutMs ?? 30_000,
    // Node reads requestTimeout when the server is created (Fastify only sets it afterwards, which
    // Node ignores), and looks for timed-out requests every connectionsCheckingInterval (30 s).
    http: {
      requestTimeout: deps.requestTimeoutMs ?? 30_000,
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, (deps.requestTimeoutMs ?? 30_000) / 2)),
    },
    connectionTimeout: Math.max(60_000, (deps.requestTimeoutMs ?? 30_000) * 2),
    // From the pooled CSPRNG (src/platform/random.ts): randomBytes per request was 7 µs of every event's 160.
    genReqId: () => `req_${randomHex(6)}`,
    // Behind a proxy the client IP (rate limits) and https (Secure cookies) come from X-Forwarded-*.
    trustProxy: deps.trustProxy ?? false,
    // Requests refused before routing (a URL Node or the router cannot read) answer problems too.
    clientErrorHandler: clientErrorHandler(deps.logger as FastifyBaseLogger, transportHeaders(deps.publicUrl)),
    frameworkErrors: (err, request, reply) => sendProblem(request, reply, err),
  });
  const keys: KeyResolver = deps.keyResolver ?? new EnvKeyResolver(deps.apiKeys);
  const secret = deps.secret ?? randomBytes(32).toString('base64url');
  // Console logins: requireConsole guards console pages; requireScope accepts a session through app.consoleSessions.
  const consoleSessions = consoleSession({
    keys,
    secret,
    publicUrl: deps.publicUrl,
    clock: deps.clock,
    ended: new PgEndedSessions(deps.db),
  });
  app.decorate('consoleSessions', consoleSessions);

  // Before any route, so that every answer (errors and 404s too) carries HSTS over https.
  addTransportHeaders(app, deps.publicUrl);
  app.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, new RecoupError('not_found', `No route ${request.method} ${request.url}`)),
  );

  // Every route, before its handler reads anything: a NUL or a lone surrogate in the path, query
  // or body is a 400 naming where it is, not a Postgres error mid-statement (a 500, or a partial write).
  // A body nested past the cap is refused first, whoever sent it: nothing ever walks it.
  app.addHook('preValidation', async (request) => {
    if (nestsDeeperThan(request.body, maxNestingDepth)) {
      throw validationError([{ path: '(body)', message: tooDeepMessage }]);
    }
    const paths = [
      ...unstorableTextPaths(request.params),
      ...unstorableTextPaths(request.query),
      ...(typeof request.body === 'string'
        ? isStorableText(request.body)
          ? []
          : [['(body)']]
        : unstorableTextPaths(request.body)),
    ];
    if (paths.length > 0) {
      throw validationError(paths.map((p) => ({ path: formatPath(p), message: unstorableTextMessage })));
    }
  });

  // Before any route: the OpenAPI hook documents routes as they are added.
  await registerOpenApi(app, { publicUrl: deps.publicUrl });

  app.get('/healthz', async () => ({ status: 'ok' }));

  const payments = deps.payments;
  if (payments) {
    await app.register((scope) => paymentWebhookRoutes(scope, payments.retry));
    if (payments.pages) {
      const pages = payments.pages;
      await app.register((scope) => retryPageRoutes(scope, { ...pages, retry: payments.retry }));
    }
    for (const gateway of payments.retry.gateways.all()) {
      if (gateway instanceof SandboxGateway) await app.register(sandboxRoutes(gateway));
    }
  }

  if (deps.twilioAuthToken) {
    const authToken = deps.twilioAuthToken;
    await app.register((scope) =>
      twilioWebhookRoutes(scope, {
        db: deps.db,
        clock: deps.clock,
        authToken,
        publicUrl: deps.publicUrl,
        shopName: deps.compliance?.shopName,
        defaultLocale: deps.compliance?.defaultLocale,
        inFlightWait: deps.inFlightWait,
        onReminderAfterPayment: deps.onReminderAfterPayment,
      }),
    );
  }
  const compliance = deps.compliance;
  if (compliance) {
    await app.register((scope) =>
      unsubscribeRoutes(scope, { ...compliance, db: deps.db, clock: deps.clock, inFlightWait: deps.inFlightWait }),
    );
  }
  await app.register((scope) =>
    forgetCustomerRoutes(scope, {
      db: deps.db,
      clock: deps.clock,
      inFlightWait: deps.inFlightWait,
      outboxDir: deps.outboxDir,
      keys,
    }),
  );

  await app.register((scope) => eventRoutes(scope, { ...deps, keys }));
  const connectors = deps.connectors ?? [];
  if (connectors.length > 0) await app.register((scope) => shopWebhookRoutes(scope, { ...deps, connectors }));
  const retryLinks = payments?.pages
    ? { publicUrl: deps.publicUrl, ttlMs: deps.retryLinkTtlMs, clock: deps.clock }
    : undefined;
  await app.register((scope) => orderRoutes(scope, { db: deps.db, payments, keys, retryLinks }));
  const cadenceAdmin = deps.cadenceAdmin;
  if (cadenceAdmin) {
    await app.register((scope) =>
      cadenceRoutes(scope, { ...deps, ...cadenceAdmin, keys, gateways: payments?.retry.gateways }),
    );
  }
  await app.register((scope) => keyRoutes(scope, { db: deps.db, clock: deps.clock, keys }));
  if (deps.webhooks) {
    const webhooks = deps.webhooks;
    await app.register((scope) => webhookRoutes(scope, { ...webhooks, db: deps.db, keys }));
  }
  await app.register((scope) => reportRoutes(scope, { db: deps.db, clock: deps.clock, keys }));
  await app.register((scope) => consoleAuthRoutes(scope, consoleSessions));
  const consolePages = deps.console;
  if (consolePages && cadenceAdmin) {
    await app.register((scope) =>
      consoleRoutes(scope, {
        ...deps,
        ...cadenceAdmin,
        ...consolePages,
        sessions: consoleSessions,
        keys,
        secret,
        gateways: payments?.retry.gateways,
        wakeWebhooks: deps.webhooks?.wake,
      }),
    );
  }
  const ops = deps.ops;
  if (ops) await app.register((scope) => opsRoutes(scope, { ...ops, db: deps.db, queue: deps.queue, keys }));

  return app;
}
