import { z } from 'zod';
import { documented, emptyToUndefined, optionalText, type EnvOf } from '../../platform/config-fields.js';

const group = 'WooCommerce';

/** WooCommerce's variables: the webhook secret turns the connector on, the REST API keys its write-back. */
export const woocommerceEnv = {
  WOOCOMMERCE_WEBHOOK_SECRET: optionalText({
    group,
    secret: true,
    description:
      "Secret of the shop's webhooks (WooCommerce → Settings → Advanced → Webhooks), delivering to `/webhooks/shops/woocommerce` with topics `order.created` and `order.updated`. Set, the connector takes them; their `X-WC-Webhook-Signature` must match.",
  }),
  WOOCOMMERCE_URL: optionalText({
    group,
    description:
      "The shop's address, where its REST API answers under `/wp-json/wc/v3`. With the consumer key and secret, recoup marks the orders it collected as paid and notes its refunds.",
    example: 'https://shop.example.com',
  }),
  WOOCOMMERCE_CONSUMER_KEY: optionalText({
    group,
    secret: true,
    description: 'Consumer key (`ck_…`) of a REST API key with read/write access.',
  }),
  WOOCOMMERCE_CONSUMER_SECRET: optionalText({
    group,
    secret: true,
    description: 'Consumer secret (`cs_…`) of that key.',
  }),
  WOOCOMMERCE_LINK_MODE: documented(z.preprocess(emptyToUndefined, z.enum(['recoup', 'platform']).default('recoup')), {
    group,
    description:
      "Where reminders for WooCommerce orders lead: `recoup` (recoup's retry page) or `platform` (the order's own WooCommerce payment page, its `payment_url`).",
    default: '`recoup`',
  }),
};

export type WoocommerceEnv = EnvOf<typeof woocommerceEnv>;

/** Access to the shop's REST API (wc/v3), for the write-back and reading settings. */
export interface WoocommerceApiConfig {
  /** The shop's address without a trailing slash, e.g. `https://shop.example.com`. */
  url: string;
  consumerKey: string;
  consumerSecret: string;
}

/** WooCommerce's part of the configuration, when its webhook secret is set. */
export interface WoocommerceConfig {
  webhookSecret: string;
  linkMode: 'recoup' | 'platform';
  /** Absent unless the address, key and secret are all set. */
  api: WoocommerceApiConfig | undefined;
}

const apiKeys = ['WOOCOMMERCE_URL', 'WOOCOMMERCE_CONSUMER_KEY', 'WOOCOMMERCE_CONSUMER_SECRET'] as const;

/**
 * Flags a partial set of API variables (the write-back would silently stay off), API variables
 * without the webhook secret (no WooCommerce order would ever reach the write-back), and an
 * address that is not http(s).
 */
export function checkWoocommerceEnv(env: WoocommerceEnv, ctx: z.RefinementCtx): void {
  const set = apiKeys.filter((key) => env[key]);
  if (set.length > 0 && set.length < apiKeys.length) {
    for (const key of apiKeys) {
      if (!env[key]) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `required with ${set.join(' and ')}: the WooCommerce write-back needs the address, key and secret`,
        });
      }
    }
  }
  if (set.length > 0 && !env.WOOCOMMERCE_WEBHOOK_SECRET) {
    ctx.addIssue({
      code: 'custom',
      path: ['WOOCOMMERCE_WEBHOOK_SECRET'],
      message: 'required with the WooCommerce API keys: the write-back acts on orders its webhooks brought in',
    });
  }
  if (env.WOOCOMMERCE_URL && !isHttpUrl(env.WOOCOMMERCE_URL)) {
    ctx.addIssue({
      code: 'custom',
      path: ['WOOCOMMERCE_URL'],
      message: 'must be an http(s) URL such as https://shop.example.com',
    });
  }
}

/** Undefined when WOOCOMMERCE_WEBHOOK_SECRET is unset: the connector is off. */
export function woocommerceConfig(env: WoocommerceEnv): WoocommerceConfig | undefined {
  if (!env.WOOCOMMERCE_WEBHOOK_SECRET) return undefined;
  const { WOOCOMMERCE_URL: url, WOOCOMMERCE_CONSUMER_KEY: key, WOOCOMMERCE_CONSUMER_SECRET: secret } = env;
  return {
    webhookSecret: env.WOOCOMMERCE_WEBHOOK_SECRET,
    linkMode: env.WOOCOMMERCE_LINK_MODE,
    api:
      url && key && secret && isHttpUrl(url)
        ? { url: url.replace(/\/+$/, ''), consumerKey: key, consumerSecret: secret }
        : undefined,
  };
}

function isHttpUrl(text: string): boolean {
  try {
    return ['http:', 'https:'].includes(new URL(text).protocol);
  } catch {
    return false;
  }
}
