import type { OpenAPIV3_2 } from '@fastify/swagger';
import { channels, failureCategories, paymentMethods } from '../domain/vocabulary.js';
import { allOutboundEventTypes, outboundEventTypes, type OutboundEventType } from '../outbound/event-types.js';
import { authProblems, bearer, integer, json, nullable, problem, text, timestamp, type Doc } from './openapi-parts.js';

/**
 * The OpenAPI side of the webhooks recoup sends to the shop (docs/webhooks.md): the routes that
 * manage endpoints and read the events feed, and the document's `webhooks` section, one entry per
 * event type of src/outbound/event-types.ts with the `data` the triggers of
 * migrations/0009_webhooks.sql and appendOutboundEvents write.
 */

const tags = ['shop webhooks'];
const string = (description: string) => ({ type: 'string', description });
const whole = (description: string) => ({ type: 'integer', description });
const oneOf = (values: readonly string[], description?: string) => ({
  type: 'string',
  enum: values,
  ...(description ? { description } : {}),
});
const eventTypes = oneOf(allOutboundEventTypes);
const attribution = oneOf(['clicked', 'influenced', 'organic', 'none']);

const endpointSchema = {
  type: 'object',
  required: ['id', 'url', 'description', 'events', 'enabled', 'disabled_reason', 'created_at', 'updated_at'],
  properties: {
    id: string('`ep_…`'),
    url: { ...text, description: 'Where deliveries are posted; `connector:<platform>` for a connector’s write-back' },
    description: nullable(text),
    events: { type: 'array', items: eventTypes, description: 'The event types delivered here' },
    platform: {
      ...nullable(text),
      description:
        'Set on a shop connector’s write-back (docs/connect-your-shop.md): its deliveries go to the platform’s admin API. Its URL and events follow the configuration (409 on a change); it can be disabled and enabled.',
    },
    enabled: { type: 'boolean' },
    disabled_reason: {
      ...nullable(oneOf(['ops', 'failing', 'not_configured'])),
      description:
        '`ops`: turned off through the API; `failing`: its deliveries failed for WEBHOOK_DISABLE_AFTER; `not_configured`: a write-back whose connector is no longer configured',
    },
    failing_since: { ...nullable(timestamp), description: 'The first failed attempt since the last 2xx' },
    previous_secret_until: {
      ...nullable(timestamp),
      description: 'Until when the secret before the last rotation still signs, beside the new one',
    },
    created_at: timestamp,
    updated_at: timestamp,
  },
};
const endpointWithSecret = {
  ...endpointSchema,
  required: [...endpointSchema.required, 'secret'],
  properties: {
    ...endpointSchema.properties,
    secret: string('The signing secret (`whsec_…`): in this answer only, never shown again'),
  },
};
const endpointId = {
  type: 'object',
  required: ['id'],
  properties: { id: string("The endpoint's id (`ep_…`)") },
};
const url = { type: 'string', maxLength: 2000, description: 'Absolute http(s) URL, without user:pass@' };
const events = {
  type: 'array',
  items: eventTypes,
  minItems: 1,
  uniqueItems: true,
  description: 'Default: every type except message.sent and message.failed',
};
const description = nullable({ type: 'string', maxLength: 500 });

const deliverySchema = {
  type: 'object',
  properties: {
    id: string('`msg_…`: the `webhook-id` of every attempt'),
    event_id: text,
    event_type: eventTypes,
    order_id: nullable(text),
    status: oneOf(['pending', 'delivered', 'failed', 'cancelled']),
    attempts: integer,
    next_attempt_at: nullable(timestamp),
    delivered_at: nullable(timestamp),
    created_at: timestamp,
    attempt_log: {
      type: 'array',
      description: 'Every attempt, the latest first',
      items: {
        type: 'object',
        properties: {
          attempt: integer,
          at: timestamp,
          status: { ...nullable(integer), description: 'The HTTP status; null when there was no answer' },
          latency_ms: integer,
          excerpt: { ...nullable(text), description: "The first 200 characters of the answer's body" },
          error: {
            ...nullable(text),
            description: 'timeout, connection, refused_address or bad_url, and a detail',
          },
        },
      },
    },
  },
};

const feedPageSchema = {
  type: 'object',
  required: ['events', 'next_cursor', 'has_more'],
  properties: {
    events: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: string('`evt_…`'),
          type: eventTypes,
          timestamp,
          order_id: nullable(text),
          customer_id: nullable(text),
          sequence: { ...nullable(integer), description: "The order's sequence; null for customer events" },
          data: { type: 'object', additionalProperties: true, description: 'As in the webhook, without `sequence`' },
        },
      },
    },
    next_cursor: string('Pass as `after` to read on; the same cursor when there was nothing newer'),
    has_more: { type: 'boolean' },
  },
};

/** Route documentation by `METHOD url`, merged into routeDocs() of src/app/openapi.ts. */
export function webhookRouteDocs(): Record<string, Doc> {
  const ops = (summary: string, doc: Omit<Doc, 'summary' | 'tags' | 'security'>): Doc => ({
    summary,
    tags,
    security: bearer,
    ...doc,
    description: `Scope \`ops\`.${doc.description ? ` ${doc.description}` : ''}`,
  });
  return {
    'POST /v1/webhook-endpoints': ops('Register a webhook endpoint', {
      description: 'The answer carries the signing secret, shown this once.',
      body: {
        type: 'object',
        required: ['url'],
        additionalProperties: false,
        properties: { url, events, description },
      },
      response: {
        201: json('Registered', endpointWithSecret),
        400: problem('Invalid body; every bad field is listed'),
        ...authProblems,
        415: problem('Not application/json'),
      },
    }),
    'GET /v1/webhook-endpoints': ops('List webhook endpoints (never their secrets)', {
      response: {
        200: json('Endpoints, the oldest first', {
          type: 'object',
          properties: { endpoints: { type: 'array', items: endpointSchema } },
        }),
        ...authProblems,
      },
    }),
    'GET /v1/webhook-endpoints/:id': ops('A webhook endpoint', {
      params: endpointId,
      response: { 200: json('The endpoint', endpointSchema), ...authProblems, 404: problem('No such endpoint') },
    }),
    'PATCH /v1/webhook-endpoints/:id': ops('Change a webhook endpoint, disable or enable it', {
      description:
        'Fields left out stay as they are. Enabling an endpoint again clears its failure and retries its ' +
        'pending deliveries at once.',
      params: endpointId,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { url, events, description, enabled: { type: 'boolean' } },
      },
      response: {
        200: json('The endpoint', endpointSchema),
        400: problem('Invalid body; every bad field is listed'),
        ...authProblems,
        404: problem('No such endpoint'),
        415: problem('Not application/json'),
      },
    }),
    'DELETE /v1/webhook-endpoints/:id': ops('Delete a webhook endpoint', {
      description: 'Its pending deliveries are cancelled.',
      params: endpointId,
      response: { 204: { description: 'Deleted', type: 'null' }, ...authProblems, 404: problem('No such endpoint') },
    }),
    'POST /v1/webhook-endpoints/:id/rotate-secret': ops('Rotate the signing secret', {
      description:
        'The answer carries the new secret, shown this once. The old one keeps signing beside it for ' +
        'WEBHOOK_SECRET_OVERLAP (`previous_secret_until`).',
      params: endpointId,
      response: {
        200: json('The endpoint and its new secret', endpointWithSecret),
        ...authProblems,
        404: problem('No such endpoint'),
      },
    }),
    'GET /v1/webhook-endpoints/:id/deliveries': ops("An endpoint's delivery log", {
      description: 'The newest first, each with its attempts.',
      params: endpointId,
      querystring: {
        type: 'object',
        properties: {
          status: oneOf(['pending', 'delivered', 'failed', 'cancelled']),
          limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
        },
      },
      response: {
        200: json('Deliveries', {
          type: 'object',
          properties: { deliveries: { type: 'array', items: deliverySchema } },
        }),
        400: problem('A bad query parameter'),
        ...authProblems,
        404: problem('No such endpoint'),
      },
    }),
    'POST /v1/webhook-endpoints/:id/deliveries/:deliveryId/resend': ops('Send a delivery again now', {
      description: 'Under the same `webhook-id`, whatever became of its earlier attempts.',
      params: {
        type: 'object',
        required: ['id', 'deliveryId'],
        properties: { id: string("The endpoint's id"), deliveryId: string("The delivery's id (`msg_…`)") },
      },
      response: {
        202: json('Queued', {
          type: 'object',
          properties: { id: text, status: { type: 'string', enum: ['pending'] } },
        }),
        ...authProblems,
        404: problem('No such delivery to this endpoint, or it was cancelled'),
      },
    }),
    'GET /v1/outbound-events': {
      summary: 'The events feed',
      description:
        'Scope `ingest` or `ops`. Every event for the shop, in the order numbered, after the cursor `after` ' +
        '(none: from the start). Events are numbered once committed, so a cursor never skips one.',
      tags,
      security: bearer,
      querystring: {
        type: 'object',
        properties: {
          after: { type: 'string', pattern: '^\\d{1,15}$', description: 'A `next_cursor`; default 0' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
        },
      },
      response: {
        200: json('A page of events', feedPageSchema),
        400: problem('A bad query parameter'),
        ...authProblems,
      },
    },
  };
}

type Fields = Record<string, Record<string, unknown>>;

/** What every event carries: its id, the feed's `id` too, the same for every endpoint. */
const eventId = { event_id: string('The event, as the feed names it; the same for every endpoint') };
/** What every event about an order carries. */
const orderFields: Fields = {
  ...eventId,
  order_id: string("The shop's order id"),
  customer_id: string("The shop's customer id"),
  amount: whole("The order's amount, in minor units"),
  currency: string('ISO 4217'),
  sequence: { type: 'integer', minimum: 1, description: "This order's events numbered 1, 2, 3…: order by it" },
};
const messageFields: Fields = {
  message_id: text,
  channel: oneOf(channels),
  template: text,
  step: { ...nullable(integer), description: 'The cadence step (0 first); null for a fresh link' },
  to: { ...nullable(text), description: 'The address, masked' },
};
const sentOrFailed: Fields = {
  ...orderFields,
  ...messageFields,
  recovery_id: text,
  sent_at: { ...nullable(timestamp), description: 'When the provider accepted it' },
  reason: {
    ...nullable(text),
    description:
      "message.failed: the provider's error code (21211, undelivered, …), not_sent or template_error; else null",
  },
};
/** Opt-outs and opt-ins concern a customer's address, not an order: no amount, no sequence. */
const consentFields: Fields = {
  ...eventId,
  customer_id: string("The shop's customer id"),
  channel: oneOf(channels),
  address: { ...nullable(text), description: 'The address, masked' },
  how: oneOf(['sms_reply', 'email_one_click', 'email_page', 'ops']),
  keyword: { ...nullable(text), description: 'The reply received (STOP, 退订, START, …)' },
  at: timestamp,
};

/** The `data` of each event type. */
const eventData: Record<OutboundEventType, Fields> = {
  'recovery.started': {
    ...orderFields,
    recovery_id: text,
    cadence: text,
    cadence_version: integer,
    failure_category: oneOf(failureCategories),
    holdout: { type: 'boolean', description: 'In the control group: tracked, never messaged' },
    expires_at: timestamp,
  },
  'message.sent': sentOrFailed,
  'message.failed': sentOrFailed,
  'payment.succeeded': {
    ...orderFields,
    payment_id: text,
    amount: whole('What was paid, in minor units: less any incentive, an expired coupon added back'),
    currency: string("The payment's currency"),
    incentive_amount: whole('The incentive granted, in minor units'),
    gateway: string('stripe, alipay, wechat_pay, sandbox, or shop when the shop reported the payment'),
    gateway_payment_id: string("The gateway's payment id, or the shop's event id"),
    method: nullable(oneOf(paymentMethods)),
    attempt: { ...nullable(integer), description: "The retry link's payment attempt; null when collected_by shop" },
    attribution,
    collected_by: oneOf(['recoup', 'shop'], 'recoup: paid through a retry link, into the gateway account'),
    duplicate: { type: 'boolean', description: 'The order was already paid: this one is refunded automatically' },
    recovery_id: nullable(text),
    paid_at: timestamp,
  },
  'recovery.resumed': {
    ...orderFields,
    recovery_id: text,
    step: { ...integer, description: 'The step it goes on from (0 first)' },
    next_run_at: { ...nullable(timestamp), description: 'When its next step is due' },
    expires_at: timestamp,
  },
  'recovery.ended': {
    ...orderFields,
    recovery_id: text,
    state: oneOf(['recovered', 'exhausted', 'stopped', 'cancelled']),
    reason: string(
      'paid or order_paid (recovered), expired (exhausted), order_cancelled (cancelled), stopped_by_ops, ' +
        'customer_forgotten or cadence_missing (stopped)',
    ),
    ended_at: timestamp,
    attribution: { ...nullable(attribution), description: 'When recovered' },
    step: { ...nullable(integer), description: 'The step credited, when recovered' },
    channel: { ...nullable(oneOf(channels)), description: 'The channel credited, when recovered' },
  },
  'refund.succeeded': {
    ...orderFields,
    refund_id: text,
    payment_id: text,
    amount: whole('What was refunded, in minor units'),
    currency: string("The refund's currency"),
    reason: oneOf(['duplicate', 'ops']),
    note: { ...nullable(text), description: 'What ops wrote; null for a duplicate' },
    succeeded_at: timestamp,
  },
  'customer.opted_out': consentFields,
  'customer.opted_in': consentFields,
  'reminder.after_payment': {
    ...orderFields,
    ...messageFields,
    order_status: oneOf(['paid', 'cancelled']),
    accepted_at: timestamp,
    paid_at: nullable(timestamp),
    cancelled_at: nullable(timestamp),
  },
};

const signedHeaders = [
  { name: 'webhook-id', description: 'The delivery: the same on every attempt; de-duplicate by it', schema: text },
  { name: 'webhook-timestamp', description: 'When this attempt was signed, in Unix seconds', schema: text },
  {
    name: 'webhook-signature',
    description: '`v1,<base64>`: several, separated by spaces, while a rotated secret still signs',
    schema: text,
  },
].map((header) => ({ ...header, in: 'header', required: true }));

/** The OpenAPI 3.1 `webhooks` section: what recoup posts to the shop's endpoints, by event type. */
export function outboundWebhooks(): Record<string, OpenAPIV3_2.PathItemObject> {
  const entries = allOutboundEventTypes.map((type) => {
    const properties = eventData[type];
    const body = {
      type: 'object',
      required: ['type', 'timestamp', 'data'],
      properties: {
        type: { type: 'string', const: type },
        timestamp: { ...timestamp, description: 'When recoup recorded the change' },
        data: { type: 'object', required: Object.keys(properties), properties },
      },
    };
    const post = {
      summary: type,
      description: outboundEventTypes[type],
      tags,
      parameters: signedHeaders,
      requestBody: { required: true, content: { 'application/json': { schema: body } } },
      responses: {
        '2XX': { description: 'Received; answer quickly. Anything else, or no answer, is retried.' },
      },
    };
    return [type, { post }];
  });
  // Plain JSON Schema objects, typed as loosely as the route schemas.
  return Object.fromEntries(entries) as Record<string, OpenAPIV3_2.PathItemObject>;
}
