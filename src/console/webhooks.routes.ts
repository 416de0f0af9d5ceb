import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RecoupError } from '../platform/errors.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';
import { resendDelivery } from '../webhooks/delivery.js';
import { listDeliveries } from '../webhooks/delivery-log.js';
import { getEndpoint, listEndpoints, updateEndpoint } from '../webhooks/endpoints.js';
import { actorOf, webhookEndpointHref, type ConsoleContext } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';
import { shopPlatformsView } from './shop-platforms.js';
import { deliveryRow, deliveryStatuses, endpointSummary, isDeliveryStatus } from './webhook-views.js';

/** The delivery log shows this many, the newest first. */
const deliveryLogLimit = 50;
/** Ids as recoup makes them (`ep_…`, `msg_…`): anything else in a notice's query is ignored. */
const idLike = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Webhooks to the shop (ops): the endpoints (`/console/webhooks`), one endpoint and its delivery
 * log (`/console/webhooks/:id?status=`), resending a delivery under its own webhook-id
 * (`POST …/deliveries/:deliveryId/resend`) and enabling or disabling an endpoint
 * (`POST …/enable`, `POST …/disable`). Secrets are never shown: the API shows them once.
 */
export function consoleWebhookRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, ops, opsForm, frame, page } = ctx;

  /** Queues wake-ups; false when they are left to the workers' restore pass (no queue here, or Redis down). */
  async function wake(request: FastifyRequest, wakeups: DeliveryWakeup[]): Promise<boolean> {
    if (wakeups.length === 0) return true;
    if (!deps.wakeWebhooks) return false;
    try {
      await deps.wakeWebhooks(wakeups);
      return true;
    } catch (err) {
      // Committed already: the restore pass wakes pending deliveries whose wake-up went missing.
      request.log.warn(
        { err, deliveries: wakeups.length },
        'could not queue webhook deliveries; the restore pass will',
      );
      return false;
    }
  }

  app.get('/console/webhooks', ops, async (request, reply) => {
    const endpoints = (await listEndpoints(deps.db)).map(endpointSummary);
    const platforms = await shopPlatformsView(deps.db, deps.connectors ?? [], await deps.cadences.active(deps.db));
    return page(reply, 200, 'webhooks', frame(request, 'webhooks', 'Webhooks'), {
      endpoints,
      troubled: endpoints.filter((e) => e.state.key !== 'enabled').length,
      platforms,
    });
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/console/webhooks/:id',
    ops,
    async (request, reply) => {
      const endpoint = await getEndpoint(deps.db, request.params.id);
      const status = isDeliveryStatus(request.query.status) ? request.query.status : undefined;
      const deliveries = await listDeliveries(deps.db, endpoint.id, { limit: deliveryLogLimit, status });
      const href = webhookEndpointHref(endpoint.id);
      const summary = endpointSummary(endpoint);
      return page(
        reply,
        200,
        'webhook',
        frame(request, 'webhooks', `Webhook ${endpoint.id}`, noticeOf(request.query)),
        {
          endpoint: summary,
          toggleAction: `${href}/${endpoint.enabled ? 'disable' : 'enable'}`,
          filters: [
            { label: 'all', href, current: status === undefined },
            ...deliveryStatuses.map((s) => ({ label: s, href: `${href}?status=${s}`, current: status === s })),
          ],
          status: status ?? null,
          limit: deliveryLogLimit,
          deliveries: deliveries.map((d) => deliveryRow(endpoint.id, d)),
        },
      );
    },
  );

  app.post<{ Params: { id: string; deliveryId: string } }>(
    '/console/webhooks/:id/deliveries/:deliveryId/resend',
    opsForm,
    async (request, reply) => {
      const { id, deliveryId } = request.params;
      const endpoint = await getEndpoint(deps.db, id);
      const resent = await resendDelivery(deps.db, endpoint.id, deliveryId);
      if (!resent) throw new RecoupError('not_found', `No delivery ${deliveryId} to resend on this endpoint`);
      const wakeup = resent.wakeup;
      const queued = resent.endpointEnabled && (await wake(request, [wakeup]));
      request.log.info({ endpointId: id, deliveryId, actor: actorOf(request) }, 'webhook delivery resent by ops');
      const done = !resent.endpointEnabled ? 'resent-disabled' : queued ? 'resent' : 'resent-later';
      return reply.redirect(
        `${webhookEndpointHref(id)}?done=${done}&delivery=${encodeURIComponent(wakeup.deliveryId)}`,
        303,
      );
    },
  );

  for (const enabled of [true, false]) {
    app.post<{ Params: { id: string } }>(
      `/console/webhooks/:id/${enabled ? 'enable' : 'disable'}`,
      opsForm,
      async (request, reply) => {
        const { id } = request.params;
        const { wakeups } = await updateEndpoint(deps.db, id, { enabled });
        const queued = await wake(request, wakeups);
        request.log.info(
          { endpointId: id, enabled, woken: wakeups.length, actor: actorOf(request) },
          `webhook endpoint ${enabled ? 'enabled' : 'disabled'} by ops`,
        );
        const done = enabled ? (queued ? 'enabled' : 'enabled-later') : 'disabled';
        return reply.redirect(`${webhookEndpointHref(id)}?done=${done}&woken=${wakeups.length}`, 303);
      },
    );
  }
}

/** The line at the top after a form's redirect. */
function noticeOf(query: Record<string, unknown>): ConsoleFrame['notice'] {
  const id = typeof query.delivery === 'string' && idLike.test(query.delivery) ? ` ${query.delivery}` : '';
  const woken = typeof query.woken === 'string' && /^\d{1,6}$/.test(query.woken) ? Number(query.woken) : 0;
  const pending = `${woken} pending ${woken === 1 ? 'delivery goes' : 'deliveries go'}`;
  switch (query.done) {
    case 'resent':
      return { tone: 'success', text: `Resending delivery${id} now, under the same webhook-id.` };
    case 'resent-later':
      return {
        tone: 'warn',
        text: `Delivery${id} is due again, but could not be queued: it goes out with the workers’ next restore pass.`,
      };
    case 'resent-disabled':
      return {
        tone: 'warn',
        text: `Delivery${id} is due again, but this endpoint is disabled: it goes out once the endpoint is enabled.`,
      };
    case 'enabled':
      return {
        tone: 'success',
        text: woken === 0 ? 'Enabled: new events are delivered to it again.' : `Enabled: ${pending} out now.`,
      };
    case 'enabled-later':
      return {
        tone: 'warn',
        text: 'Enabled, but its pending deliveries could not be queued now: they go out with the workers’ next restore pass.',
      };
    case 'disabled':
      return { tone: 'success', text: 'Disabled: nothing more is delivered to this endpoint until it is enabled.' };
    default:
      return null;
  }
}
