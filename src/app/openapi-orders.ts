import { integer, nullable, text, timestamp } from './openapi-parts.js';

/** `GET /v1/orders/:id`: an order's story, as the OpenAPI document describes it. */
export const orderViewSchema = {
  type: 'object',
  description: "An order's story. Addresses are masked (`+86*******8000`, `l***@example.com`).",
  required: ['order', 'recovery', 'messages', 'payments', 'refunds', 'attempts'],
  properties: {
    order: {
      type: 'object',
      properties: {
        id: text,
        status: { type: 'string', description: 'pending, paid or cancelled' },
        amount: { type: 'integer', description: 'Minor units' },
        currency: text,
        description: nullable(text),
        coupon_code: nullable(text),
        items: nullable({
          type: 'array',
          description: 'Cart lines from the latest event that carried them',
          items: {
            type: 'object',
            properties: {
              name: text,
              quantity: integer,
              amount: { type: 'integer', description: "The line's total, minor units" },
              sku: nullable(text),
              image_url: nullable(text),
            },
          },
        }),
        platform: { ...nullable(text), description: 'woocommerce, shopify or stripe: the connector it came through' },
        payment_url: { ...nullable(text), description: "The shop's own page for paying the order" },
        customer_id: text,
        last_failure: nullable({
          type: 'object',
          properties: { code: nullable(text), category: nullable(text), message: nullable(text) },
        }),
        paid_at: nullable(timestamp),
        cancelled_at: nullable(timestamp),
        created_at: timestamp,
      },
    },
    recovery: nullable({
      type: 'object',
      properties: {
        id: text,
        state: { type: 'string', description: 'active, recovered, exhausted, stopped or cancelled' },
        cadence: text,
        cadence_version: integer,
        failure_category: text,
        step: integer,
        next_run_at: nullable(timestamp),
        started_at: timestamp,
        expires_at: timestamp,
        ended_at: nullable(timestamp),
        ended_reason: nullable(text),
        holdout: { type: 'boolean', description: 'In the control group: tracked, never messaged' },
      },
    }),
    messages: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: text,
          step: {
            ...nullable(integer),
            description: 'null for a fresh link the customer asked for, or a link ops issued',
          },
          channel: {
            type: 'string',
            enum: ['sms', 'email', 'ops'],
            description: '`ops`: a retry link ops issued by hand (POST /v1/orders/{id}/retry-link); nothing was sent',
          },
          template: text,
          locale: nullable(text),
          status: {
            type: 'string',
            description:
              'scheduled, sending, sent, delivered, failed, skipped, suppressed, unknown, or issued (an ops link)',
          },
          reason: nullable(text),
          to: nullable(text),
          attempts: integer,
          planned_at: nullable(timestamp),
          sent_at: nullable(timestamp),
          after_payment_at: {
            ...nullable(timestamp),
            description:
              'Set when the provider accepted the message after the order was paid or cancelled: when recoup found out',
          },
          link: nullable({
            type: 'object',
            description:
              "The message's retry link: its state and expiry, never the link (a bearer credential for the customer's page)",
            properties: {
              state: { type: 'string', enum: ['open', 'expired', 'revoked'] },
              expires_at: nullable(timestamp),
            },
          }),
        },
      },
    },
    payments: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: text,
          gateway: nullable(text),
          method: nullable(text),
          amount: integer,
          currency: text,
          paid_at: timestamp,
          duplicate: { type: 'boolean' },
          attribution: { type: 'string', description: 'clicked, influenced, organic or none' },
          step: nullable(integer),
          channel: nullable(text),
          message_id: nullable(text),
          click_id: nullable(text),
        },
      },
    },
    refunds: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: text,
          payment_id: text,
          amount: integer,
          currency: text,
          reason: text,
          status: { type: 'string', description: 'pending, succeeded or failed' },
          created_at: timestamp,
        },
      },
    },
    attempts: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: text,
          source: { type: 'string', description: 'shop or retry_link' },
          method: nullable(text),
          gateway: nullable(text),
          status: text,
          amount: integer,
          currency: text,
          failure_code: nullable(text),
          failure_category: nullable(text),
          occurred_at: timestamp,
        },
      },
    },
  },
};
