import { z } from 'zod';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { RecoupError, validationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { applyEvent } from '../orders/apply-event.js';
import { parseEvent, zodIssues } from '../orders/event-schema.js';
import { loadOrderView } from '../orders/order-view.js';
import type { StepQueue } from '../queue/queues.js';
import { ApiKeyAuth } from './auth.js';
import { SandboxGateway } from '../payments/gateways/sandbox/sandbox-gateway.js';
import { sandboxRoutes } from '../payments/gateways/sandbox/sandbox.routes.js';
import { requestRefund } from '../payments/refunds.js';
import type { RetryDeps } from '../payments/retry-session.js';
import { paymentWebhookRoutes } from './payment-webhooks.routes.js';
import { sendProblem } from './problem.js';
import { twilioWebhookRoutes } from './twilio-webhooks.routes.js';

export interface AppDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  apiKeys: string[];
  publicUrl: string;
  abandonAfterMs: number;
  clickWindowMs: number;
  bodyLimit: number;
  /** Retry links, payment gateways and their webhooks. */
  payments?: { retry: RetryDeps } | undefined;
  /** Twilio's auth token, when SMS goes through Twilio: enables its signed delivery callbacks. */
  twilioAuthToken?: string | undefined;
}

function requireJson(request: FastifyRequest): void {
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    throw new RecoupError('unsupported_media_type', 'Send the event as application/json');
  }
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    // Slow or stalled clients cannot hold a connection forever.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    genReqId: () => `req_${Math.random().toString(36).slice(2, 12)}`,
  });
  const auth = new ApiKeyAuth(deps.apiKeys);

  app.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, new RecoupError('not_found', `No route ${request.method} ${request.url}`)),
  );

  app.get('/healthz', async () => ({ status: 'ok' }));

  const payments = deps.payments;
  if (payments) {
    await app.register((scope) => paymentWebhookRoutes(scope, payments.retry));
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

  app.register(async (v1) => {
    v1.addHook('onRequest', async (request) => auth.check(request));

    v1.post('/v1/events', async (request, reply) => {
      requireJson(request);
      const event = parseEvent(request.body);
      const result = await applyEvent(deps, event, deps.clock.now());
      if (result.status === 'duplicate') return reply.status(200).send({ event_id: event.id, status: 'duplicate' });
      try {
        await deps.queue.add(result.wakeups, deps.clock.now());
      } catch (err) {
        // Accepted and committed: the reconciler queues it from Postgres once Redis is back.
        request.log.warn({ err, eventId: event.id }, 'could not queue wake-up; the reconciler will');
      }
      for (const ended of result.ended) {
        deps.queue.remove(ended.recoveryId, ended.wakeSeq).catch(() => undefined);
      }
      return reply.status(202).send({ event_id: event.id, status: 'accepted', outcome: result.outcome });
    });

    v1.post<{ Params: { id: string } }>('/v1/orders/:id/refunds', async (request, reply) => {
      if (!payments) throw new RecoupError('not_found', 'Payments are not configured');
      requireJson(request);
      const body = parseRefundBody(request.body);
      const idempotencyKey = request.headers['idempotency-key'];
      const result = await requestRefund(payments.retry, {
        orderId: request.params.id,
        amount: body.amount,
        reason: body.reason,
        requestedBy: 'api',
        idempotencyKey: typeof idempotencyKey === 'string' ? idempotencyKey : undefined,
      });
      return reply.status(202).send({ refund_id: result.refundId, status: result.status });
    });

    v1.get<{ Params: { id: string } }>('/v1/orders/:id', async (request) => {
      const view = await loadOrderView(deps.db, request.params.id, deps.publicUrl);
      if (!view) throw new RecoupError('not_found', `No order ${request.params.id}`);
      return view;
    });
  });

  return app;
}

const refundBodySchema = z.object({
  amount: z.number().int('must be an integer in minor units').positive('must be positive').optional(),
  reason: z.string().trim().min(1, 'say why').max(500),
});

function parseRefundBody(body: unknown): z.output<typeof refundBodySchema> {
  const parsed = refundBodySchema.safeParse(body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  return parsed.data;
}
