import type { FastifyInstance } from 'fastify';
import { EventApplier, type ApplyEventDeps } from './apply-event.js';
import { ingestEvent, type IngestDeps } from './ingest-event.js';
import { parseEvent } from '../domain/event-schema.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { requireJson } from '../http/request.js';

export interface EventRouteDeps extends IngestDeps, ApplyEventDeps {
  keys: KeyResolver;
}

/** POST /v1/events: the shop's order and payment events (scope `ingest`). */
export async function eventRoutes(app: FastifyInstance, deps: EventRouteDeps): Promise<void> {
  const applier = new EventApplier(deps);
  app.post('/v1/events', { onRequest: requireScope(deps.keys, 'ingest') }, async (request, reply) => {
    requireJson(request);
    const event = parseEvent(request.body);
    const result = await ingestEvent(deps, applier, event, request.log);
    if (result.status === 'duplicate') return reply.status(200).send({ event_id: event.id, status: 'duplicate' });
    return reply.status(202).send({
      event_id: event.id,
      status: 'accepted',
      outcome: result.outcome,
      ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
    });
  });
}
