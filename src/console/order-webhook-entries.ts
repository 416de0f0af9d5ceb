import type { Db } from '../db/client.js';
import { listEndpoints } from '../webhooks/endpoints.js';
import { orderOutboundEvents } from '../webhooks/events-feed.js';
import { webhookEndpointHref } from './console-context.js';
import type { TimelineEntry } from './order-timeline.js';

type OutboundEvent = Awaited<ReturnType<typeof orderOutboundEvents>>[number];
type Delivery = OutboundEvent['deliveries'][number];

/**
 * What the shop was told about an order, as timeline entries: each outbound event (type, the
 * order's sequence number, when it happened) and, per endpoint, whether it was delivered, is still
 * pending (and after how many attempts) or failed for good.
 */
export async function shopToldEntries(db: Db, orderId: string): Promise<TimelineEntry[]> {
  const events = await orderOutboundEvents(db, orderId);
  if (events.length === 0) return [];
  const urls = events.some((e) => e.deliveries.length > 0)
    ? new Map((await listEndpoints(db)).map((e) => [e.id, e.url]))
    : new Map<string, string>();
  return events.map((event) => {
    const numbered = event.sequence !== null;
    const failed = event.deliveries.some((d) => d.status === 'failed');
    return {
      at: event.created_at,
      kind: 'webhook',
      // Only a delivery tells the shop; otherwise the event waits in the feed for it to read.
      title: `${event.deliveries.length > 0 ? 'Told the shop' : 'In the shop feed:'} ${event.type}${
        numbered ? ` #${event.sequence}` : ''
      }`,
      tone: eventTone(event.deliveries),
      flag: failed ? 'not delivered' : undefined,
      details: [
        { label: 'event id', value: event.id },
        { label: 'sequence', value: numbered ? String(event.sequence) : 'not numbered yet' },
        ...(event.deliveries.length === 0
          ? [
              {
                label: 'deliveries',
                value: numbered ? 'none: no endpoint took this event' : 'created once the event is numbered',
              },
            ]
          : event.deliveries.map((d) => {
              const url = urls.get(d.endpoint_id);
              return url
                ? { label: url, value: deliveryState(d), href: webhookEndpointHref(d.endpoint_id) }
                : { label: `deleted endpoint ${d.endpoint_id}`, value: deliveryState(d) };
            })),
      ],
    };
  });
}

function eventTone(deliveries: Delivery[]): TimelineEntry['tone'] {
  if (deliveries.some((d) => d.status === 'failed')) return 'bad';
  if (deliveries.some((d) => d.status === 'pending')) return 'warn';
  if (deliveries.length > 0 && deliveries.every((d) => d.status === 'delivered')) return 'ok';
  return 'plain';
}

function deliveryState(d: Delivery): string {
  const attempts = `${d.attempts} ${d.attempts === 1 ? 'attempt' : 'attempts'}`;
  const last = d.last_status === null ? 'no answer' : `HTTP ${d.last_status}`;
  switch (d.status) {
    case 'delivered':
      return d.attempts > 1 ? `delivered after ${attempts}` : 'delivered';
    case 'pending':
      return d.attempts === 0 ? 'pending, not tried yet' : `pending after ${attempts} (last: ${last})`;
    case 'failed':
      return `failed after ${attempts} (last: ${last})`;
    case 'cancelled':
      return 'cancelled: the endpoint was deleted';
    default:
      return d.status;
  }
}
