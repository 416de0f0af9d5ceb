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

/** The platforms whose reminders lead to the shop's own payment page (link mode `platform`). */
export function platformLinkModes(config: ConnectorsConfig): Set<string> {
  const platforms = new Set<string>();
  if (config.woocommerce?.linkMode === 'platform') platforms.add('woocommerce');
  if (config.shopify?.linkMode === 'platform') platforms.add('shopify');
  if (config.stripe?.linkMode === 'platform') platforms.add('stripe');
  return platforms;
}

/** The write-backs of those connectors that have one, by platform. */
export function writeBacksOf(connectors: readonly ShopConnector[]): Map<string, ShopWriteBack> {
  const byPlatform = new Map<string, ShopWriteBack>();
  for (const connector of connectors) if (connector.writeBack) byPlatform.set(connector.platform, connector.writeBack);
  return byPlatform;
}
