import type { FastifyInstance } from 'fastify';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { EventApplier } from './apply-event.js';
import { parseEvent } from '../domain/event-schema.js';
import type { StepQueue } from '../queue/queues.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { requireJson } from '../http/request.js';

export interface EventRouteDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  keys: KeyResolver;
  abandonAfterMs: number;
  clickWindowMs: number;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
}

/** Events after which no reminder may be accepted by a provider once they are answered. */
const endsOrder = new Set(['payment.succeeded', 'order.cancelled']);

/** POST /v1/events: the shop's order and payment events (scope `ingest`). */
export async function eventRoutes(app: FastifyInstance, deps: EventRouteDeps): Promise<void> {
  const applier = new EventApplier(deps);
  app.post('/v1/events', { onRequest: requireScope(deps.keys, 'ingest') }, async (request, reply) => {
    requireJson(request);
    const event = parseEvent(request.body);
    const result = await applier.apply(event, deps.clock.now());
    // A reminder already on its way when this committed: answer once the provider answered it, so
    // that nothing is accepted for a paid or cancelled order, or at an old address, after this answer.
    if (event.order && endsOrder.has(event.type)) {
      await settleInFlightSends(deps.db, { orderId: event.order.id }, deps.inFlightWait);
    } else if (event.type === 'customer.updated') {
      const customerId = (event.customer ?? event.order?.customer)?.id;
      if (customerId) await settleInFlightSends(deps.db, { customerId }, deps.inFlightWait);
    }
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
}
