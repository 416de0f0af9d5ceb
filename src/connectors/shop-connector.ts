import type { EventInput } from '../domain/event-schema.js';

/**
 * The port every shop platform's connector implements (one folder per platform under
 * src/connectors/): it checks that the platform signed a webhook, and turns it into recoup's own
 * events (src/domain/event-schema.ts), which then go through the same intake as `POST /v1/events`.
 * A platform's order is recoup's order under the platform's own id, so ops and finance see the
 * platform's numbers.
 */

/** A webhook as the platform sent it: the exact bytes (signatures are over them) and the headers. */
export interface ConnectorRequest {
  rawBody: Buffer;
  /** Lower-cased header names, as Node gives them. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export type ConnectorMapping =
  /**
   * recoup events for this delivery, in the order to apply them. Their ids derive from the
   * platform's delivery id (and the content, where the platform reuses delivery ids), so a
   * redelivery is recognised as a duplicate by the intake.
   */
  | { kind: 'events'; events: EventInput[] }
  /** A topic or state recoup has nothing to do with (an order already paid, a topic not used). */
  | { kind: 'ignored'; reason: string }
  /**
   * A delivery recoup cannot map (no contact, a zero or malformed amount, an unknown currency):
   * answered 2xx so the platform does not disable its webhook, and recorded with the reason for ops.
   */
  | { kind: 'rejected'; reason: string }
  /** The platform's privacy request: erase these customers (`recoup customers forget`). */
  | { kind: 'forget'; customerIds: string[] };

/**
 * An event recoup tells the shop about (src/outbound/event-types.ts), as a connector's write-back
 * receives it: the same `type` and `data` a webhook endpoint gets (docs/webhooks.md), e.g.
 * `payment.succeeded` with `order_id`, `payment_id`, `gateway`, `gateway_payment_id`, `method`,
 * `amount`, `currency`, `attribution`, `collected_by` (`recoup` or `shop`), `attempt`, `paid_at`;
 * `refund.succeeded` with `refund_id`, `payment_id`, `amount`, `currency`, `reason`.
 */
export interface EventForShop {
  /** The event's id, the same on every attempt: platforms that take an idempotency key get it. */
  id: string;
  type: string;
  data: Record<string, unknown>;
}

export type WriteBackResult =
  /** The platform has it now. `status`: the platform API's HTTP status, when it was one call. */
  | { kind: 'done'; status: number | null; detail: string }
  /** Nothing to tell the platform (a payment the shop reported itself, say). */
  | { kind: 'skipped'; reason: string }
  /** The platform did not take it (an error answer, a timeout): tried again on the webhook schedule. */
  | { kind: 'failed'; status: number | null; detail: string };

/**
 * Tells the platform what recoup did, through the platform's own admin API: mark an order paid when
 * recoup collected its payment, add a note on a refund. It rides on the webhook deliveries
 * (src/webhooks/): one delivery per event, retried with backoff, logged and shown to ops like an
 * endpoint's, and only for orders that came in through this connector.
 */
export interface ShopWriteBack {
  /** The outbound event types it acts on, e.g. `['payment.succeeded', 'refund.succeeded']`. */
  readonly events: readonly string[];
  /** Never throws: a failure is a `failed` result. */
  apply(event: EventForShop): Promise<WriteBackResult>;
}

export interface ShopConnector {
  /** `woocommerce`, `shopify`, `stripe`: the last part of its webhook path, /webhooks/shops/<platform>. */
  readonly platform: string;
  /** Throws RecoupError('unauthorized') unless the platform signed exactly this body. */
  verify(request: ConnectorRequest): void;
  /** The platform's id of this delivery and its topic, for logs and the record of rejected ones. */
  describe(request: ConnectorRequest): { deliveryId: string; topic: string };
  /** Maps a verified delivery. Never throws for bad content: that is a `rejected` mapping. */
  map(request: ConnectorRequest): Promise<ConnectorMapping>;
  /** Present when the platform's admin API credentials are configured. */
  readonly writeBack?: ShopWriteBack | undefined;
}
