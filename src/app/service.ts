import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { parseCadenceDocument } from '../cadences/parse-cadence.js';
import { applyCadences, listCadenceVersions } from '../cadences/cadence-store.js';
import type { EmailSender } from '../channels/email-sender.js';
import type { SmsSender } from '../channels/sms-sender.js';
import type { Clock } from '../platform/clock.js';
import { DatabaseClock } from '../db/database-clock.js';
import type { Config } from '../config.js';
import {
  buildCoreDeps,
  buildEmailSender,
  buildSmsSender,
  dispatchSettings,
  buildPaymentGateways,
  gatewayPageOrigins,
  resolveApiKeys,
  resolveSecret,
  type CoreDeps,
} from './deps.js';
import { RecoupError } from '../platform/errors.js';
import { assertPortFree, portError } from '../platform/port-check.js';
import { assertEmbeddedDatabaseFree } from '../db/embedded-lock.js';
import { buildApp } from './build-app.js';
import { ChainedKeyResolver, EnvKeyResolver } from '../access/auth.js';
import { DbKeyResolver } from '../access/api-keys.js';
import { faultClock, parseFaultInjection } from '../platform/fault-injection.js';
import { PaymentSweeper } from '../payments/payment-sweeper.js';
import { SandboxGateway } from '../payments/gateways/sandbox/sandbox-gateway.js';
import type { RetryDeps } from '../payments/retry-session.js';
import { PageRenderer } from '../http/pages/page-renderer.js';
import { ConsolePages } from '../console/console-pages.js';
import { UnsubscribeLinks } from '../compliance/unsubscribe-links.js';
import { UnsubscribePages } from '../compliance/unsubscribe-pages.js';
import { sendFreshLink } from '../recoveries/fresh-link.js';
import type { Logger } from '../platform/logger.js';
import {
  connectRedis,
  producerConnection,
  StepQueue,
  workerConnection,
  type RedisClient,
  type RedisTarget,
} from '../queue/queues.js';
import { startStepWorker } from '../queue/step.worker.js';
import { startLoop } from '../platform/loop.js';
import { WebhookQueue } from '../queue/webhook-queue.js';
import { startWebhookRunner } from '../webhooks/webhook-runner.js';
import { dispatchSteps, type DispatchDeps, type DispatchResult } from '../recoveries/dispatch-step.js';
import { Reconciler } from '../recoveries/reconciler.js';
import { UnknownSmsResolver } from '../messages/unknown-sms.js';
import { MeteredEmailSender, MeteredSmsSender } from '../ops/metered-senders.js';
import { MessageCosts } from '../reports/message-cost.js';
import type { ReminderAfterPaymentObserver } from '../messages/after-payment.js';
import { OpsMetrics } from '../ops/metrics.js';
import { startMetricsServer } from '../ops/metrics-server.js';
import { opsSettings } from '../ops/ops-settings.js';
import { registerStateMetrics } from '../ops/state-metrics.js';
import { GatewayHealth } from '../circuits/gateway-health.js';
import { buildConnectors, paidOnPlatform, writeBacksOf } from '../connectors/connectors.js';
import type { ShopConnector } from '../connectors/shop-connector.js';

/** How often a process measures its clock against Postgres's: hosts drift by seconds a day at most. */
const databaseClockSyncMs = 60_000;

// src/app/service.ts and dist/app/service.js both sit two levels below the package root.
export const bundledCadencesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cadences');

export interface ServiceRoles {
  /** HTTP API (events in, order views out). */
  http: boolean;
  /** Step worker + reconciler. */
  worker: boolean;
}

export interface RunningService {
  core: CoreDeps;
  app: FastifyInstance | undefined;
  worker: Worker | undefined;
  /** Base URL the HTTP API listens on, when it runs. */
  url: string | undefined;
  apiKeyFile: string | undefined;
  /** Retry links and payments, when the HTTP role runs. */
  payments: RetryDeps | undefined;
  close(): Promise<void>;
}

export interface ServiceOverrides {
  /** The process's clock (tests: a host whose clock is off). Default: the system clock. */
  clock?: Clock;
  sms?: SmsSender;
  email?: EmailSender;
  faultPoint?: DispatchDeps['faultPoint'];
  onResult?: (result: DispatchResult) => void;
  /** The shop platforms' connectors. Default: those the configuration sets up (src/connectors/connectors.ts). */
  connectors?: ShopConnector[];
}

/** Opens every dependency the roles need, applies migrations and cadences, and starts the roles. */
export async function startService(
  config: Config,
  roles: ServiceRoles,
  logger: Logger,
  overrides: ServiceOverrides = {},
): Promise<RunningService> {
  const closers: Array<{ name: string; close: () => Promise<unknown> }> = [];
  const closeAll = async () => {
    for (const { name, close } of closers.reverse()) {
      await close().catch((err: unknown) => logger.warn({ err }, `closing ${name} failed`));
    }
  };

  const connectors = overrides.connectors ?? buildConnectors(config.connectors);
  // One parse, so that the `_nth` counts of every crash point are kept in one place.
  const faultPoint = parseFaultInjection(config.faultInjection);

  try {
    // Refusals that leave no trace come first: a recoup already running here, then a port in use.
    if (!config.databaseUrl) assertEmbeddedDatabaseFree(config.dataDir);
    if (roles.http) await assertPortFree(config.host, config.port, 'PORT');
    const ops = opsSettings(config);
    if (ops.metricsPort !== undefined) await assertPortFree(config.host, ops.metricsPort, 'METRICS_PORT');
    const redisTarget: RedisTarget = { url: config.redisUrl, clusterNodes: config.redisClusterNodes };
    await assertRedisReachable(redisTarget, {
      waitMs: config.redisStartupWaitMs,
      onWaiting: (reason) =>
        logger.warn({ reason, waitMs: config.redisStartupWaitMs }, 'Redis is not reachable yet; waiting for it'),
    });
    // Decisions go by Postgres's time, whatever this host's clock says; a test's clock is kept as given.
    const core = await buildCoreDeps(config, logger, overrides.clock ?? faultClock(config.faultInjection), {
      onDatabaseTime: overrides.clock === undefined,
    });
    closers.push({ name: 'database', close: () => core.database.close() });
    await core.database.migrate();
    const databaseClock = core.clock instanceof DatabaseClock ? core.clock : undefined;
    if (databaseClock) {
      await databaseClock.start(databaseClockSyncMs, (err) =>
        logger.warn({ err }, "could not read Postgres's clock; keeping the last offset"),
      );
      closers.push({ name: 'database clock', close: async () => databaseClock.stop() });
      if (Math.abs(databaseClock.offsetMs) > 1_000) {
        logger.warn(
          { offsetMs: Math.round(databaseClock.offsetMs) },
          "this host's clock is off Postgres's; using Postgres's",
        );
      }
    }
    await applyStartupCadences(core);

    const producer = producerConnection(redisTarget, (err) => logger.warn({ err: err.message }, 'redis (producer)'));
    closers.push({ name: 'redis producer', close: () => producer.quit() });
    await whenReady(producer, 5_000);
    const queue = new StepQueue(producer, config.queuePrefix, { horizonMs: config.wakeupHorizonMs });
    closers.push({ name: 'queue', close: () => queue.close() });
    // One registry per service: the worker, the HTTP /metrics and METRICS_PORT all report from it.
    const metrics = new OpsMetrics();
    // A reminder accepted after its order's payment is already flagged and in the outbox; here it is
    // counted and logged, by whichever path recorded it.
    const onReminderAfterPayment: ReminderAfterPaymentObserver = (reminders) => {
      metrics.observeRemindersAfterPayment(reminders);
      for (const r of reminders) {
        logger.error(
          {
            messageId: r.messageId,
            orderId: r.orderId,
            channel: r.channel,
            acceptedAt: r.acceptedAt,
            closedAt: r.closedAt,
            orderStatus: r.orderStatus,
          },
          'reminder accepted by its provider after the order was paid or cancelled',
        );
      }
    };

    let worker: Worker | undefined;
    if (roles.worker) {
      const sms = new MeteredSmsSender(overrides.sms ?? buildSmsSender(config), metrics);
      const email = new MeteredEmailSender(overrides.email ?? buildEmailSender(config), metrics);
      closers.push({ name: 'sms sender', close: () => sms.close() });
      closers.push({ name: 'email sender', close: () => email.close() });
      const workerRedis = workerConnection(redisTarget, (err) => logger.warn({ err: err.message }, 'redis (worker)'));
      closers.push({ name: 'redis worker', close: async () => workerRedis.disconnect() });
      const dispatch: DispatchDeps = {
        db: core.database.db,
        cadences: core.cadences,
        renderer: core.renderer,
        sms,
        email,
        clock: core.clock,
        logger,
        settings: dispatchSettings(config),
        // Every email's List-Unsubscribe; the server that answers /u/ must share RECOUP_SECRET.
        unsubscribe: new UnsubscribeLinks({
          publicUrl: config.publicUrl,
          secret: resolveSecret(config),
          from: config.email.from,
        }),
        faultPoint: overrides.faultPoint ?? faultPoint,
        // Steps whose retry link only leads to gateways with open circuits are held.
        circuits: { gatewayFor: (method) => config.payments.gatewayFor[method], settings: config.circuits },
        messageCosts: new MessageCosts(config.finance.messageCosts),
        onReminderAfterPayment,
      };
      worker = startStepWorker<DispatchResult>({
        connection: workerRedis,
        prefix: config.queuePrefix,
        concurrency: config.workerConcurrency,
        rateLimit: config.sendRateLimit,
        lockDurationMs: config.jobLockDurationMs,
        queue,
        logger,
        onResult: (result) => {
          metrics.observeDispatch(result);
          overrides.onResult?.(result);
        },
        process: (jobs) => dispatchSteps(dispatch, jobs),
        now: () => core.clock.now(),
      });
      const stepWorker = worker;
      closers.push({
        name: 'step worker',
        // Finish in-flight sends within the deadline; after it, jobs are released and
        // their `sending` claims resolved by the next run (never re-sent blindly).
        close: () => withDeadline(stepWorker.close(), config.shutdownTimeoutMs, () => stepWorker.close(true)),
      });

      const reconciler = new Reconciler({
        db: core.database.db,
        redis: producer,
        queue,
        queuePrefix: config.queuePrefix,
        cadences: core.cadences,
        clock: core.clock,
        logger,
        graceMs: config.reconcileGraceMs,
        claimStaleAfterMs: dispatchSettings(config).claimStaleAfterMs,
      });
      const loop = startLoop(config.reconcileIntervalMs, () => reconciler.runOnce(), logger, 'reconciler');
      closers.push({ name: 'reconciler', close: () => loop.stop() });

      const webhooks = startWebhookRunner({
        db: core.database.db,
        clock: core.clock,
        logger,
        config: config.webhooks,
        producer,
        workerConnection: workerRedis,
        prefix: config.queuePrefix,
        lockDurationMs: config.jobLockDurationMs,
        restoreIntervalMs: config.reconcileIntervalMs,
        restoreGraceMs: config.reconcileGraceMs,
        writeBacks: writeBacksOf(connectors),
      });
      closers.push({ name: 'webhooks', close: () => webhooks.close() });

      // SMS whose sending outcome is unknown are looked up at the provider, where it can be asked.
      if (sms.lookup) {
        const resolver = new UnknownSmsResolver({
          db: core.database.db,
          lookup: sms.lookup,
          clock: core.clock,
          logger,
          afterMs: config.smsLookup.afterMs,
          untilMs: config.smsLookup.untilMs,
          onReminderAfterPayment,
        });
        const lookupLoop = startLoop(config.smsLookup.afterMs, () => resolver.runOnce(), logger, 'unknown SMS lookup');
        closers.push({ name: 'unknown SMS lookups', close: () => lookupLoop.stop() });
      }

      // Every worker process evaluates the gateway circuits; one conditional write decides each transition.
      const gatewayHealth = new GatewayHealth({
        db: core.database.db,
        clock: core.clock,
        logger,
        settings: config.circuits,
      });
      const circuitLoop = startLoop(
        config.circuits.evaluateIntervalMs,
        () => gatewayHealth.evaluate().catch((err: unknown) => logger.warn({ err }, 'circuit evaluation failed')),
        logger,
        'circuit evaluation',
      );
      closers.push({ name: 'circuit evaluator', close: () => circuitLoop.stop() });
    }

    let app: FastifyInstance | undefined;
    let url: string | undefined;
    let apiKeyFile: string | undefined;
    let payments: RetryDeps | undefined;
    if (roles.http) {
      const apiKeys = resolveApiKeys(config);
      apiKeyFile = apiKeys.generatedFile;
      const secret = resolveSecret(config);
      const gateways = buildPaymentGateways(config, secret, logger);
      const lease = dispatchSettings(config).sendLease;
      const retry: RetryDeps = {
        db: core.database.db,
        cadences: core.cadences,
        gateways,
        clock: core.clock,
        logger,
        publicUrl: config.publicUrl,
        shopName: config.shopName,
        defaultLocale: config.defaultLocale,
        clickWindowMs: config.payments.clickAttributionWindowMs,
        inFlightWait: { leaseMs: lease.leaseMs, acceptGraceMs: config.providerAcceptGraceMs },
        webhookStaleAfterMs: config.payments.webhookStaleAfterMs,
        faultPoint,
      };
      payments = retry;
      // The server sends one kind of message itself: a fresh link the customer asked for.
      const linkSms = new MeteredSmsSender(overrides.sms ?? buildSmsSender(config), metrics);
      const linkEmail = new MeteredEmailSender(overrides.email ?? buildEmailSender(config), metrics);
      closers.push({ name: 'link sms sender', close: () => linkSms.close() });
      closers.push({ name: 'link email sender', close: () => linkEmail.close() });
      for (const gateway of gateways.all()) {
        if (gateway instanceof SandboxGateway) closers.push({ name: 'sandbox', close: async () => gateway.close() });
      }
      // Beside the webhooks it backs up, where the gateways are: the sandbox's payments live in
      // this process's memory. Every server runs it; its passes claim their rows.
      const sweeper = new PaymentSweeper(retry, {
        checkOpenAttemptAfterMs: config.payments.checkOpenAttemptAfterMs,
      });
      const sweepLoop = startLoop(config.reconcileIntervalMs, () => sweeper.runOnce(), logger, 'payment sweep');
      closers.push({ name: 'payment sweeper', close: () => sweepLoop.stop() });
      // Shared state (queue, Postgres) is reported by servers only, so workers do not duplicate it.
      registerStateMetrics(metrics.registry, {
        db: core.database.db,
        queue: queue.queue,
        clock: core.clock,
        logger,
        stuckOrderAfterMs: ops.stuckOrderAfterMs,
      });
      const webhookQueue = new WebhookQueue(producer, config.queuePrefix);
      closers.push({ name: 'webhook queue', close: () => webhookQueue.close() });
      app = await buildApp({
        connectors,
        db: core.database.db,
        cadences: core.cadences,
        queue,
        clock: core.clock,
        logger,
        apiKeys: apiKeys.keys,
        // Bootstrap env keys (ingest + admin) first, then the scoped keys stored in Postgres.
        keyResolver: new ChainedKeyResolver([
          new EnvKeyResolver(apiKeys.keys, apiKeys.generatedFile ? 'generated' : 'setting'),
          new DbKeyResolver(core.database.db, core.clock),
        ]),
        secret,
        publicUrl: config.publicUrl,
        retryLinkTtlMs: config.retryLinkTtlMs,
        abandonAfterMs: config.abandonAfterMs,
        clickWindowMs: config.payments.clickAttributionWindowMs,
        inFlightWait: { leaseMs: lease.leaseMs, acceptGraceMs: config.providerAcceptGraceMs },
        // Whatever the transports are now: files an earlier outbox wrote are erased as well.
        outboxDir: config.outboxDir,
        smsNumberTypes: config.smsNumberTypes,
        bodyLimit: config.bodyLimit,
        requestTimeoutMs: config.requestTimeoutMs,
        twilioAuthToken: config.sms.transport === 'twilio' ? config.sms.authToken : undefined,
        onReminderAfterPayment,
        compliance: {
          links: new UnsubscribeLinks({ publicUrl: config.publicUrl, secret, from: config.email.from }),
          pages: UnsubscribePages.load(
            path.join(config.templatesDir, 'pages'),
            PageRenderer.load(path.join(config.templatesDir, 'pages')),
          ),
          secret,
          shopName: config.shopName,
          defaultLocale: config.defaultLocale,
          publicUrl: config.publicUrl,
        },
        webhooks: {
          secretOverlapMs: config.webhooks.secretOverlapMs,
          // A change is committed before its deliveries are queued: if Redis refuses them, the
          // workers' restore pass sends them.
          wake: async (wakeups) => {
            await webhookQueue.add(wakeups, core.clock.now()).catch((err: unknown) => {
              logger.warn(
                { err, deliveries: wakeups.length },
                'could not queue webhook deliveries; the restore pass will',
              );
            });
          },
        },
        // Cadence test sends go out through the same transports as customer messages.
        cadenceAdmin: {
          renderer: core.renderer,
          sms: linkSms,
          email: linkEmail,
          shopName: config.shopName,
          defaultTimezone: config.defaultTimezone,
          defaultLocale: config.defaultLocale,
          stepMinGapMs: config.stepMinGapMs,
        },
        console: {
          pages: ConsolePages.load(path.join(config.templatesDir, 'console')),
          stuckOrderAfterMs: ops.stuckOrderAfterMs,
        },
        ops: {
          redis: producer,
          isMigrated: () => core.database.isMigrated(),
          metrics,
          metricsToken: ops.metricsToken,
        },
        trustProxy: config.trustProxy,
        payments: {
          retry,
          pages: {
            secret,
            rateLimit: { max: config.retryPageRateLimit, timeWindowMs: 60_000 },
            smsNumberTypes: config.smsNumberTypes,
            // A form POST redirects to the gateway's hosted page: Chrome checks that against form-action.
            formActionOrigins: gatewayPageOrigins(config),
            paidOnPlatform: connectors.length > 0 ? paidOnPlatform(config.connectors, connectors) : undefined,
            pages: PageRenderer.load(path.join(config.templatesDir, 'pages')),
            freshLink: (messageId) =>
              sendFreshLink(
                {
                  db: core.database.db,
                  sms: linkSms,
                  email: linkEmail,
                  renderer: core.renderer,
                  cadences: core.cadences,
                  clock: core.clock,
                  defaultTimezone: config.defaultTimezone,
                  publicUrl: config.publicUrl,
                  shopName: config.shopName,
                  retryLinkTtlMs: config.retryLinkTtlMs,
                  logger,
                  defaultLocale: config.defaultLocale,
                  sendLease: lease,
                  onReminderAfterPayment,
                },
                messageId,
              ),
          },
        },
      });
      const httpApp = app;
      closers.push({ name: 'http', close: () => httpApp.close() });
      await app.listen({ port: config.port, host: config.host }).catch((err: unknown) => {
        throw portError(err, config.port, 'PORT') ?? err;
      });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
      core.database.lock?.announce(localUrl(config.host, port));
    }

    if (ops.metricsPort !== undefined) {
      // `recoup worker` has no HTTP API: its lateness and provider metrics are scraped here.
      const metricsServer = await startMetricsServer({
        metrics,
        port: ops.metricsPort,
        host: config.host,
        token: ops.metricsToken,
        logger,
      });
      closers.push({ name: 'metrics server', close: () => metricsServer.close() });
    }

    let closed: Promise<void> | undefined;
    return {
      core,
      app,
      worker,
      url,
      apiKeyFile,
      payments,
      close: () => (closed ??= closeAll()),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Bundled cadences (default, demo) whose name has no version yet; then CADENCES_FILE if set. */
async function applyStartupCadences(core: CoreDeps): Promise<void> {
  const { config, database, renderer, logger } = core;
  const checks = { templates: renderer, requiredLocales: ['en', 'zh-CN'] };
  const known = new Set((await listCadenceVersions(database.db)).map((c) => c.name));
  for (const file of fs
    .readdirSync(bundledCadencesDir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    const text = fs.readFileSync(path.join(bundledCadencesDir, file), 'utf8');
    const missing = parseCadenceDocument(text, checks).filter((c) => !known.has(c.name));
    if (missing.length === 0) continue;
    await applyCadences(database.db, missing, text);
    logger.info({ cadences: missing.map((c) => c.name) }, 'applied bundled cadences');
  }
  if (config.cadencesFile) {
    const text = fs.readFileSync(config.cadencesFile, 'utf8');
    const applied = await applyCadences(database.db, parseCadenceDocument(text, checks), text);
    for (const a of applied)
      logger.info({ cadence: a.name, version: a.version, changed: a.changed }, 'cadence applied');
  }
  core.cadences.invalidate();
}

/**
 * Returns once Redis answers a PING. Retries for `waitMs` (a Redis restarting or failing over as
 * the process starts), then fails with one line that says what to do.
 */
export async function assertRedisReachable(
  target: RedisTarget,
  options: { waitMs?: number; onWaiting?: (reason: string) => void } = {},
): Promise<void> {
  const giveUpAt = Date.now() + (options.waitMs ?? 0);
  for (let attempt = 0; ; attempt += 1) {
    const failure = await pingRedis(target);
    if (failure === undefined) return;
    if (Date.now() + redisRetryMs > giveUpAt) throw failure;
    if (attempt === 0) options.onWaiting?.(failure.message);
    await new Promise((resolve) => setTimeout(resolve, redisRetryMs));
  }
}

const redisRetryMs = 500;

async function pingRedis(target: RedisTarget): Promise<RecoupError | undefined> {
  const where =
    typeof target === 'string'
      ? redactUrl(target)
      : target.clusterNodes
        ? `the cluster nodes ${target.clusterNodes.map((n) => `${n.host}:${n.port}`).join(',')}`
        : redactUrl(target.url);
  const probe = connectRedis(target, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    // A cluster needs its offline queue while it discovers the slots; a single Redis fails fast without it.
    enableOfflineQueue: typeof target !== 'string' && target.clusterNodes !== undefined,
    connectTimeout: 3_000,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (err) {
    return new RecoupError(
      'unavailable',
      `cannot reach Redis at ${where} (${(err as Error).message}). ` +
        'Start one (e.g. `docker compose up -d redis`) or set REDIS_URL (or REDIS_CLUSTER_NODES).',
    );
  } finally {
    probe.disconnect();
  }
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** Where a command on this host reaches the API: a wildcard address is not one to connect to. */
function localUrl(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `http://127.0.0.1:${port}`;
  if (host === '::') return `http://[::1]:${port}`;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

async function withDeadline(work: Promise<unknown>, ms: number, onTimeout: () => Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const outcome = await Promise.race([work.then(() => 'done' as const), deadline]);
  if (timer) clearTimeout(timer);
  if (outcome === 'timeout') await onTimeout();
}

/** Producers refuse commands until connected (no offline queue): wait for the first connection. */
function whenReady(redis: RedisClient, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new RecoupError('unavailable', 'Redis did not become ready')), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
