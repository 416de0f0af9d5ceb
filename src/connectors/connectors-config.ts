import type { z } from 'zod';
import type { EnvOf } from '../platform/config-fields.js';
import { checkShopifyEnv, shopifyConfig, shopifyEnv, type ShopifyConfig } from './shopify/shopify-config.js';
import {
  checkStripeSourceEnv,
  stripeSourceConfig,
  stripeSourceEnv,
  type StripeSourceConfig,
} from './stripe/stripe-source-config.js';
import {
  checkWoocommerceEnv,
  woocommerceConfig,
  woocommerceEnv,
  type WoocommerceConfig,
} from './woocommerce/woocommerce-config.js';

/** Every connector's variables (docs/configuration.md lists them under each platform). */
export const connectorsEnv = { ...woocommerceEnv, ...shopifyEnv, ...stripeSourceEnv };

type ConnectorsEnv = EnvOf<typeof connectorsEnv>;

export function checkConnectorsEnv(env: ConnectorsEnv, ctx: z.RefinementCtx): void {
  checkWoocommerceEnv(env, ctx);
  checkShopifyEnv(env, ctx);
  checkStripeSourceEnv(env, ctx);
}

/** The connectors' part of the configuration: each platform's, when its webhook secret is set. */
export interface ConnectorsConfig {
  woocommerce?: WoocommerceConfig | undefined;
  shopify?: ShopifyConfig | undefined;
  stripe?: StripeSourceConfig | undefined;
}

export function connectorsConfig(env: ConnectorsEnv): ConnectorsConfig {
  return { woocommerce: woocommerceConfig(env), shopify: shopifyConfig(env), stripe: stripeSourceConfig(env) };
}
