import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { RecoupError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StepQueue } from '../queue/queues.js';
import { EnvKeyResolver, type KeyResolver } from './auth.js';
import { SandboxGateway } from '../payments/gateways/sandbox/sandbox-gateway.js';
import { sandboxRoutes } from '../payments/gateways/sandbox/sandbox.routes.js';
import type { RetryDeps } from '../payments/retry-session.js';
import { eventRoutes } from './events.routes.js';
import { orderRoutes } from './orders.routes.js';
import { paymentWebhookRoutes } from './payment-webhooks.routes.js';
import { retryPageRoutes, type RetryPageDeps } from './retry-pages.routes.js';
import { sendProblem } from './problem.js';
import { twilioWebhookRoutes } from './twilio-webhooks.routes.js';

export interface AppDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  apiKeys: string[];
  /** Resolves API keys to principals; default: only the bootstrap `apiKeys` (ingest + admin). */
  keyResolver?: KeyResolver;
  publicUrl: string;
  abandonAfterMs: number;
  clickWindowMs: number;
  bodyLimit: number;
  /** Trust X-Forwarded-* from this many proxies / these addresses (TRUST_PROXY). */
  trustProxy?: boolean | string;
  /** Retry links, payment gateways and their webhooks. */
  payments?: { retry: RetryDeps; pages?: Omit<RetryPageDeps, 'retry'> } | undefined;
  /** Twilio's auth token, when SMS goes through Twilio: enables its signed delivery callbacks. */
  twilioAuthToken?: string | undefined;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    // Slow or stalled clients cannot hold a connection forever.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    genReqId: () => `req_${randomBytes(6).toString('hex')}`,
    // Behind a proxy the client IP (rate limits) and https (Secure cookies) come from X-Forwarded-*.
    trustProxy: deps.trustProxy ?? false,
  });
  const keys: KeyResolver = deps.keyResolver ?? new EnvKeyResolver(deps.apiKeys);

  app.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, new RecoupError('not_found', `No route ${request.method} ${request.url}`)),
  );

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
      twilioWebhookRoutes(scope, { db: deps.db, clock: deps.clock, authToken, publicUrl: deps.publicUrl }),
    );
  }

  await app.register((scope) => eventRoutes(scope, { ...deps, keys }));
  await app.register((scope) => orderRoutes(scope, { db: deps.db, publicUrl: deps.publicUrl, payments, keys }));

  return app;
}
