import type { z } from 'zod';
import { optionalText, type EnvOf } from '../../../platform/config-fields.js';
import { gatewayChosen, type GatewayChoice } from '../../payments-config.js';

const group = 'Payments: Stripe';

export const stripeEnv = {
  STRIPE_SECRET_KEY: optionalText({
    group,
    secret: true,
    description: 'API secret key (`sk_…`, or a restricted `rk_…`). Required when a payment gateway is `stripe`.',
  }),
  STRIPE_WEBHOOK_SECRET: optionalText({
    group,
    secret: true,
    description:
      'Signing secret (`whsec_…`) of the webhook endpoint `PUBLIC_URL/webhooks/payments/stripe`. Required when a payment gateway is `stripe`.',
  }),
  STRIPE_PUBLISHABLE_KEY: optionalText({
    group,
    description: 'Publishable key (`pk_…`): the card form on the retry page collects the card with Stripe.js.',
  }),
  STRIPE_API_URL: optionalText({
    group,
    description: 'Base URL of the Stripe API, for tests against a local fake.',
    default: "Stripe's own",
  }),
};

export type StripeEnv = EnvOf<typeof stripeEnv>;

/** Stripe's part of the configuration, when its keys are set. */
export interface StripeConfig {
  secretKey: string;
  webhookSecret: string;
  publishableKey: string | undefined;
  apiUrl: string | undefined;
}

export function checkStripeEnv(env: GatewayChoice & StripeEnv, ctx: z.RefinementCtx): void {
  if (!gatewayChosen(env, 'stripe')) return;
  for (const key of ['STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET'] as const) {
    if (!env[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is stripe' });
  }
}

export function stripeConfig(env: StripeEnv): StripeConfig | undefined {
  if (!env.STRIPE_SECRET_KEY || !env.STRIPE_WEBHOOK_SECRET) return undefined;
  return {
    secretKey: env.STRIPE_SECRET_KEY,
    webhookSecret: env.STRIPE_WEBHOOK_SECRET,
    publishableKey: env.STRIPE_PUBLISHABLE_KEY,
    apiUrl: env.STRIPE_API_URL,
  };
}
