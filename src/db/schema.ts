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
    /**
     * What the event did: applied, stale (older than the order's state), ignored (order already
     * final); `rejected` for a platform's delivery that could not be mapped (its reason in payload).
     */
    outcome: text('outcome').notNull(),
    payload: jsonb('payload').notNull(),
  },
  (t) => [
    index('events_order_idx').on(t.orderId, t.occurredAt),
    // A shop platform's deliveries recoup could not map (src/connectors/), the newest first in the console.
    index('events_rejected_idx')
      .on(t.receivedAt)
      .where(sql`${t.outcome} = 'rejected'`),
  ],
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
  /** Set by `recoup customers forget`: personal data erased, financial records kept. */
  forgottenAt: ts('forgotten_at'),
  /** occurred_at of the event that last changed these details: older events never overwrite newer ones. */
  updatedAt: ts('updated_at').notNull(),
});

/** A cart line as stored: the event's `order.items[]`. */
export interface OrderItem {
  name: string;
  quantity: number;
  /** The line's total in the order's minor units. */
  amount: number;
  sku?: string | null;
  image_url?: string | null;
}

export const orders = pgTable(
  'orders',
  {
    id: text('id').primaryKey(),
    customerId: text('customer_id').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    description: text('description'),
    couponCode: text('coupon_code'),
    /** Discount the coupon gives (minor units), and until when; from the event's `order.coupon`. */
    couponDiscountAmount: bigint('coupon_discount_amount', { mode: 'number' }),
    couponExpiresAt: ts('coupon_expires_at'),
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
    /** The shop platform whose connector brought the order in (`woocommerce`…); null through /v1/events. */
    platform: text('platform'),
    /** The shop's own page for paying it (event `order.payment_url`), for the `platform` link mode. */
    paymentUrl: text('payment_url'),
    /** Cart lines from the latest event that carried them (event `order.items`). */
    items: jsonb('items').$type<OrderItem[]>(),
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
    /** In the control group: tracked like the others, never messaged (see src/recoveries/holdout.ts). */
    holdout: boolean('holdout').notNull().default(false),
    /** The order's currency when the recovery started: reports group by it without a join. */
    currency: text('currency'),
    /** The method of the failed payment that started the recovery, when the shop said. */
    failedMethod: text('failed_method'),
    /** Set when a payment ended the recovery as `recovered`: when, how it is attributed, and the order value won back. */
    recoveredAt: ts('recovered_at'),
    recoveredAttribution: text('recovered_attribution'),
    recoveredStep: integer('recovered_step'),
    recoveredChannel: text('recovered_channel'),
    /** Minor units: what was paid plus any incentive granted (the order value won back). */
    recoveredValue: bigint('recovered_value', { mode: 'number' }),
  },
  (t) => [
    uniqueIndex('recoveries_order_unique').on(t.orderId),
    index('recoveries_started_idx').on(t.startedAt),
    // Medians of time to recovery read only this index (an index-only scan), not the table.
    index('recoveries_recovered_idx')
      .on(
        t.recoveredAt,
        t.currency,
        t.startedAt,
        t.cadenceName,
        t.failureCategory,
        t.failedMethod,
        t.recoveredStep,
        t.recoveredChannel,
      )
      .where(sql`${t.recoveredAttribution} in ('clicked', 'influenced') and not ${t.holdout}`),
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
    /** The cadence step; NULL for a fresh link the customer asked for, or a link ops issued, outside the cadence. */
    step: integer('step'),
    /** sms | email, or `ops` for a retry link ops issued by hand (template `none`, status `issued`). */
    channel: text('channel').notNull(),
    template: text('template').notNull(),
    locale: text('locale'),
    /** scheduled | sending | sent | delivered | failed | skipped | suppressed | unknown | issued (an ops link) */
    status: text('status').notNull(),
    toAddress: text('to_address'),
    /**
     * `to_address` normalised by Postgres (migrations/0007_caps_by_address.sql, as normaliseAddress in
     * src/domain/addresses.ts): the daily cap counts the messages to one address together, whatever the customer id.
     */
    toNormalised: text('to_normalised').generatedAlwaysAs(sql`recoup_normalise_address(channel, to_address)`),
    /** Why it was skipped, suppressed or failed (paid, no_contact, 21211, …). */
    reason: text('reason'),
    providerId: text('provider_id'),
    /** Random 128-bit retry-link token (base64url, 22 chars); the link names this message. */
    linkToken: text('link_token'),
    linkExpiresAt: ts('link_expires_at'),
    linkRevokedAt: ts('link_revoked_at'),
    attempts: integer('attempts').notNull().default(0),
    /** Provider's price for the message, when it reports one (Twilio status callbacks), in minor units. */
    priceAmount: bigint('price_amount', { mode: 'number' }),
    priceCurrency: text('price_currency'),
    /** SMS segments, counted at send time. */
    segments: integer('segments'),
    /**
     * What sending cost, in millionths of `cost_currency`'s major unit (Twilio prices are
     * sub-cent): estimated at send from the configured unit costs, replaced by the provider's
     * price when a status callback reports one (`cost_source` = estimate | provider).
     */
    costMicros: bigint('cost_micros', { mode: 'number' }),
    costCurrency: text('cost_currency'),
    costSource: text('cost_source'),
    /** Identifies the worker run that holds the `sending` claim. */
    claimId: text('claim_id'),
    plannedAt: ts('planned_at'),
    claimedAt: ts('claimed_at'),
    /**
     * Postgres's time when the `sending` claim was written: the send lease and the takeover of a
     * lost sender's claim count from it, so every process measures them on one clock.
     */
    leaseStartedAt: ts('lease_started_at'),
    sentAt: ts('sent_at'),
    /**
     * Set when the provider accepted this message (`sent_at`) after its order was paid or cancelled:
     * when recoup found out (src/messages/after-payment.ts). A `reminder.after_payment` outbound event
     * tells the shop.
     */
    afterPaymentAt: ts('after_payment_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('messages_recovery_step_unique').on(t.recoveryId, t.step),
    uniqueIndex('messages_link_token_unique').on(t.linkToken),
    index('messages_order_idx').on(t.orderId),
    index('messages_customer_sent_idx').on(t.customerId, t.sentAt),
    index('messages_sent_idx').on(t.sentAt),
    // The daily cap's "messages to this address on this channel since T": one index range scan.
    index('messages_address_sent_idx')
      .on(t.channel, t.toNormalised, sql`(coalesce(${t.sentAt}, ${t.claimedAt}))`)
      .where(sql`${t.toNormalised} is not null`),
    // Messages in flight (or unknown, for the accept grace) are looked for on every payment, STOP and
    // reconciler pass: the recent ones are few, found without a scan.
    index('messages_sending_idx')
      .on(t.leaseStartedAt)
      .where(sql`${t.status} in ('sending', 'unknown')`),
  ],
);

/**
 * Payment attempts: those the shop reported (`source = shop`) and those recoup started from
 * a retry link (`source = retry_link`, numbered per order). At most one retry-link attempt
 * per order is open at a time.
 */
export const paymentAttempts = pgTable(
  'payment_attempts',
  {
    id: text('id').primaryKey(),
    orderId: text('order_id').notNull(),
    /** shop | retry_link */
    source: text('source').notNull().default('shop'),
    eventId: text('event_id'),
    /** 1, 2, 3… for retry-link attempts of an order. */
    attemptNumber: integer('attempt_number'),
    gateway: text('gateway'),
    method: text('method'),
    /** shop attempts: failed | succeeded. retry-link attempts: open | succeeded | failed | cancelled. */
    status: text('status').notNull(),
    /** What was (to be) charged, after coupon and incentive. */
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    couponDiscountAmount: bigint('coupon_discount_amount', { mode: 'number' }).notNull().default(0),
    incentiveAmount: bigint('incentive_amount', { mode: 'number' }).notNull().default(0),
    failureCode: text('failure_code'),
    failureCategory: text('failure_category'),
    failureMessage: text('failure_message'),
    recoveryId: text('recovery_id'),
    messageId: text('message_id'),
    clickId: text('click_id'),
    gatewayPaymentId: text('gateway_payment_id'),
    idempotencyKey: text('idempotency_key'),
    /** The gateway's next action for the customer (redirect, QR payload, client secret). */
    nextAction: jsonb('next_action'),
    /** When the payment sweeper last asked the gateway about this attempt while it was open (Postgres's clock). */
    checkedAt: ts('checked_at'),
    occurredAt: ts('occurred_at').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('payment_attempts_order_idx').on(t.orderId, t.occurredAt),
    uniqueIndex('payment_attempts_number_unique').on(t.orderId, t.attemptNumber),
    uniqueIndex('payment_attempts_one_open')
      .on(t.orderId)
      .where(sql`${t.status} = 'open'`),
    index('payment_attempts_gateway_payment_idx').on(t.gateway, t.gatewayPaymentId),
  ],
);

/** Opens of retry links (GET /r/:token), for attribution. Opening changes nothing else. */
export const clicks = pgTable(
  'clicks',
  {
    id: text('id').primaryKey(),
    messageId: text('message_id').notNull(),
    recoveryId: text('recovery_id').notNull(),
    orderId: text('order_id').notNull(),
    userAgent: text('user_agent'),
    at: ts('at').notNull(),
  },
  (t) => [index('clicks_order_idx').on(t.orderId, t.at), index('clicks_at_idx').on(t.at)],
);

/**
 * Money received for an order, one row per successful payment (the ledger). Attributed to
 * the recovery, cadence version, step, message and click that led to it.
 */
export const payments = pgTable(
  'payments',
  {
    id: text('id').primaryKey(),
    orderId: text('order_id').notNull(),
    attemptId: text('attempt_id'),
    gateway: text('gateway'),
    /** The gateway's payment id, or the shop's event id for payments the shop reported. */
    externalId: text('external_id').notNull(),
    method: text('method'),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    incentiveAmount: bigint('incentive_amount', { mode: 'number' }).notNull().default(0),
    paidAt: ts('paid_at').notNull(),
    /** A second payment for an order already paid: refunded automatically. */
    duplicate: boolean('duplicate').notNull().default(false),
    recoveryId: text('recovery_id'),
    cadenceName: text('cadence_name'),
    cadenceVersion: integer('cadence_version'),
    step: integer('step'),
    channel: text('channel'),
    messageId: text('message_id'),
    clickId: text('click_id'),
    /** clicked | influenced | organic | none (no recovery) */
    attribution: text('attribution').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('payments_external_unique').on(t.gateway, t.externalId),
    index('payments_order_idx').on(t.orderId),
    index('payments_paid_at_idx').on(t.paidAt),
    index('payments_created_idx').on(t.createdAt),
  ],
);

export const refunds = pgTable(
  'refunds',
  {
    id: text('id').primaryKey(),
    orderId: text('order_id').notNull(),
    paymentId: text('payment_id').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    /** duplicate | what ops wrote */
    reason: text('reason').notNull(),
    /** pending | succeeded | failed */
    status: text('status').notNull(),
    refundKey: text('refund_key').notNull().unique(),
    /** How gateways derive their reference from the key (`RefundKeyVersion`); refunds recorded before it was kept are 1. */
    keyVersion: integer('key_version').notNull(),
    gatewayRefundId: text('gateway_refund_id'),
    requestedBy: text('requested_by'),
    /** When the gateway confirmed it: the day it reduces recovered revenue. */
    succeededAt: ts('succeeded_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('refunds_order_idx').on(t.orderId),
    index('refunds_gateway_idx').on(t.gatewayRefundId),
    index('refunds_updated_idx').on(t.updatedAt),
  ],
);

/**
 * Webhooks received from gateways, de-duplicated by the gateway's event id. A row is claimed
 * before its event is applied; a claim that never finished (the process died) is taken over
 * once it is stale (src/payments/gateway-webhook.ts).
 */
export const gatewayEvents = pgTable(
  'gateway_events',
  {
    gateway: text('gateway').notNull(),
    eventId: text('event_id').notNull(),
    type: text('type').notNull(),
    gatewayPaymentId: text('gateway_payment_id'),
    /**
     * `processing` while a delivery applies it; `error` when applying it failed (a resend or the
     * payment sweeper applies it again); otherwise what applying it did (`payment_recorded`, …).
     */
    outcome: text('outcome').notNull(),
    receivedAt: ts('received_at').notNull().defaultNow(),
    /** The verified event in recoup's words (a GatewayEvent), so that it can be applied again without its raw body. */
    event: jsonb('event'),
    /** When the latest claim was made, by Postgres's clock. */
    claimedAt: ts('claimed_at').notNull().defaultNow(),
    /** Claims so far: 1 for the first delivery, one more per takeover. A claim only releases the row it still holds. */
    claims: integer('claims').notNull().default(1),
  },
  (t) => [
    primaryKey({ columns: [t.gateway, t.eventId] }),
    // The sweeper's search: events not applied yet are few among all those received.
    index('gateway_events_unsettled_idx')
      .on(t.claimedAt)
      .where(sql`${t.outcome} in ('processing', 'error')`),
  ],
);

/**
 * Console sessions ended by logging out (src/console/console-auth.ts): a copy of the cookie taken
 * before is refused until it would have expired anyway, when the row can go.
 */
export const consoleSessionsEnded = pgTable('console_sessions_ended', {
  sid: text('sid').primaryKey(),
  endedAt: ts('ended_at').notNull(),
  expiresAt: ts('expires_at').notNull(),
});

/** Who changed what: contact details confirmed on a retry page, ops actions, admin changes. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: text('id').primaryKey(),
    at: ts('at').notNull(),
    /** `customer:<id>` on a retry page, `key:<name>` for API keys. */
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    subject: text('subject').notNull(),
    before: jsonb('before'),
    after: jsonb('after'),
  },
  (t) => [index('audit_log_subject_idx').on(t.subject, t.at)],
);

/** Incentives granted by cadence steps: one per customer per period, within a monthly budget. */
export const incentives = pgTable(
  'incentives',
  {
    id: text('id').primaryKey(),
    customerId: text('customer_id').notNull(),
    orderId: text('order_id').notNull(),
    recoveryId: text('recovery_id').notNull(),
    cadenceName: text('cadence_name').notNull(),
    step: integer('step').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    /** offered (quoted in a reminder) | redeemed (a payment used it) */
    status: text('status').notNull(),
    grantedAt: ts('granted_at').notNull(),
  },
  (t) => [
    uniqueIndex('incentives_order_unique').on(t.orderId),
    index('incentives_customer_idx').on(t.customerId, t.grantedAt),
    index('incentives_cadence_idx').on(t.cadenceName, t.grantedAt),
  ],
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

/** Scoped API keys (ingest, ops, finance, admin), stored as SHA-256 hashes. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    scopes: text('scopes').array().notNull(),
    keyHash: text('key_hash').notNull(),
    /** The first characters of the key, to recognise it in lists; never enough to use it. */
    keyPrefix: text('key_prefix').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    createdBy: text('created_by'),
    revokedAt: ts('revoked_at'),
    lastUsedAt: ts('last_used_at'),
  },
  (t) => [uniqueIndex('api_keys_hash_unique').on(t.keyHash)],
);

/** The consent ledger: every opt-out and opt-in, when, how and in answer to which message. */
export const consentEvents = pgTable(
  'consent_events',
  {
    id: text('id').primaryKey(),
    customerId: text('customer_id'),
    channel: text('channel').notNull(),
    address: text('address').notNull(),
    /** opt_out | opt_in */
    action: text('action').notNull(),
    /** sms_reply | email_one_click | email_page | ops */
    source: text('source').notNull(),
    /** The keyword received (STOP, 退订, …) when the source is a reply. */
    keyword: text('keyword'),
    messageId: text('message_id'),
    at: ts('at').notNull(),
  },
  (t) => [index('consent_events_address_idx').on(t.channel, t.address, t.at)],
);

/** Twilio `MessageSid`s of incoming messages acted on: a replayed webhook (a signed START after STOP) is ignored. */
export const inboundSmsSeen = pgTable('inbound_sms_seen', {
  messageSid: text('message_sid').primaryKey(),
  receivedAt: ts('received_at').notNull(),
});

/** Circuit breakers per payment gateway: while open, reminders that would send customers there are held. */
export const gatewayCircuits = pgTable('gateway_circuits', {
  gateway: text('gateway').primaryKey(),
  /** closed | open */
  state: text('state').notNull(),
  reason: text('reason'),
  openedAt: ts('opened_at'),
  closedAt: ts('closed_at'),
  updatedAt: ts('updated_at').notNull(),
});

/**
 * Report rollup: additive finance measures per 15-minute UTC bucket (every timezone's day
 * starts on a quarter hour), order currency, and one dimension (`dim` = '' for the total, or
 * cadence | step | channel | method | failure_category). Rebuilt from the base tables for the
 * buckets that changed (src/reports/rollup.ts); never the source of truth.
 */
export const reportRollup = pgTable(
  'report_rollup',
  {
    bucket: ts('bucket').notNull(),
    currency: text('currency').notNull(),
    dim: text('dim').notNull(),
    value: text('value').notNull(),
    /** '' for rows without cost; else the currency of `cost_micros`. */
    costCurrency: text('cost_currency').notNull(),
    ordersEntered: integer('orders_entered').notNull().default(0),
    messaged: integer('messaged').notNull().default(0),
    clicked: integer('clicked').notNull().default(0),
    recoveredCount: integer('recovered_count').notNull().default(0),
    recoveredAmount: bigint('recovered_amount', { mode: 'number' }).notNull().default(0),
    refundedAmount: bigint('refunded_amount', { mode: 'number' }).notNull().default(0),
    organicAmount: bigint('organic_amount', { mode: 'number' }).notNull().default(0),
    incentiveAmount: bigint('incentive_amount', { mode: 'number' }).notNull().default(0),
    messagesSent: integer('messages_sent').notNull().default(0),
    costMicros: bigint('cost_micros', { mode: 'number' }).notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.dim, t.bucket, t.currency, t.value, t.costCurrency] }),
    index('report_rollup_bucket_idx').on(t.bucket),
  ],
);

/** Buckets whose rollup rows must be rebuilt before the next report (late provider prices). */
export const reportDirty = pgTable('report_dirty', {
  bucket: ts('bucket').primaryKey(),
});

/** The rollup's high-water mark: base rows changed after `refreshed_at` are not in it yet. */
export const reportState = pgTable('report_state', {
  id: integer('id').primaryKey(),
  refreshedAt: ts('refreshed_at'),
});

export * from './outbound-schema.js';
