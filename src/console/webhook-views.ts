import type { DeliveryLogEntry } from '../webhooks/delivery-log.js';
import type { EndpointView } from '../webhooks/endpoints.js';
import { orderHref, webhookEndpointHref } from './console-context.js';
import { shownTime, type ShownTime } from './format.js';

/**
 * How the console shows webhook endpoints and their deliveries (src/webhooks/). Never a secret:
 * EndpointView carries one only right after it was made or rotated, and nothing here reads it.
 */

export type Tone = 'ok' | 'warn' | 'bad' | 'plain';

/** Whether an endpoint gets deliveries, and why not. */
export interface EndpointStateView {
  /** `enabled`, `failing` (enabled, its deliveries failing), `disabled-failing` or `disabled-ops`. */
  key: 'enabled' | 'failing' | 'disabled-failing' | 'disabled-ops';
  label: string;
  tone: Tone;
  /** The first failed attempt since the last delivered one, if its deliveries are failing. */
  failingSince: ShownTime | null;
  explanation: string;
}

export function endpointState(endpoint: EndpointView): EndpointStateView {
  const failingSince = shownTime(endpoint.failing_since);
  if (!endpoint.enabled && endpoint.disabled_reason === 'failing') {
    return {
      key: 'disabled-failing',
      label: 'disabled: failing',
      tone: 'bad',
      failingSince,
      explanation:
        'Disabled automatically: no delivery to it succeeded for WEBHOOK_DISABLE_AFTER while deliveries failed.',
    };
  }
  if (!endpoint.enabled) {
    return {
      key: 'disabled-ops',
      label: 'disabled by ops',
      tone: 'warn',
      failingSince,
      explanation: 'Turned off by a person: nothing is delivered to it until it is enabled again.',
    };
  }
  if (failingSince) {
    return {
      key: 'failing',
      label: 'failing',
      tone: 'bad',
      failingSince,
      explanation:
        'Enabled, but every attempt since then failed; it is disabled if none succeeds within WEBHOOK_DISABLE_AFTER.',
    };
  }
  return { key: 'enabled', label: 'enabled', tone: 'ok', failingSince: null, explanation: 'Deliveries go out.' };
}

export function endpointSummary(endpoint: EndpointView) {
  return {
    id: endpoint.id,
    href: webhookEndpointHref(endpoint.id),
    url: endpoint.url,
    description: endpoint.description,
    events: endpoint.events,
    enabled: endpoint.enabled,
    state: endpointState(endpoint),
    previousSecretUntil: shownTime(endpoint.previous_secret_until),
    createdAt: shownTime(endpoint.created_at),
    updatedAt: shownTime(endpoint.updated_at),
  };
}

const statusTones: Record<string, Tone> = { delivered: 'ok', pending: 'warn', failed: 'bad', cancelled: 'plain' };

type Attempt = DeliveryLogEntry['attempt_log'][number];

function attemptView(a: Attempt) {
  const ok = a.status !== null && a.status >= 200 && a.status < 300;
  return {
    attempt: a.attempt,
    at: shownTime(new Date(a.at)),
    answer: a.status === null ? 'no answer' : `HTTP ${a.status}`,
    tone: (ok ? 'ok' : 'bad') as Tone,
    error: a.error,
    latency: `${a.latency_ms} ms`,
    excerpt: a.excerpt || null,
  };
}

/** A row of the delivery log: the delivery and its latest attempt, the earlier ones folded. */
export function deliveryRow(endpointId: string, d: DeliveryLogEntry) {
  const [last, ...earlier] = d.attempt_log.map(attemptView);
  return {
    id: d.id,
    eventType: d.event_type,
    eventId: d.event_id,
    orderId: d.order_id,
    orderHref: d.order_id ? orderHref(d.order_id) : null,
    status: d.status,
    tone: statusTones[d.status] ?? 'plain',
    attempts: d.attempts,
    last: last ?? null,
    earlier,
    createdAt: shownTime(d.created_at),
    deliveredAt: shownTime(d.delivered_at),
    nextAttempt: shownTime(d.next_attempt_at),
    // A cancelled delivery belonged to a deleted endpoint: resendDelivery refuses it.
    resendAction:
      d.status === 'cancelled'
        ? null
        : `${webhookEndpointHref(endpointId)}/deliveries/${encodeURIComponent(d.id)}/resend`,
  };
}

export const deliveryStatuses = ['pending', 'delivered', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof deliveryStatuses)[number];

export function isDeliveryStatus(value: unknown): value is DeliveryStatus {
  return typeof value === 'string' && (deliveryStatuses as readonly string[]).includes(value);
}
