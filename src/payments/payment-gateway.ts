import type { FailureCategory, PaymentMethod } from '../domain/vocabulary.js';

/**
 * The payment gateway port: how recoup (re-)initiates a payment for an unpaid order and
 * learns its outcome. Adapters live in `gateways/<vendor>/`; vendor types never leave them.
 *
 * The integrator's side of the contract:
 * - One attempt at a time per order. A new attempt passes the previous attempt's
 *   `gatewayPaymentId` as `previousGatewayPaymentId` and the gateway supersedes it (see
 *   there), so a customer can never pay an old page or QR code as well as the new one.
 * - `idempotencyKey` is derived from the order and the attempt, so a double submit, a
 *   refresh or a retry after `unknown_outcome` reaches the same gateway payment.
 * - Persist per attempt: `gatewayPaymentId` (it may equal the previous attempt's), and per
 *   refund: `refundKey`, `keyVersion` and `gatewayRefundId`.
 * - Outcomes arrive by webhook (`parseWebhook`), de-duplicated by the event `id`; events may
 *   arrive late, twice or out of order, so apply them as forward-only state changes.
 *   `retrievePayment` answers the same question on demand (polling pages, reconciling
 *   after `unknown_outcome`).
 *
 * Amounts are integer minor units; currencies ISO 4217 codes, uppercase as recoup stores
 * them (adapters convert to what their vendor wants).
 */
export interface PaymentGateway {
  /** Stable name used in config, routes (`/webhooks/payments/:gateway`) and records: `sandbox`, `stripe`, … */
  readonly name: string;
  /** Whether this gateway can take `method` payments in `currency` (case-insensitive). */
  supports(method: PaymentMethod, currency: string): boolean;
  /**
   * Starts (or, for the same `idempotencyKey`, returns again) a payment for one attempt and
   * says what the customer must do next. Throws GatewayError: `declined` when the gateway
   * refuses it straight away, `conflict` when the previous payment cannot be superseded
   * (already paid or being processed: retrieve it and follow its outcome).
   */
  createPayment(request: PaymentRequest): Promise<CreatedPayment>;
  /** The payment's current state at the gateway. */
  retrievePayment(gatewayPaymentId: string): Promise<PaymentStatus>;
  /**
   * Closes an open payment so that it can no longer be paid (the order was paid another way
   * or cancelled). Idempotent; a no-op for a payment that is already final (succeeded,
   * failed or cancelled). Throws `conflict` if it is being processed and cannot be stopped.
   */
  cancelPayment(gatewayPaymentId: string): Promise<void>;
  /** Refunds (part of) a succeeded payment. The same `refundKey` always yields the same refund. */
  refund(input: RefundRequest): Promise<RefundResult>;
  /**
   * Verifies and parses a webhook from the raw request body and headers (names in any case).
   * Throws GatewayError('invalid_signature') on a missing, bad or stale signature; nothing
   * from such a request may be recorded. Returns null for an authentic event that carries
   * nothing for recoup (e.g. a payment created, a refund still pending): answer it 2xx.
   */
  parseWebhook(rawBody: Buffer, headers: WebhookHeaders): Promise<GatewayEvent | null>;
  /**
   * The answer the gateway expects to a webhook, for gateways that prescribe one (Alipay: the
   * plain text `success`; WeChat Pay: 204, or `{code:"FAIL"}` with a 4xx/5xx). Anything but
   * the success answer makes the gateway resend. Absent: recoup's own JSON answer.
   */
  webhookReply?(result: WebhookResult): WebhookReply;
}

/**
 * How handling a webhook ended. `ok`: recorded durably, or a duplicate or irrelevant event
 * (nothing to resend for). Otherwise the HTTP status recoup would answer (403 bad signature,
 * 400 unreadable, 5xx when recording failed) and a message safe to show the gateway.
 */
export type WebhookResult = { ok: true } | { ok: false; status: number; message: string };

export interface WebhookReply {
  status: number;
  /** Omitted for an empty body. */
  contentType?: string;
  body: string;
}

export interface PaymentRequest {
  orderId: string;
  /** recoup's id of this attempt; echoed in webhooks for attribution. */
  attemptId: string;
  /** 1 for the first attempt recoup makes for the order, then 2, 3, … */
  attemptNumber: number;
  /** Minor units, > 0. */
  amount: number;
  /** ISO 4217, e.g. `CNY`. */
  currency: string;
  method: PaymentMethod;
  /** What the customer sees on the gateway's page and statement (the shop's order description). */
  description: string;
  customer: { email?: string | null; phone?: string | null; locale: string };
  /** Where the gateway sends the customer back to; gateways may append query parameters. */
  returnUrl: string;
  /** The payment page or QR code must not be payable after this instant (where the gateway can enforce it). */
  expiresAt: Date;
  /** Deterministic per attempt, e.g. `${orderId}-${attemptNumber}`: the same key → the same payment. */
  idempotencyKey: string;
  /**
   * The `gatewayPaymentId` of this order's previous attempt, if any. The gateway supersedes
   * it: gateways with one payment object per order (Stripe: one PaymentIntent) continue it,
   * and the returned `gatewayPaymentId` is then the same; the others (sandbox, direct
   * Alipay / WeChat Pay) close it before opening the new one.
   */
  previousGatewayPaymentId?: string;
  /** Where the customer is, when known: lets gateways pick a mobile or desktop flow. */
  device?: 'desktop' | 'mobile';
  /** The customer's IP address, when known: WeChat Pay's H5 flow requires it (`payer_client_ip`). */
  clientIp?: string;
}

/** What the customer must do next to pay. */
export type PaymentNextAction =
  /** Send the customer's browser to `url` (hosted checkout, Alipay page/wap pay). */
  | { type: 'redirect'; url: string }
  /**
   * Show `payload` as a QR code (WeChat Pay native) until `expiresAt`; render it fresh on each page view.
   * `simulateUrl`: a test gateway's page that does what scanning the code does (the sandbox), so the
   * payment can be finished on the device showing the code; real gateways never set it.
   */
  | { type: 'qr'; payload: string; expiresAt: Date; simulateUrl?: string }
  /**
   * Collect the payment in the page with the gateway's own client library (e.g. Stripe.js).
   * The page then needs that library's origin in its Content-Security-Policy.
   */
  | { type: 'client_secret'; clientSecret: string; publishableKey?: string };

/**
 * - `requires_action`: waiting for the customer (hosted page, redirect, QR code, 3-D Secure).
 * - `pending`: the customer acted and the gateway is still processing.
 * - `succeeded`: paid. Final, apart from refunds.
 * - `failed`: this attempt failed (declined, expired); see `failureCode` / `failureCategory`.
 * - `cancelled`: closed before it was paid (superseded, or `cancelPayment`).
 */
export type GatewayPaymentStatus = 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'cancelled';

export interface CreatedPayment {
  gatewayPaymentId: string;
  status: GatewayPaymentStatus;
  nextAction: PaymentNextAction;
}

export interface PaymentStatus {
  gatewayPaymentId: string;
  status: GatewayPaymentStatus;
  amount: number;
  currency: string;
  /** The method used (or being used), when the gateway tells. */
  method?: PaymentMethod;
  /** Set when the latest attempt failed: the gateway's code and recoup's category for it. */
  failureCode?: string;
  failureCategory?: FailureCategory;
  paidAt?: Date;
  /** Minor units refunded so far (succeeded refunds), when the gateway tells. */
  amountRefunded?: number;
}

export interface RefundRequest {
  gatewayPaymentId: string;
  /** Minor units, > 0, at most what was paid and not yet refunded. */
  amount: number;
  currency: string;
  /** Idempotency key of this refund, e.g. `${orderId}-duplicate-${paymentId}`. */
  refundKey: string;
  /**
   * How the gateway derives its own refund reference from `refundKey`, as it did when this
   * refund was first requested (stored with the refund). A gateway that changes its derivation
   * keeps the old one for older versions, so a repeat reaches the refund already made instead
   * of making a second. Default: `currentRefundKeyVersion`.
   */
  keyVersion?: RefundKeyVersion;
  /** Why, e.g. `duplicate` (the order was paid twice) or what ops wrote. */
  reason: string;
}

/**
 * 1: refunds requested when a gateway's reference could be shared by keys that differ only in
 * `-` and `_`. 2: one reference per key.
 */
export type RefundKeyVersion = 1 | 2;
export const currentRefundKeyVersion: RefundKeyVersion = 2;

export interface RefundResult {
  gatewayRefundId: string;
  status: 'pending' | 'succeeded' | 'failed';
}

export const gatewayEventTypes = [
  'payment.succeeded',
  'payment.failed',
  'payment.cancelled',
  'refund.succeeded',
  'refund.failed',
] as const;
export type GatewayEventType = (typeof gatewayEventTypes)[number];

/** A verified webhook, in recoup's words. */
export interface GatewayEvent {
  /** The gateway's event id: de-duplicate on (gateway name, id). */
  id: string;
  type: GatewayEventType;
  gatewayPaymentId: string;
  /** From the metadata recoup attached at createPayment; absent for payments recoup did not start. */
  orderId?: string;
  /** The latest attempt recoup started for this payment (see `previousGatewayPaymentId`). */
  attemptId?: string;
  /** Payment events: the amount paid/attempted. Refund events: the amount refunded. */
  amount: number;
  currency: string;
  method?: PaymentMethod;
  failureCode?: string;
  failureCategory?: FailureCategory;
  /** Refund events: the gateway's refund id (as returned by `refund`). */
  refundId?: string;
  occurredAt: Date;
}

export type WebhookHeaders = Record<string, string | string[] | undefined>;

export const gatewayErrorKinds = [
  'invalid_signature',
  'declined',
  'unavailable',
  'invalid_request',
  'unknown_outcome',
  'conflict',
] as const;

/**
 * What went wrong, and the caller's reaction:
 * - `invalid_signature`: the webhook is not from the gateway (or is stale). Reject, record nothing.
 * - `declined`: the gateway or the customer's bank/wallet refused the payment. `category`
 *   decides the reminder's advice; the attempt has failed.
 * - `unavailable`: the gateway certainly did not act (unreachable, rate limited). Retry later
 *   with the same idempotency key.
 * - `invalid_request`: recoup's request is wrong (parameters, unknown id, credentials). Do not retry.
 * - `unknown_outcome`: the gateway may have acted (timeout, 5xx, connection lost mid-answer).
 *   Retry with the same idempotency key, or retrieve the payment, before anything else.
 * - `conflict`: the payment's state forbids this (already paid, being processed, refunded
 *   beyond the amount, an idempotency key reused with other parameters). Retrieve and follow its state.
 */
export type GatewayErrorKind = (typeof gatewayErrorKinds)[number];

export class GatewayError extends Error {
  readonly kind: GatewayErrorKind;
  /** The gateway's own code (`insufficient_funds`, `ACQ.SYSTEM_ERROR`, `ECONNRESET`, …). */
  readonly code: string | undefined;
  /** recoup's failure category, for `declined` (and for outages: `network` / `gateway_outage`). */
  readonly category: FailureCategory | undefined;
  /**
   * The gateway payment the error concerns, when one exists: e.g. a PaymentIntent created
   * before its confirmation was declined. Persist it like a successful result's.
   */
  readonly gatewayPaymentId: string | undefined;
  /** True for `unavailable` and `unknown_outcome`: the same call (same idempotency key) may succeed later. */
  readonly retryable: boolean;

  constructor(
    kind: GatewayErrorKind,
    message: string,
    options: { code?: string; category?: FailureCategory; gatewayPaymentId?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.kind = kind;
    this.code = options.code;
    this.category = options.category;
    this.gatewayPaymentId = options.gatewayPaymentId;
    this.retryable = kind === 'unavailable' || kind === 'unknown_outcome';
  }
}

export function isGatewayError(error: unknown, kind?: GatewayErrorKind): error is GatewayError {
  return error instanceof GatewayError && (kind === undefined || error.kind === kind);
}

/**
 * One header's value from a raw header map, whatever the case of its name. A header sent
 * more than once is ambiguous for a signature and yields undefined.
 */
export function singleHeader(headers: WebhookHeaders, name: string): string | undefined {
  const wanted = name.toLowerCase();
  let found: string | undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    const values = Array.isArray(value) ? value : [value];
    if (found !== undefined || values.length !== 1) return undefined;
    found = values[0];
  }
  return found;
}
