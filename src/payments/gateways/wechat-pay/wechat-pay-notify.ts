import { Aes, Formatter, Rsa } from 'wechatpay-axios-plugin';
import type { KeyObject } from 'node:crypto';
import { classifyWechatPayCode } from './wechat-pay-errors.js';
import { GatewayError, singleHeader, type GatewayEvent, type WebhookHeaders } from '../../payment-gateway.js';

/** What recoup echoes through WeChat Pay in `attach` (128 characters at most), to attribute a notify. */
export function attachOf(orderId: string, attemptId: string): string | undefined {
  const attach = new URLSearchParams({ order: orderId, attempt: attemptId }).toString();
  return attach.length <= 128 ? attach : undefined;
}

export function idsOf(attach: unknown): { orderId?: string; attemptId?: string } {
  if (typeof attach !== 'string') return {};
  const params = new URLSearchParams(attach);
  const orderId = params.get('order');
  const attemptId = params.get('attempt');
  return { ...(orderId ? { orderId } : {}), ...(attemptId ? { attemptId } : {}) };
}

export interface NotifyCheck {
  /** Serial → key: platform certificate serials and/or the WeChat Pay public key's `PUB_KEY_ID_…`. */
  keys: ReadonlyMap<string, KeyObject>;
  apiV3Key: Buffer;
  mchId: string;
  appId: string;
  /** Seconds since epoch, now. */
  now: number;
  toleranceSeconds: number;
}

/**
 * Verifies a notify (`Wechatpay-Signature` over `timestamp\nnonce\nbody\n` with the key its
 * `Wechatpay-Serial` names) and decrypts its resource (AEAD_AES_256_GCM with the APIv3 key).
 * Throws invalid_signature for anything unverifiable, stale, or not decryptable with our key.
 */
export function openNotify(rawBody: Buffer, headers: WebhookHeaders, check: NotifyCheck): NotifyEnvelope {
  const timestamp = singleHeader(headers, 'wechatpay-timestamp');
  const nonce = singleHeader(headers, 'wechatpay-nonce');
  const signature = singleHeader(headers, 'wechatpay-signature');
  const serial = singleHeader(headers, 'wechatpay-serial');
  if (!timestamp || !nonce || !signature || !serial) {
    throw new GatewayError('invalid_signature', 'WeChat Pay notify rejected: missing or repeated Wechatpay-* headers');
  }
  const key = check.keys.get(serial);
  if (!key) throw new GatewayError('invalid_signature', `WeChat Pay notify rejected: unknown serial ${serial}`);
  const signedAt = Number(timestamp);
  if (!Number.isSafeInteger(signedAt) || Math.abs(check.now - signedAt) > check.toleranceSeconds) {
    throw new GatewayError('invalid_signature', 'WeChat Pay notify rejected: timestamp outside the tolerance');
  }
  const body = rawBody.toString('utf8');
  let verified: boolean;
  try {
    verified = Rsa.verify(Formatter.response(timestamp, nonce, body), signature, key);
  } catch {
    verified = false;
  }
  if (!verified) throw new GatewayError('invalid_signature', 'WeChat Pay notify rejected: bad signature');

  const envelope = parseJson(body) as Partial<NotifyEnvelope> | undefined;
  const resource = envelope?.resource;
  if (!envelope?.id || !envelope.event_type || !resource?.ciphertext || !resource.nonce) {
    throw new GatewayError('invalid_request', 'WeChat Pay notify is not an event', { code: 'unreadable_notify' });
  }
  let plain: string;
  try {
    plain = Aes.AesGcm.decrypt(resource.ciphertext, check.apiV3Key, resource.nonce, resource.associated_data ?? '');
  } catch (error) {
    // Signed by WeChat Pay but not for our APIv3 key: another merchant's, or a key mix-up.
    throw new GatewayError('invalid_signature', 'WeChat Pay notify rejected: resource does not decrypt', {
      cause: error,
    });
  }
  const decrypted = parseJson(plain);
  if (typeof decrypted !== 'object' || decrypted === null) {
    throw new GatewayError('invalid_request', 'WeChat Pay notify resource is not JSON', { code: 'unreadable_notify' });
  }
  return { ...envelope, id: envelope.id, event_type: envelope.event_type, resource, decrypted } as NotifyEnvelope;
}

export interface NotifyEnvelope {
  id: string;
  create_time?: string;
  event_type: string;
  resource: { ciphertext: string; nonce: string; associated_data?: string; original_type?: string };
  decrypted: Record<string, unknown>;
}

/**
 * A verified, decrypted notify → recoup's event, or null when it carries nothing for recoup.
 * Payments: only `TRANSACTION.SUCCESS` with `trade_state` SUCCESS counts as paid, for our
 * merchant and app. Refunds: `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED`.
 */
export function toGatewayEvent(notify: NotifyEnvelope, mchId: string, appId: string): GatewayEvent | null {
  const data = notify.decrypted;
  const occurredAt = dateOf(data.success_time) ?? dateOf(notify.create_time) ?? new Date();
  if (data.mchid !== mchId) {
    throw new GatewayError('invalid_request', `WeChat Pay notify for merchant ${String(data.mchid)}`, {
      code: 'mchid_mismatch',
    });
  }
  const outTradeNo = typeof data.out_trade_no === 'string' ? data.out_trade_no : '';
  if (!outTradeNo) throw new GatewayError('invalid_request', 'WeChat Pay notify without out_trade_no');
  const amount = (data.amount ?? {}) as Record<string, unknown>;
  if (notify.event_type === 'TRANSACTION.SUCCESS') {
    if (data.appid !== appId) {
      throw new GatewayError('invalid_request', `WeChat Pay notify for app ${String(data.appid)}`, {
        code: 'appid_mismatch',
      });
    }
    if (data.trade_state !== 'SUCCESS' || typeof amount.total !== 'number') return null;
    return {
      id: notify.id,
      type: 'payment.succeeded',
      gatewayPaymentId: outTradeNo,
      ...idsOf(data.attach),
      amount: amount.total,
      currency: typeof amount.currency === 'string' ? amount.currency : 'CNY',
      method: 'wechat_pay',
      occurredAt,
    };
  }
  if (notify.event_type.startsWith('REFUND.')) {
    const status = data.refund_status;
    const type =
      status === 'SUCCESS' ? 'refund.succeeded' : status === 'ABNORMAL' || status === 'CLOSED' ? 'refund.failed' : null;
    if (!type || typeof amount.refund !== 'number' || typeof data.out_refund_no !== 'string') return null;
    return {
      id: notify.id,
      type,
      gatewayPaymentId: outTradeNo,
      amount: amount.refund,
      currency: 'CNY',
      method: 'wechat_pay',
      refundId: data.out_refund_no,
      ...(type === 'refund.failed'
        ? { failureCode: String(status), failureCategory: classifyWechatPayCode(String(status)) }
        : {}),
      occurredAt,
    };
  }
  return null;
}

function dateOf(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
