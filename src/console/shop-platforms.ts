import { sql } from 'drizzle-orm';
import type { CadenceVersion } from '../cadences/cadence.js';
import type { ShopConnector } from '../connectors/shop-connector.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { formatDuration } from '../platform/duration.js';
import { orderHref, webhookEndpointHref } from './console-context.js';
import { shownTime, type ShownTime } from './format.js';

/** The newest deliveries recoup could not map, shown on the webhooks page. */
const rejectedShown = 20;
/** WooCommerce's default hold-stock time: it cancels a pending order nobody paid after it. */
const wooHoldStockDefaultMs = 60 * 60_000;

export interface ShopPlatformsView {
  connectors: Array<{ platform: string; writeBack: boolean; endpointHref: string | undefined }>;
  rejected: Array<{
    at: ShownTime | null;
    platform: string;
    topic: string;
    deliveryId: string;
    reason: string;
    orderHref: string | undefined;
    orderId: string | null;
  }>;
  warnings: string[];
}

/**
 * The shop platforms connected (src/connectors/), what each is told back, the deliveries recoup
 * answered 200 but could not use (and why: the platform only sees the 200), and a warning where a
 * platform would cancel orders while their recovery still runs.
 */
export async function shopPlatformsView(
  db: Db,
  connectors: readonly ShopConnector[],
  cadences: readonly CadenceVersion[],
): Promise<ShopPlatformsView> {
  const rejected = await rows<{
    received_at: Date;
    platform: string | null;
    topic: string | null;
    delivery_id: string | null;
    reason: string | null;
    order_id: string | null;
  }>(
    db,
    sql`select received_at, payload->>'platform' as platform, payload->>'topic' as topic,
               payload->>'delivery_id' as delivery_id, payload->>'reason' as reason, order_id
        from events where outcome = 'rejected' order by received_at desc limit ${rejectedShown}`,
  );
  const warnings: string[] = [];
  const woo = connectors.find((c) => c.platform === 'woocommerce');
  // Its write-back holds pending orders while they are recovered, unless reminders lead to WooCommerce's own page.
  if (woo && !woo.writeBack?.events.includes('recovery.started')) {
    const outliving = cadences.filter((c) => c.cadence.expireAfterMs > wooHoldStockDefaultMs).map((c) => c.name);
    if (outliving.length > 0) {
      warnings.push(
        `WooCommerce cancels a pending order nobody paid after its hold-stock time (${formatDuration(wooHoldStockDefaultMs)} unless the store changed it), and ${outliving.join(', ')} ${outliving.length === 1 ? 'runs' : 'run'} longer. ${woo.writeBack ? 'With WOOCOMMERCE_LINK_MODE=platform recoup cannot hold those orders (WooCommerce’s payment page does not take a held order): raise the store’s hold-stock time, or keep cadences within it.' : 'Set WOOCOMMERCE_URL, WOOCOMMERCE_CONSUMER_KEY and WOOCOMMERCE_CONSUMER_SECRET: recoup then holds those orders while their recovery runs.'}`,
      );
    }
  }
  return {
    connectors: connectors.map((c) => ({
      platform: c.platform,
      writeBack: c.writeBack !== undefined,
      endpointHref: c.writeBack ? webhookEndpointHref(`ep_${c.platform}`) : undefined,
    })),
    rejected: rejected.map((r) => ({
      at: shownTime(r.received_at),
      platform: r.platform ?? '',
      topic: r.topic ?? '',
      deliveryId: r.delivery_id ?? '',
      reason: r.reason ?? '',
      orderId: r.order_id,
      orderHref: r.order_id ? orderHref(r.order_id) : undefined,
    })),
    warnings,
  };
}
