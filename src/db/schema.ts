import { sql } from 'drizzle-orm';
import {
  bigint,
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

/** Every event the shop sent, keyed by the shop's event id: the idempotency record. */
export const events = pgTable(
  'events',
  {
    id: text('id').primaryKey(),
    type: text('type').notNull(),
    orderId: text('order_id'),
    customerId: text('customer_id'),
    occurredAt: ts('occurred_at').notNull(),
    receivedAt: ts('received_at').notNull().defaultNow(),
    /** What the event did: applied, stale (older than the order's state), ignored (order already final). */
    outcome: text('outcome').notNull(),
    payload: jsonb('payload').notNull(),
  },
  (t) => [index('events_order_idx').on(t.orderId, t.occurredAt)],
);

export const customers = pgTable('customers', {
  id: text('id').primaryKey(),
  name: text('name'),
  email: text('email'),
  phone: text('phone'),
  locale: text('locale'),
  timezone: text('timezone'),
  /** Set when a provider said the address is permanently unusable (invalid, unsubscribed, landline). */
  emailBadReason: text('email_bad_reason'),
  phoneBadReason: text('phone_bad_reason'),
  /** occurred_at of the event that last changed these details: older events never overwrite newer ones. */
  updatedAt: ts('updated_at').notNull(),
});

export const orders = pgTable(
  'orders',
  {
    id: text('id').primaryKey(),
    customerId: text('customer_id').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    description: text('description'),
    couponCode: text('coupon_code'),
    /** Cadence the shop asked for (event `order.cadence`), used when a recovery starts. */
    requestedCadence: text('requested_cadence'),
    /** pending | paid | cancelled. paid and cancelled are final. */
    status: text('status').notNull(),
    /** occurred_at of the latest event applied to this order. */
    stateAt: ts('state_at').notNull(),
    paidAt: ts('paid_at'),
    cancelledAt: ts('cancelled_at'),
    lastFailureCode: text('last_failure_code'),
    lastFailureCategory: text('last_failure_category'),
    lastFailureMessage: text('last_failure_message'),
    lastGateway: text('last_gateway'),
    lastMethod: text('last_method'),
    /** When an unpaid order with no recovery counts as abandoned. Cleared once decided. */
    abandonCheckAt: ts('abandon_check_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('orders_customer_idx').on(t.customerId),
    index('orders_abandon_idx')
      .on(t.abandonCheckAt)
      .where(sql`${t.abandonCheckAt} is not null`),
  ],
);

export const cadences = pgTable(
  'cadences',
  {
    name: text('name').notNull(),
    version: integer('version').notNull(),
    definition: jsonb('definition').notNull(),
    /** Source text as applied (YAML or JSON), for history and diffs. */
    source: text('source'),
    active: boolean('active').notNull().default(false),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.name, t.version] }),
    uniqueIndex('cadences_one_active')
      .on(t.name)
      .where(sql`${t.active}`),
  ],
);

/** One recovery per order, ever. Its row is the unit the worker claims. */
export const recoveries = pgTable(
  'recoveries',
  {
    id: text('id').primaryKey(),
    orderId: text('order_id').notNull(),
    customerId: text('customer_id').notNull(),
    cadenceName: text('cadence_name').notNull(),
    cadenceVersion: integer('cadence_version').notNull(),
    failureCategory: text('failure_category').notNull(),
    /** active | recovered | exhausted | stopped | cancelled */
    state: text('state').notNull(),
    /** Index of the next step to run; equals the step count once all steps ran. */
    stepIndex: integer('step_index').notNull().default(0),
    /** When the next wake-up is due (next step, retry, deferral or expiry). */
    nextRunAt: ts('next_run_at'),
    /** Bumped on every reschedule; part of the BullMQ job id so each wake-up id is fresh. */
    wakeSeq: integer('wake_seq').notNull().default(0),
    startedAt: ts('started_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    endedAt: ts('ended_at'),
    endedReason: text('ended_reason'),
  },
  (t) => [
    uniqueIndex('recoveries_order_unique').on(t.orderId),
    index('recoveries_due_idx')
      .on(t.nextRunAt)
      .where(sql`${t.state} = 'active'`),
    index('recoveries_customer_idx').on(t.customerId),
  ],
);

/** One row per (recovery, step): the send record that makes "never twice" enforceable. */
export const messages = pgTable(
  'messages',
  {
    id: text('id').primaryKey(),
    recoveryId: text('recovery_id').notNull(),
    orderId: text('order_id').notNull(),
    customerId: text('customer_id').notNull(),
    step: integer('step').notNull(),
    channel: text('channel').notNull(),
    template: text('template').notNull(),
    locale: text('locale'),
    /** scheduled | sending | sent | delivered | failed | skipped | suppressed | unknown */
    status: text('status').notNull(),
    toAddress: text('to_address'),
    /** Why it was skipped, suppressed or failed (paid, no_contact, 21211, …). */
    reason: text('reason'),
    providerId: text('provider_id'),
    /** Random 128-bit retry-link token (base64url, 22 chars); the link names this message. */
    linkToken: text('link_token'),
    linkExpiresAt: ts('link_expires_at'),
    linkRevokedAt: ts('link_revoked_at'),
    attempts: integer('attempts').notNull().default(0),
    /** Identifies the worker run that holds the `sending` claim. */
    claimId: text('claim_id'),
    plannedAt: ts('planned_at'),
    claimedAt: ts('claimed_at'),
    sentAt: ts('sent_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('messages_recovery_step_unique').on(t.recoveryId, t.step),
    uniqueIndex('messages_link_token_unique').on(t.linkToken),
    index('messages_order_idx').on(t.orderId),
    index('messages_customer_sent_idx').on(t.customerId, t.sentAt),
  ],
);

/** Payment attempts as reported by the shop (and later by gateways). */
export const paymentAttempts = pgTable(
  'payment_attempts',
  {
    id: text('id').primaryKey(),
    orderId: text('order_id').notNull(),
    eventId: text('event_id'),
    gateway: text('gateway'),
    method: text('method'),
    /** failed | succeeded | pending | cancelled */
    status: text('status').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    failureCode: text('failure_code'),
    failureCategory: text('failure_category'),
    failureMessage: text('failure_message'),
    occurredAt: ts('occurred_at').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [index('payment_attempts_order_idx').on(t.orderId, t.occurredAt)],
);

/** Addresses that must not be messaged (STOP replies, unsubscribes). */
export const suppressions = pgTable(
  'suppressions',
  {
    channel: text('channel').notNull(),
    address: text('address').notNull(),
    reason: text('reason').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.channel, t.address] })],
);
