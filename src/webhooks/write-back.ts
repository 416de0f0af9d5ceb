/*
 * A shop connector's write-back (src/connectors/), as webhook deliveries see it: an endpoint whose
 * deliveries go to a platform's admin API through its connector instead of an HTTP post.
 */

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
