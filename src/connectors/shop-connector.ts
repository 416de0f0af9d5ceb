import type { EventInput } from '../domain/event-schema.js';
import type { ShopWriteBack } from '../webhooks/write-back.js';

export type { EventForShop, ShopWriteBack, WriteBackResult } from '../webhooks/write-back.js';

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

export interface ShopConnector {
  /** `woocommerce`, `shopify`, `stripe`: the last part of its webhook path, /webhooks/shops/<platform>. */
  readonly platform: string;
  /** Throws RecoupError('unauthorized') unless the platform signed exactly this body. */
  verify(request: ConnectorRequest): void;
  /** The platform's id of this delivery and its topic, for logs and the record of rejected ones. */
  describe(request: ConnectorRequest): { deliveryId: string; topic: string };
  /** Maps a verified delivery. Never throws for bad content: that is a `rejected` mapping. */
  map(request: ConnectorRequest): Promise<ConnectorMapping>;
  /**
   * Orders only the platform can collect (Shopify's abandoned checkouts: there is no order yet to
   * mark paid): their reminders lead to the platform's own page, whatever the link mode.
   */
  paysOnPlatform?(orderId: string): boolean;
  /** Present when the platform's admin API credentials are configured. */
  readonly writeBack?: ShopWriteBack | undefined;
}
