import { describe, expect, it } from 'vitest';
import { buildConnectors, paidOnPlatform } from '../../src/connectors/connectors.js';
import type { ConnectorsConfig } from '../../src/connectors/connectors-config.js';

const shopify = { webhookSecret: 's', linkMode: 'recoup', admin: undefined } as const;
const woocommerce = { webhookSecret: 'w', linkMode: 'recoup', api: undefined } as const;

describe('where a platform order is paid', () => {
  it("on recoup's page by default; a Shopify checkout, which only Shopify can collect, on Shopify's", () => {
    const config: ConnectorsConfig = { shopify, woocommerce };
    const paid = paidOnPlatform(config, buildConnectors(config));
    expect(paid('shopify', '450789469')).toBe(false);
    expect(paid('shopify', 'cd9ec7a48ba3cbd6bc6bf0a0b2ba2f49')).toBe(true);
    expect(paid('woocommerce', '727')).toBe(false);
  });

  it("on the platform's page for every order of a platform whose link mode is `platform`", () => {
    const config: ConnectorsConfig = { shopify, woocommerce: { ...woocommerce, linkMode: 'platform' } };
    const paid = paidOnPlatform(config, buildConnectors(config));
    expect(paid('woocommerce', '727')).toBe(true);
    expect(paid('shopify', '450789469')).toBe(false);
    // A platform with no connector configured: recoup's page.
    expect(paid('stripe', 'pi_1')).toBe(false);
  });
});
