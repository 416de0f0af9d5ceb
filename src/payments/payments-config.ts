import { z } from 'zod';
import { documented, duration, emptyToUndefined, type EnvOf } from '../platform/config-fields.js';
import type { PaymentMethod } from '../domain/vocabulary.js';

export const gatewayNames = ['sandbox', 'stripe', 'alipay', 'wechat_pay'] as const;
export type GatewayName = (typeof gatewayNames)[number];

const group = 'Payments';

function methodGateway(method: string) {
  return documented(z.preprocess(emptyToUndefined, z.enum(gatewayNames).optional()), {
    group,
    description: `Gateway for ${method} payments, overriding PAYMENT_GATEWAY.`,
    default: 'PAYMENT_GATEWAY',
  });
}

/** Which gateway takes each method, and the follow-up of payments whatever the gateway. */
export const paymentsEnv = {
  PAYMENT_GATEWAY: documented(z.enum(gatewayNames).default('sandbox'), {
    group,
    description:
      'Gateway for every method: `sandbox` (embedded), `stripe`, or a direct wallet (`alipay`, `wechat_pay`: each takes only its own method, in CNY). Choosing a gateway makes its keys required.',
    default: '`sandbox`',
  }),
  RECOUP_ALLOW_SANDBOX: documented(z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')), {
    group,
    description:
      'With NODE_ENV=production, recoup refuses to start while a payment method is on the `sandbox` gateway (anyone with a retry link could "pay" for free, ending reminders and counting revenue) unless this is `true`: a public demo, say.',
    default: '`false`',
  }),
  NODE_ENV: documented(z.preprocess(emptyToUndefined, z.string().optional()), {
    group,
    description: '`production` refuses the sandbox gateway (see RECOUP_ALLOW_SANDBOX).',
    default: 'unset',
  }),
  PAYMENT_GATEWAY_CARD: methodGateway('card'),
  PAYMENT_GATEWAY_ALIPAY: methodGateway('Alipay'),
  PAYMENT_GATEWAY_WECHAT_PAY: methodGateway('WeChat Pay'),
  CLICK_ATTRIBUTION_WINDOW: duration('24h', {
    group,
    description: 'A payment within this long after a retry-link click counts as `clicked`.',
  }),
  INCENTIVE_PERIOD: duration('90d', { group, description: 'At most one incentive per customer within this period.' }),
  WEBHOOK_STALE_AFTER: duration(
    '2m',
    {
      group,
      description:
        "A gateway event claimed this long ago and still not applied belongs to a delivery that died (a killed server): a resend of it, or the payment sweeper, takes it over. Younger, a resend is refused with 409 so that the gateway tries again later. It must outlast the slowest handling of one event: waiting for a reminder in flight on the order (PROVIDER_TIMEOUT, then the send lease) and a duplicate payment's refund call (Stripe: 30 s, retried once). Shorter is safe, as applying an event twice has one effect, but does the work twice.",
    },
    '1s',
  ),
  PAYMENT_CHECK_AFTER: duration(
    '5m',
    {
      group,
      description:
        'A payment attempt still open this long after it started (no webhook told its outcome) is looked up at the gateway by the payment sweeper, and again after twice its age each time while it stays open.',
    },
    '1s',
  ),
};

export type PaymentsEnv = EnvOf<typeof paymentsEnv>;
/** The variables that choose gateways; a gateway's checks and settings depend on being chosen. */
export type GatewayChoice = Pick<
  PaymentsEnv,
  'PAYMENT_GATEWAY' | 'PAYMENT_GATEWAY_CARD' | 'PAYMENT_GATEWAY_ALIPAY' | 'PAYMENT_GATEWAY_WECHAT_PAY'
>;

/** In production, a method on the sandbox gateway is a forgotten PAYMENT_GATEWAY unless said otherwise. */
export function checkSandboxInProduction(
  env: GatewayChoice & Pick<PaymentsEnv, 'NODE_ENV' | 'RECOUP_ALLOW_SANDBOX'>,
  ctx: z.RefinementCtx,
): void {
  if (env.NODE_ENV !== 'production' || env.RECOUP_ALLOW_SANDBOX === 'true' || !gatewayChosen(env, 'sandbox')) return;
  const keys = [
    'PAYMENT_GATEWAY',
    'PAYMENT_GATEWAY_CARD',
    'PAYMENT_GATEWAY_ALIPAY',
    'PAYMENT_GATEWAY_WECHAT_PAY',
  ] as const;
  const onSandbox = keys.filter((key) => env[key] === 'sandbox');
  ctx.addIssue({
    code: 'custom',
    path: [onSandbox[0] ?? 'PAYMENT_GATEWAY'],
    message: `the sandbox gateway takes payments for free: with NODE_ENV=production choose stripe, alipay or wechat_pay${
      onSandbox.length > 0 ? ` (${onSandbox.join(', ')} name the sandbox)` : ' (PAYMENT_GATEWAY defaults to sandbox)'
    }, or set RECOUP_ALLOW_SANDBOX=true for a demo`,
  });
}

/** Whether `name` takes some payment method. */
export function gatewayChosen(env: GatewayChoice, name: GatewayName): boolean {
  return [
    env.PAYMENT_GATEWAY,
    env.PAYMENT_GATEWAY_CARD,
    env.PAYMENT_GATEWAY_ALIPAY,
    env.PAYMENT_GATEWAY_WECHAT_PAY,
  ].includes(name);
}

/**
 * Issues for a direct wallet named for a method other than its own: it takes only its own
 * method, so naming it for another is a mistake, not a choice.
 */
export function checkOwnMethodOnly(
  env: GatewayChoice,
  ctx: z.RefinementCtx,
  wallet: GatewayName,
  ownKey: keyof GatewayChoice,
): void {
  for (const key of ['PAYMENT_GATEWAY_CARD', 'PAYMENT_GATEWAY_ALIPAY', 'PAYMENT_GATEWAY_WECHAT_PAY'] as const) {
    if (key !== ownKey && env[key] === wallet) {
      ctx.addIssue({ code: 'custom', path: [key], message: `${wallet} takes only its own method` });
    }
  }
}

export function gatewayFor(env: GatewayChoice): Record<PaymentMethod, GatewayName> {
  return {
    card: env.PAYMENT_GATEWAY_CARD ?? env.PAYMENT_GATEWAY,
    alipay: env.PAYMENT_GATEWAY_ALIPAY ?? env.PAYMENT_GATEWAY,
    wechat_pay: env.PAYMENT_GATEWAY_WECHAT_PAY ?? env.PAYMENT_GATEWAY,
  };
}
