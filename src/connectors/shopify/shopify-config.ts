import { z } from 'zod';
import { documented, emptyToUndefined, optionalText, type EnvOf } from '../../platform/config-fields.js';

const group = 'Shopify (shop connector)';

/**
 * The Admin API version write-back asks for. Shopify supports each quarterly version for a year;
 * the client library warns about older ones, so this moves forward with the library.
 */
export const defaultShopifyApiVersion = '2026-10';

export const shopifyLinkModes = ['recoup', 'platform'] as const;
export type ShopifyLinkMode = (typeof shopifyLinkModes)[number];

/** Shopify's variables. The connector is on when SHOPIFY_WEBHOOK_SECRET is set. */
export const shopifyEnv = {
  SHOPIFY_WEBHOOK_SECRET: optionalText({
    group,
    secret: true,
    description:
      "The app's client secret, which signs its webhooks (`X-Shopify-Hmac-Sha256`). Set, `POST /webhooks/shops/shopify` takes Shopify's order, checkout and privacy webhooks.",
  }),
  SHOPIFY_SHOP: optionalText({
    group,
    description:
      "The shop's `*.myshopify.com` domain. With SHOPIFY_ADMIN_TOKEN, an order paid through a retry link is marked paid in Shopify and tagged `recoup-recovered`; a refund tags it `recoup-refunded`.",
    example: 'example-shop.myshopify.com',
  }),
  SHOPIFY_ADMIN_TOKEN: optionalText({
    group,
    secret: true,
    description:
      'Admin API access token (`shpat_…`) of the app, with the `write_orders` scope (and the `mark_orders_as_paid` permission): used to tell Shopify about payments and refunds recoup handled.',
  }),
  SHOPIFY_API_URL: optionalText({
    group,
    description: 'Base URL of the Admin API instead of `https://<SHOPIFY_SHOP>`, for tests against a local fake.',
    default: "the shop's own",
  }),
  SHOPIFY_API_VERSION: optionalText({
    group,
    description: 'Admin API version (`YYYY-MM`) that write-back calls.',
    default: `\`${defaultShopifyApiVersion}\``,
  }),
  SHOPIFY_LINK_MODE: documented(z.preprocess(emptyToUndefined, z.enum(shopifyLinkModes).default('recoup')), {
    group,
    description:
      "Where reminders lead: `recoup`, recoup's own retry page; `platform`, Shopify's page for the order (the abandoned checkout's recovery URL).",
    default: '`recoup`',
  }),
};

export type ShopifyEnv = EnvOf<typeof shopifyEnv>;

/** The Admin API credentials write-back uses. */
export interface ShopifyAdminConfig {
  /** `example-shop.myshopify.com`. */
  shop: string;
  accessToken: string;
  /** Replaces `https://<shop>` in every Admin API call (a local fake); undefined: the shop itself. */
  apiUrl: string | undefined;
  apiVersion: string;
}

export interface ShopifyConfig {
  webhookSecret: string;
  linkMode: ShopifyLinkMode;
  /** Undefined unless SHOPIFY_SHOP and SHOPIFY_ADMIN_TOKEN are both set: no write-back then. */
  admin: ShopifyAdminConfig | undefined;
}

const shopDomain = /^[a-z0-9][a-z0-9-]*\.myshopify\.com$/;
const apiVersion = /^(\d{4}-\d{2}|unstable)$/;

/** Adds an issue for each Shopify variable that is set but cannot work; for the config schema's superRefine. */
export function checkShopifyEnv(env: ShopifyEnv, ctx: z.RefinementCtx): void {
  const adminSet = Boolean(env.SHOPIFY_SHOP || env.SHOPIFY_ADMIN_TOKEN);
  if (adminSet && !env.SHOPIFY_WEBHOOK_SECRET) {
    // Write-back acts only on orders that came in through the connector's webhooks.
    ctx.addIssue({
      code: 'custom',
      path: ['SHOPIFY_WEBHOOK_SECRET'],
      message: 'required with SHOPIFY_SHOP or SHOPIFY_ADMIN_TOKEN',
    });
  }
  if (env.SHOPIFY_SHOP && !env.SHOPIFY_ADMIN_TOKEN) {
    ctx.addIssue({ code: 'custom', path: ['SHOPIFY_ADMIN_TOKEN'], message: 'required with SHOPIFY_SHOP' });
  }
  if (env.SHOPIFY_ADMIN_TOKEN && !env.SHOPIFY_SHOP) {
    ctx.addIssue({ code: 'custom', path: ['SHOPIFY_SHOP'], message: 'required with SHOPIFY_ADMIN_TOKEN' });
  }
  if (env.SHOPIFY_SHOP && !shopDomain.test(env.SHOPIFY_SHOP)) {
    ctx.addIssue({
      code: 'custom',
      path: ['SHOPIFY_SHOP'],
      message: 'must be the shop\'s myshopify.com domain, such as "example-shop.myshopify.com"',
    });
  }
  if (env.SHOPIFY_API_VERSION && !apiVersion.test(env.SHOPIFY_API_VERSION)) {
    ctx.addIssue({ code: 'custom', path: ['SHOPIFY_API_VERSION'], message: 'must be a version such as 2026-10' });
  }
  if (env.SHOPIFY_API_URL && !URL.canParse(env.SHOPIFY_API_URL)) {
    ctx.addIssue({ code: 'custom', path: ['SHOPIFY_API_URL'], message: 'must be a URL' });
  }
}

/** Shopify's part of the configuration; undefined when SHOPIFY_WEBHOOK_SECRET is unset. */
export function shopifyConfig(env: ShopifyEnv): ShopifyConfig | undefined {
  if (!env.SHOPIFY_WEBHOOK_SECRET) return undefined;
  return {
    webhookSecret: env.SHOPIFY_WEBHOOK_SECRET,
    linkMode: env.SHOPIFY_LINK_MODE,
    admin:
      env.SHOPIFY_SHOP && env.SHOPIFY_ADMIN_TOKEN
        ? {
            shop: env.SHOPIFY_SHOP,
            accessToken: env.SHOPIFY_ADMIN_TOKEN,
            apiUrl: env.SHOPIFY_API_URL,
            apiVersion: env.SHOPIFY_API_VERSION ?? defaultShopifyApiVersion,
          }
        : undefined,
  };
}
