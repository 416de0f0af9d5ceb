import type { FastifyInstance } from 'fastify';
import { sql } from 'drizzle-orm';
import { forgetCustomer } from '../compliance/forget-customer.js';
import { parseEvent, type EventInput } from '../domain/event-schema.js';
import { EventApplier, type ApplyEventDeps } from '../orders/apply-event.js';
import { ingestEvent, type IngestDeps } from '../orders/ingest-event.js';
import { isRecoupError, RecoupError } from '../platform/errors.js';
import type { ConnectorRequest, ShopConnector } from './shop-connector.js';

export interface ShopWebhookDeps extends IngestDeps, ApplyEventDeps {
  /** The connectors configured, by platform. */
  connectors: ShopConnector[];
  /** The outbox transports' folder (OUTBOX_DIR), erased too when the platform asks to forget a customer. */
  outboxDir?: string | undefined;
}

/**
 * `POST /webhooks/shops/<platform>`: a shop platform's own webhooks, checked with the platform's
 * signature (401 otherwise) and turned into recoup's events by the platform's connector, then
 * applied as `POST /v1/events` applies them. A delivery recoup cannot map is answered 200 (a
 * platform disables a webhook that keeps failing) and recorded with its reason, where ops see it.
 */
export async function shopWebhookRoutes(app: FastifyInstance, deps: ShopWebhookDeps): Promise<void> {
  const byPlatform = new Map(deps.connectors.map((c) => [c.platform, c]));
  const applier = new EventApplier(deps);
  // Signatures are over the exact bytes: every body is kept as it came.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.post<{ Params: { platform: string } }>('/webhooks/shops/:platform', async (request, reply) => {
    const connector = byPlatform.get(request.params.platform);
    if (!connector) throw new RecoupError('not_found', `No connector for ${request.params.platform} is configured`);
    const delivery: ConnectorRequest = {
      rawBody: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
      headers: request.headers,
    };
    connector.verify(delivery);
    const { deliveryId, topic } = connector.describe(delivery);
    const mapping = await connector.map(delivery);
    const record = (reason: string, orderId: string | null) =>
      recordRejected(deps, { platform: connector.platform, deliveryId, topic, reason, orderId });

    switch (mapping.kind) {
      case 'ignored':
        return reply.send({ status: 'ignored', reason: mapping.reason });
      case 'rejected':
        await record(mapping.reason, null);
        request.log.warn(
          { platform: connector.platform, deliveryId, topic, reason: mapping.reason },
          'shop webhook not mapped',
        );
        return reply.send({ status: 'rejected', reason: mapping.reason });
      case 'forget': {
        let forgotten = 0;
        for (const customerId of mapping.customerIds) {
          try {
            await forgetCustomer(deps, customerId, `${connector.platform}:privacy`);
            forgotten += 1;
          } catch (err) {
            // A customer recoup never had (the platform asks for every one of its customers): nothing to erase.
            if (!isRecoupError(err, 'not_found')) throw err;
          }
        }
        return reply.send({ status: 'accepted', forgotten });
      }
      case 'events': {
        // Checked as the intake checks its own events: a mapping that does not parse is rejected whole.
        let events: EventInput[];
        try {
          events = mapping.events.map((event) => parseEvent(JSON.parse(JSON.stringify(event))));
        } catch (err) {
          if (!isRecoupError(err, 'validation')) throw err;
          const reason = `not a valid event: ${err.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`;
          await record(reason, mapping.events[0]?.order?.id ?? null);
          return reply.send({ status: 'rejected', reason });
        }
        const outcomes = [];
        for (const event of events) {
          const result = await ingestEvent(deps, applier, event, request.log, connector.platform);
          outcomes.push({
            event_id: event.id,
            status: result.status,
            ...(result.status === 'accepted' ? { outcome: result.outcome } : {}),
            ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
          });
        }
        return reply.send({ status: 'accepted', events: outcomes });
      }
    }
  });
}

/**
 * A delivery recoup could not map, kept in `events` (outcome `rejected`, with the platform, topic
 * and reason, never the body: it may hold personal data), once per delivery.
 */
async function recordRejected(
  deps: Pick<ShopWebhookDeps, 'db' | 'clock'>,
  r: { platform: string; deliveryId: string; topic: string; reason: string; orderId: string | null },
): Promise<void> {
  const now = deps.clock.now();
  await deps.db.execute(
    sql`insert into events (id, type, order_id, customer_id, occurred_at, received_at, outcome, payload)
        values (${`${r.platform}-${r.deliveryId}-rejected`}, ${`${r.platform}.${r.topic}`}, ${r.orderId}, null,
                ${now}, ${now}, 'rejected',
                ${JSON.stringify({ platform: r.platform, delivery_id: r.deliveryId, topic: r.topic, reason: r.reason })}::jsonb)
        on conflict (id) do nothing`,
  );
}
