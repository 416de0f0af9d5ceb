import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { requireScope, type KeyResolver } from '../access/auth.js';
import type { Db } from '../db/client.js';
import { requireJson } from '../http/request.js';
import { allOutboundEventTypes, defaultEventTypes, isOutboundEventType } from '../outbound/event-types.js';
import { RecoupError, validationError, zodIssues } from '../platform/errors.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';
import { resendDelivery } from './delivery.js';
import { listDeliveries } from './delivery-log.js';
import {
  createEndpoint,
  deleteEndpoint,
  getEndpoint,
  listEndpoints,
  rotateSecret,
  updateEndpoint,
  type EndpointView,
} from './endpoints.js';
import { readFeed } from './events-feed.js';
import { urlProblem } from './safe-http.js';

export interface WebhookRouteDeps {
  db: Db;
  keys: KeyResolver;
  /** How long the old secret keeps signing after a rotation (WEBHOOK_SECRET_OVERLAP). */
  secretOverlapMs: number;
  /** Queues deliveries made due now (a resend, an endpoint enabled again). */
  wake: (wakeups: DeliveryWakeup[]) => Promise<void>;
}

const url = z
  .string()
  .max(2_000)
  .superRefine((value, ctx) => {
    const problem = urlProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const events = z
  .array(z.string())
  .min(1)
  .max(allOutboundEventTypes.length)
  .superRefine((list, ctx) => {
    list.forEach((type, i) => {
      if (!isOutboundEventType(type)) {
        ctx.addIssue({
          code: 'custom',
          path: [i],
          message: `unknown event type; one of ${allOutboundEventTypes.join(', ')}`,
        });
      }
    });
    if (new Set(list).size !== list.length) ctx.addIssue({ code: 'custom', message: 'lists an event type twice' });
  })
  .transform((list) => list.filter(isOutboundEventType));
const description = z.string().max(500).nullable();

const newEndpoint = z.strictObject({ url, events: events.optional(), description: description.optional() });
const endpointChange = z.strictObject({
  url: url.optional(),
  events: events.optional(),
  description: description.optional(),
  enabled: z.boolean().optional(),
});
const deliveryQuery = z.object({
  status: z.enum(['pending', 'delivered', 'failed', 'cancelled']).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});
const feedQuery = z.object({
  after: z
    .string()
    .regex(/^\d{1,15}$/, 'must be a cursor from a previous page')
    .default('0')
    .transform(Number),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

function parse<T extends z.ZodType>(schema: T, input: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(input ?? {});
  if (!parsed.success) throw validationError(zodIssues(parsed.error), `Invalid ${what}`);
  return parsed.data;
}

/**
 * Webhook endpoints (scope `ops` or `admin`): register, list, read, change, delete, rotate the
 * secret, read the delivery log and resend a delivery. The events feed (scope `ingest`, `ops` or
 * `admin`): `GET /v1/outbound-events?after=<cursor>&limit=`.
 */
export async function webhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): Promise<void> {
  const ops = { onRequest: requireScope(deps.keys, 'ops') };

  app.post('/v1/webhook-endpoints', ops, async (request, reply) => {
    requireJson(request);
    const input = parse(newEndpoint, request.body, 'webhook endpoint');
    const created = await createEndpoint(deps.db, {
      url: input.url,
      events: input.events ?? defaultEventTypes,
      description: input.description ?? null,
    });
    // The only answers that show the secret: this one and a rotation's.
    return reply.status(201).header('cache-control', 'no-store').send(endpointView(created));
  });

  app.get('/v1/webhook-endpoints', ops, async () => ({
    endpoints: (await listEndpoints(deps.db)).map(endpointView),
  }));

  app.get<{ Params: { id: string } }>('/v1/webhook-endpoints/:id', ops, async (request) =>
    endpointView(await getEndpoint(deps.db, request.params.id)),
  );

  app.patch<{ Params: { id: string } }>('/v1/webhook-endpoints/:id', ops, async (request) => {
    requireJson(request);
    const change = parse(endpointChange, request.body, 'webhook endpoint change');
    const { endpoint, wakeups } = await updateEndpoint(deps.db, request.params.id, change);
    await deps.wake(wakeups);
    return endpointView(endpoint);
  });

  app.delete<{ Params: { id: string } }>('/v1/webhook-endpoints/:id', ops, async (request, reply) => {
    await deleteEndpoint(deps.db, request.params.id);
    return reply.status(204).send();
  });

  app.post<{ Params: { id: string } }>('/v1/webhook-endpoints/:id/rotate-secret', ops, async (request, reply) => {
    const rotated = await rotateSecret(deps.db, request.params.id, deps.secretOverlapMs);
    return reply.header('cache-control', 'no-store').send(endpointView(rotated));
  });

  app.get<{ Params: { id: string } }>('/v1/webhook-endpoints/:id/deliveries', ops, async (request) => {
    const query = parse(deliveryQuery, request.query, 'query');
    await getEndpoint(deps.db, request.params.id);
    return { deliveries: await listDeliveries(deps.db, request.params.id, query) };
  });

  app.post<{ Params: { id: string; deliveryId: string } }>(
    '/v1/webhook-endpoints/:id/deliveries/:deliveryId/resend',
    ops,
    async (request, reply) => {
      const resent = await resendDelivery(deps.db, request.params.id, request.params.deliveryId);
      if (!resent) throw new RecoupError('not_found', `No delivery ${request.params.deliveryId} to this endpoint`);
      if (resent.endpointEnabled) await deps.wake([resent.wakeup]);
      // To a disabled endpoint it waits until the endpoint is enabled again.
      return reply.status(202).send({
        id: resent.wakeup.deliveryId,
        status: 'pending',
        endpoint_enabled: resent.endpointEnabled,
      });
    },
  );

  app.get('/v1/outbound-events', { onRequest: requireScope(deps.keys, 'ingest', 'ops') }, async (request) => {
    const query = parse(feedQuery, request.query, 'query');
    return readFeed(deps.db, query.after, query.limit, deps.wake);
  });
}

function endpointView(endpoint: EndpointView) {
  return {
    id: endpoint.id,
    url: endpoint.url,
    description: endpoint.description,
    events: endpoint.events,
    platform: endpoint.platform,
    enabled: endpoint.enabled,
    disabled_reason: endpoint.disabled_reason,
    failing_since: endpoint.failing_since?.toISOString() ?? null,
    previous_secret_until: endpoint.previous_secret_until?.toISOString() ?? null,
    created_at: endpoint.created_at.toISOString(),
    updated_at: endpoint.updated_at.toISOString(),
    ...(endpoint.secret ? { secret: endpoint.secret } : {}),
  };
}
