import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { documented, emptyToUndefined, optionalText, type EnvOf } from '../../../platform/config-fields.js';
import { checkOwnMethodOnly, gatewayChosen, type GatewayChoice } from '../../payments-config.js';
import { checkKeyFile, pemOrFile } from '../key-files.js';

const group = 'Payments: WeChat Pay';

/** WeChat Pay direct (API v3); docs/payments.md describes the keys and the two verification modes. */
export const wechatPayEnv = {
  WECHAT_PAY_APP_ID: optionalText({ group, description: 'The app id bound to the merchant.' }),
  WECHAT_PAY_MCH_ID: optionalText({ group, description: 'The merchant id.' }),
  WECHAT_PAY_MERCHANT_SERIAL: optionalText({ group, description: 'Serial number of the merchant API certificate.' }),
  WECHAT_PAY_PRIVATE_KEY: optionalText({
    group,
    secret: true,
    description: 'The merchant API private key (`apiclient_key.pem`): PEM or a file path.',
  }),
  WECHAT_PAY_API_V3_KEY: optionalText({
    group,
    secret: true,
    description: 'The APIv3 key (32 characters) set in the merchant platform: decrypts notifies.',
  }),
  WECHAT_PAY_PUBLIC_KEY: optionalText({
    group,
    description:
      'The WeChat Pay public key (PEM or a file path), with WECHAT_PAY_PUBLIC_KEY_ID: the current mode for new merchants. This or WECHAT_PAY_PLATFORM_CERT is required.',
  }),
  WECHAT_PAY_PUBLIC_KEY_ID: optionalText({
    group,
    description: "The WeChat Pay public key's id (`PUB_KEY_ID_…`).",
  }),
  WECHAT_PAY_PLATFORM_CERT: optionalText({
    group,
    description:
      'A platform certificate (PEM or a file path; its serial is read from it), for merchants not yet on the public key. Both may be set while switching.',
  }),
  WECHAT_PAY_H5: documented(z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')), {
    group,
    description:
      '`true`: phones get H5 pay (needs the H5 product and the site’s domain registered); `false`: a QR code everywhere.',
    default: '`false`',
  }),
  WECHAT_PAY_API_URL: optionalText({
    group,
    description: 'Base URL of the WeChat Pay API, for tests against a local fake.',
    default: '`https://api.mch.weixin.qq.com/`',
  }),
};

export type WechatPayEnv = EnvOf<typeof wechatPayEnv>;

/** WeChat Pay's part of the configuration, when chosen for a method. `platformKeys`: serial → PEM (certificate or public key). */
export interface WechatPayConfig {
  appId: string;
  mchId: string;
  merchantSerial: string;
  privateKey: string;
  apiV3Key: string;
  platformKeys: Record<string, string>;
  h5: boolean;
  apiUrl: string | undefined;
}

export function checkWechatPayEnv(env: GatewayChoice & WechatPayEnv, ctx: z.RefinementCtx): void {
  checkOwnMethodOnly(env, ctx, 'wechat_pay', 'PAYMENT_GATEWAY_WECHAT_PAY');
  if (!gatewayChosen(env, 'wechat_pay')) return;
  for (const key of [
    'WECHAT_PAY_APP_ID',
    'WECHAT_PAY_MCH_ID',
    'WECHAT_PAY_MERCHANT_SERIAL',
    'WECHAT_PAY_PRIVATE_KEY',
    'WECHAT_PAY_API_V3_KEY',
  ] as const) {
    if (!env[key]) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'required when a payment gateway is wechat_pay' });
    }
  }
  checkKeyFile(env, 'WECHAT_PAY_PRIVATE_KEY', ctx);
  checkKeyFile(env, 'WECHAT_PAY_PUBLIC_KEY', ctx);
  checkKeyFile(env, 'WECHAT_PAY_PLATFORM_CERT', ctx);
  if (env.WECHAT_PAY_API_V3_KEY && Buffer.byteLength(env.WECHAT_PAY_API_V3_KEY) !== 32) {
    ctx.addIssue({ code: 'custom', path: ['WECHAT_PAY_API_V3_KEY'], message: 'must be 32 characters' });
  }
  if (!env.WECHAT_PAY_PLATFORM_CERT && !(env.WECHAT_PAY_PUBLIC_KEY && env.WECHAT_PAY_PUBLIC_KEY_ID)) {
    ctx.addIssue({
      code: 'custom',
      path: ['WECHAT_PAY_PUBLIC_KEY'],
      message: 'set WECHAT_PAY_PUBLIC_KEY with WECHAT_PAY_PUBLIC_KEY_ID, or WECHAT_PAY_PLATFORM_CERT',
    });
  }
  if (env.WECHAT_PAY_PUBLIC_KEY && !env.WECHAT_PAY_PUBLIC_KEY_ID) {
    ctx.addIssue({
      code: 'custom',
      path: ['WECHAT_PAY_PUBLIC_KEY_ID'],
      message: 'required with WECHAT_PAY_PUBLIC_KEY',
    });
  }
}

export function wechatPayConfig(env: GatewayChoice & WechatPayEnv): WechatPayConfig | undefined {
  if (
    !gatewayChosen(env, 'wechat_pay') ||
    !env.WECHAT_PAY_APP_ID ||
    !env.WECHAT_PAY_MCH_ID ||
    !env.WECHAT_PAY_MERCHANT_SERIAL ||
    !env.WECHAT_PAY_PRIVATE_KEY ||
    !env.WECHAT_PAY_API_V3_KEY
  ) {
    return undefined;
  }
  return {
    appId: env.WECHAT_PAY_APP_ID,
    mchId: env.WECHAT_PAY_MCH_ID,
    merchantSerial: env.WECHAT_PAY_MERCHANT_SERIAL,
    privateKey: pemOrFile(env.WECHAT_PAY_PRIVATE_KEY),
    apiV3Key: env.WECHAT_PAY_API_V3_KEY,
    platformKeys: platformKeys(env),
    h5: env.WECHAT_PAY_H5 === 'true',
    apiUrl: env.WECHAT_PAY_API_URL,
  };
}

/** Serial → PEM: the WeChat Pay public key by its id, and the platform certificate by its own serial. */
function platformKeys(env: WechatPayEnv): Record<string, string> {
  const keys: Record<string, string> = {};
  if (env.WECHAT_PAY_PUBLIC_KEY && env.WECHAT_PAY_PUBLIC_KEY_ID) {
    keys[env.WECHAT_PAY_PUBLIC_KEY_ID] = pemOrFile(env.WECHAT_PAY_PUBLIC_KEY);
  }
  if (env.WECHAT_PAY_PLATFORM_CERT) {
    const pem = pemOrFile(env.WECHAT_PAY_PLATFORM_CERT);
    keys[new X509Certificate(pem).serialNumber.toUpperCase()] = pem;
  }
  return keys;
}
