import type { FastifyInstance } from 'fastify';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { EventApplier } from '../orders/apply-event.js';
import { parseEvent } from '../orders/event-schema.js';
import type { StepQueue } from '../queue/queues.js';
import { settleInFlightSends } from '../recoveries/send-lease.js';
import { requireScope, type KeyResolver } from './auth.js';
import { requireJson } from './request.js';

export interface EventRouteDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  keys: KeyResolver;
  abandonAfterMs: number;
  clickWindowMs: number;
  /** How long a lost sender's message may still reach a provider (src/recoveries/send-lease.ts). Default 16 s. */
  sendLeaseMs?: number;
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
    if (event.order && endsOrder.has(event.type)) {
      // A reminder that lost its sender's lock mid-send may still be on its way: answer after it.
      await settleInFlightSends(deps.db, deps.clock, event.order.id, deps.sendLeaseMs);
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
