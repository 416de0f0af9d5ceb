import type { Logger } from '../platform/logger.js';
import type { ShopConnector, ShopWriteBack } from './shop-connector.js';

/** The connectors' part of the configuration: each platform's, when its webhook secret is set. */
export type ConnectorsConfig = Record<never, never>;

/** The connectors the configuration asks for, in the order their routes are listed. */
export function buildConnectors(_config: ConnectorsConfig, _deps: { logger: Logger }): ShopConnector[] {
  return [];
}

/** The write-backs of those connectors that have one, by platform. */
export function writeBacksOf(connectors: readonly ShopConnector[]): Map<string, ShopWriteBack> {
  const byPlatform = new Map<string, ShopWriteBack>();
  for (const connector of connectors) if (connector.writeBack) byPlatform.set(connector.platform, connector.writeBack);
  return byPlatform;
}
