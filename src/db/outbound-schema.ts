import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * Events for the shop (the transactional outbox): written in the transaction that makes them true,
 * by the triggers of migrations/0009_webhooks.sql or by appendOutboundEvents. They are numbered only
 * once committed (src/webhooks/sequencer.ts): `position` orders every event, for the feed, so that
 * nothing is ever numbered below an event a reader has seen; `sequence` numbers an order's events
 * 1, 2, 3… in the same order.
 */
export const outboundEvents = pgTable(
  'outbound_events',
  {
    id: text('id').primaryKey(),
    /** `payment.succeeded`, `recovery.ended`, … (src/outbound/event-types.ts) */
    type: text('type').notNull(),
    /** Null for events about a customer rather than an order (opt-outs). */
    orderId: text('order_id'),
    customerId: text('customer_id'),
    sequence: integer('sequence'),
    data: jsonb('data').notNull(),
    /** The order events were written in (not the order they commit in). */
    written: bigserial('written', { mode: 'number' }).notNull(),
    position: bigint('position', { mode: 'number' }),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [
    // Also an order's events, numbered or not (the order's timeline, erasure).
    uniqueIndex('outbound_events_order_sequence_unique').on(t.orderId, t.sequence),
    // Partial: an event is written unnumbered (no entry to add on the path that writes it).
    uniqueIndex('outbound_events_position_unique')
      .on(t.position)
      .where(sql`${t.position} is not null`),
    // A customer's events that are about no order (opt-outs, opt-ins), for erasure.
    index('outbound_events_customer_idx')
      .on(t.customerId)
      .where(sql`${t.orderId} is null`),
    index('outbound_events_unnumbered_idx')
      .on(t.written)
      .where(sql`${t.position} is null`),
  ],
);

/** Where the shop wants events delivered, signed with Standard Webhooks secrets. */
export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: text('id').primaryKey(),
    url: text('url').notNull(),
    description: text('description'),
    /** The event types delivered here. */
    events: text('events').array().notNull(),
    /** `whsec_` + base64 of the signing key. */
    secret: text('secret').notNull(),
    /** The secret before the last rotation: it still signs, beside the new one, until previous_secret_until. */
    previousSecret: text('previous_secret'),
    previousSecretUntil: ts('previous_secret_until'),
    enabled: boolean('enabled').notNull().default(true),
    /**
     * Set for a connector's write-back (src/connectors/): deliveries go to that platform's admin API
     * instead of `url`, and only for the platform's own orders.
     */
    platform: text('platform'),
    /** Why it was disabled: `ops`, or `failing` when deliveries failed for WEBHOOK_DISABLE_AFTER. */
    disabledReason: text('disabled_reason'),
    /** The first failed attempt since the last delivered one. */
    failingSince: ts('failing_since'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  // One write-back per platform.
  (t) => [
    uniqueIndex('webhook_endpoints_platform_idx')
      .on(t.platform)
      .where(sql`${t.platform} is not null`),
  ],
);

/** One event for one endpoint. Its id is the `webhook-id` of every attempt, so the shop can de-duplicate. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    endpointId: text('endpoint_id').notNull(),
    eventId: text('event_id').notNull(),
    /** pending | delivered | failed (retries exhausted) | cancelled (endpoint deleted) */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    /** When the next attempt is due (Postgres's clock); null once no attempt is left. */
    nextAttemptAt: ts('next_attempt_at'),
    /** Bumped each time the delivery is (re)queued: the queue job's id. */
    wakeSeq: integer('wake_seq').notNull().default(0),
    /** While an attempt runs, the attempt holds the delivery until then. */
    leaseUntil: ts('lease_until'),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    deliveredAt: ts('delivered_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_endpoint_event_unique').on(t.endpointId, t.eventId),
    index('webhook_deliveries_due_idx')
      .on(t.nextAttemptAt)
      .where(sql`${t.status} = 'pending'`),
    index('webhook_deliveries_event_idx').on(t.eventId),
    // The delivery log: an endpoint's deliveries, the newest first.
    index('webhook_deliveries_endpoint_created_idx').on(t.endpointId, t.createdAt),
  ],
);

/** Each attempt of a delivery, for the delivery log. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    deliveryId: text('delivery_id').notNull(),
    attempt: integer('attempt').notNull(),
    at: ts('at').notNull(),
    /** The HTTP status answered; null when there was no answer (`error` says why: a timeout, the connection, a refused address). */
    status: integer('status'),
    latencyMs: integer('latency_ms').notNull(),
    /** The first characters of the answer's body. */
    excerpt: text('excerpt'),
    error: text('error'),
  },
  (t) => [primaryKey({ columns: [t.deliveryId, t.attempt] })],
);
