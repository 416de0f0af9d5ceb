import { z } from 'zod';
import { documented, emptyToUndefined, optionalText, type EnvOf } from '../../platform/config-fields.js';

const group = 'Shop: Stripe';

/** Where reminders for a Stripe order lead. */
export const stripeSourceLinkModes = ['recoup', 'platform'] as const;
export type StripeSourceLinkMode = (typeof stripeSourceLinkModes)[number];

/**
 * The shop's own Stripe account as a source of orders, whichever gateway recoup itself collects
 * with: its webhook endpoint is `PUBLIC_URL/webhooks/shops/stripe`.
 */
export const stripeSourceEnv = {
  STRIPE_SOURCE_WEBHOOK_SECRET: optionalText({
    group,
    secret: true,
    description:
      "Signing secret (`whsec_…`) of the shop's Stripe webhook endpoint `PUBLIC_URL/webhooks/shops/stripe`, listening to `payment_intent.payment_failed`, `payment_intent.succeeded`, `payment_intent.canceled`, `checkout.session.expired` and `checkout.session.completed`. Set, Stripe is a source of orders.",
  }),
  STRIPE_SOURCE_SECRET_KEY: optionalText({
    group,
    secret: true,
    description:
      "API key of the shop's Stripe account (a restricted `rk_…` key allowed to read Customers is enough): fetches the customer's email, phone, name and preferred locale when an event names only a `cus_…` id.",
    default: 'customers are not fetched: an event without an email or phone of its own is rejected',
  }),
  STRIPE_SOURCE_API_URL: optionalText({
    group,
    description: 'Base URL of the Stripe API the customers are fetched from, for tests against a local fake.',
    default: "Stripe's own",
  }),
  STRIPE_SOURCE_LINK_MODE: documented(z.preprocess(emptyToUndefined, z.enum(stripeSourceLinkModes).default('recoup')), {
    group,
    description:
      "Where reminders lead: `recoup`, recoup's own retry page; `platform`, the shop's own page to pay (a Checkout Session's recovery URL), when the event has one.",
    default: '`recoup`',
  }),
};

export type StripeSourceEnv = EnvOf<typeof stripeSourceEnv>;

/** Stripe's part of the configuration as a shop, when its webhook secret is set. */
export interface StripeSourceConfig {
  webhookSecret: string;
  /** Reads customers; undefined: events are mapped from what they carry. */
  secretKey: string | undefined;
  apiUrl: string | undefined;
  linkMode: StripeSourceLinkMode;
}

/** A key or URL without the webhook secret would be silently unused: say so at start. */
export function checkStripeSourceEnv(env: StripeSourceEnv, ctx: z.RefinementCtx): void {
  if (env.STRIPE_SOURCE_WEBHOOK_SECRET) return;
  for (const key of ['STRIPE_SOURCE_SECRET_KEY', 'STRIPE_SOURCE_API_URL'] as const) {
    if (env[key]) {
      ctx.addIssue({
        code: 'custom',
        path: ['STRIPE_SOURCE_WEBHOOK_SECRET'],
        message: `required when ${key} is set`,
      });
    }
  }
}

export function stripeSourceConfig(env: StripeSourceEnv): StripeSourceConfig | undefined {
  if (!env.STRIPE_SOURCE_WEBHOOK_SECRET) return undefined;
  return {
    webhookSecret: env.STRIPE_SOURCE_WEBHOOK_SECRET,
    secretKey: env.STRIPE_SOURCE_SECRET_KEY,
    apiUrl: env.STRIPE_SOURCE_API_URL,
    linkMode: env.STRIPE_SOURCE_LINK_MODE,
  };
}
