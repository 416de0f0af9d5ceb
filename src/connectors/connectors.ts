import type { ConnectorsConfig } from './connectors-config.js';
import type { ShopConnector, ShopWriteBack } from './shop-connector.js';
import { createShopifyConnector } from './shopify/shopify-connector.js';
import { createStripeSourceConnector } from './stripe/stripe-source-connector.js';
import { createWoocommerceConnector } from './woocommerce/woocommerce-connector.js';

export type { ConnectorsConfig } from './connectors-config.js';

/**
 * The connectors the configuration turns on. Adding a platform: one folder beside these (its
 * config, signature check, mapping and write-back), a line here and one in connectors-config.ts;
 * docs/connect-your-shop.md describes the port.
 */
export function buildConnectors(config: ConnectorsConfig): ShopConnector[] {
  const connectors: ShopConnector[] = [];
  if (config.woocommerce) connectors.push(createWoocommerceConnector(config.woocommerce));
  if (config.shopify) connectors.push(createShopifyConnector(config.shopify));
  if (config.stripe) connectors.push(createStripeSourceConnector(config.stripe));
  return connectors;
}

/**
 * Whether a platform's order is paid on the platform's own page rather than recoup's retry page:
 * its connector's link mode is `platform`, or the platform alone can collect it.
 */
export function paidOnPlatform(
  config: ConnectorsConfig,
  connectors: readonly ShopConnector[],
): (platform: string, orderId: string) => boolean {
  const byLinkMode = new Set<string>();
  if (config.woocommerce?.linkMode === 'platform') byLinkMode.add('woocommerce');
  if (config.shopify?.linkMode === 'platform') byLinkMode.add('shopify');
  if (config.stripe?.linkMode === 'platform') byLinkMode.add('stripe');
  const byPlatform = new Map(connectors.map((c) => [c.platform, c]));
  return (platform, orderId) =>
    byLinkMode.has(platform) || (byPlatform.get(platform)?.paysOnPlatform?.(orderId) ?? false);
}

/** The write-backs of those connectors that have one, by platform. */
export function writeBacksOf(connectors: readonly ShopConnector[]): Map<string, ShopWriteBack> {
  const byPlatform = new Map<string, ShopWriteBack>();
  for (const connector of connectors) if (connector.writeBack) byPlatform.set(connector.platform, connector.writeBack);
  return byPlatform;
}
