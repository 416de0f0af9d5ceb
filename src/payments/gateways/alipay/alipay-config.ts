import { z } from 'zod';
import { documented, emptyToUndefined, optionalText, type EnvOf } from '../../../platform/config-fields.js';
import { checkOwnMethodOnly, gatewayChosen, type GatewayChoice } from '../../payments-config.js';
import { checkKeyFile, pemOrFile } from '../key-files.js';

const group = 'Payments: Alipay';

/** Alipay direct (open platform, RSA2 keys); docs/payments.md describes the key formats. */
export const alipayEnv = {
  ALIPAY_APP_ID: optionalText({ group, description: "The open-platform application's `app_id`." }),
  ALIPAY_PRIVATE_KEY: optionalText({
    group,
    secret: true,
    description:
      "The application's RSA2 private key: PEM, the bare base64 of Alipay's key tool, or the path of a file holding it.",
  }),
  ALIPAY_PUBLIC_KEY: optionalText({
    group,
    description: "Alipay's public key for the application (not the app's own): PEM, bare base64, or a file path.",
  }),
  ALIPAY_FLOW: documented(z.preprocess(emptyToUndefined, z.enum(['page', 'qr']).default('page')), {
    group,
    description:
      '`page`: page pay on desktop, wap pay on phones; `qr`: a face-to-face QR code (`alipay.trade.precreate`).',
    default: '`page`',
  }),
  ALIPAY_GATEWAY_URL: optionalText({
    group,
    description: "Alipay's gateway: set it to the sandbox's (open platform console) to try it out, or a local fake's.",
    default: '`https://openapi.alipay.com/gateway.do`',
  }),
};

export type AlipayEnv = EnvOf<typeof alipayEnv>;

/** Alipay's part of the configuration, when chosen for a method. Keys are PEM or bare base64 (files already read). */
export interface AlipayConfig {
  appId: string;
  privateKey: string;
  alipayPublicKey: string;
  flow: 'page' | 'qr';
  gatewayUrl: string | undefined;
}

export function checkAlipayEnv(env: GatewayChoice & AlipayEnv, ctx: z.RefinementCtx): void {
  checkOwnMethodOnly(env, ctx, 'alipay', 'PAYMENT_GATEWAY_ALIPAY');
  if (!gatewayChosen(env, 'alipay')) return;
  for (const key of ['ALIPAY_APP_ID', 'ALIPAY_PRIVATE_KEY', 'ALIPAY_PUBLIC_KEY'] as const) {
    if (!env[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is alipay' });
    else checkKeyFile(env, key, ctx);
  }
}

export function alipayConfig(env: GatewayChoice & AlipayEnv): AlipayConfig | undefined {
  if (!gatewayChosen(env, 'alipay') || !env.ALIPAY_APP_ID || !env.ALIPAY_PRIVATE_KEY || !env.ALIPAY_PUBLIC_KEY) {
    return undefined;
  }
  return {
    appId: env.ALIPAY_APP_ID,
    privateKey: pemOrFile(env.ALIPAY_PRIVATE_KEY),
    alipayPublicKey: pemOrFile(env.ALIPAY_PUBLIC_KEY),
    flow: env.ALIPAY_FLOW,
    gatewayUrl: env.ALIPAY_GATEWAY_URL,
  };
}
