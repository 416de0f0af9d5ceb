import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { Decorator } from 'wechatpay-axios-plugin';
import { systemClock, type Clock } from '../../../platform/clock.js';
import type { PaymentMethod } from '../../../domain/vocabulary.js';
import {
  GatewayError,
  isGatewayError,
  type CreatedPayment,
  type GatewayEvent,
  type GatewayPaymentStatus,
  type PaymentGateway,
  type PaymentNextAction,
  type PaymentRequest,
  type PaymentStatus,
  type RefundRequest,
  type RefundResult,
  type WebhookHeaders,
  type WebhookReply,
  type WebhookResult,
} from '../../payment-gateway.js';
import { classifyWechatPayCode, toGatewayError, type WechatPayCallKind } from './wechat-pay-errors.js';
import { attachOf, openNotify, toGatewayEvent } from './wechat-pay-notify.js';

export interface WechatPayGatewayOptions {
  /** The app id (`appid`) bound to the merchant: an Official Account's, or a website app's. */
  appId: string;
  /** The merchant id (`mchid`). */
  mchId: string;
  /** Serial number of the merchant API certificate (signs every request). */
  merchantSerial: string;
  /** The merchant API private key (`apiclient_key.pem`), PEM. */
  privateKey: string;
  /** The APIv3 key set in the merchant platform: 32 characters; decrypts notifies. */
  apiV3Key: string;
  /**
   * Keys that verify WeChat Pay's answers and notifies, by the serial WeChat Pay names in
   * `Wechatpay-Serial`: platform certificates (PEM, by certificate serial) and/or the WeChat
   * Pay public key (PEM, by its `PUB_KEY_ID_…`). Both may be given while a merchant moves
   * from one to the other.
   */
  platformKeys: Readonly<Record<string, string>>;
  /** Where WeChat Pay posts notifies: `${PUBLIC_URL}/webhooks/payments/wechat_pay`. */
  notifyUrl: string;
  /** API base URL. Default `https://api.mch.weixin.qq.com/`; a local fake's in tests. */
  baseUrl?: string;
  /**
   * Mobile visitors get H5 pay (`h5_url`, opens the WeChat app) instead of a QR code. Needs
   * the H5 product activated and the site's domain registered with WeChat Pay. Default false.
   */
  h5?: boolean;
  /** Per-request timeout. Default 10 000 ms. */
  timeoutMs?: number;
  /** Oldest notify signature accepted, in seconds. Default 300. */
  webhookToleranceSeconds?: number;
  /** Default: the system clock. Judges notify signature age and sets `time_expire`. */
  clock?: Clock;
}

const defaultBaseUrl = 'https://api.mch.weixin.qq.com/';

/** What recoup reads of a transaction (`/v3/pay/transactions/out-trade-no/…`). */
interface Transaction {
  trade_state?: string;
  trade_state_desc?: string;
  success_time?: string;
  amount?: { total?: number; currency?: string };
}

/** What recoup reads of a refund (`/v3/refund/domestic/refunds…`). */
interface Refund {
  out_refund_no?: string;
  status?: string;
}

/**
 * WeChat Pay direct (API v3), for merchants with their own WeChat Pay account. Takes WeChat
 * Pay in CNY only; amounts in fen. Requests are signed and answers verified by
 * `wechatpay-axios-plugin` (RSA-SHA256 over `METHOD\npath\ntimestamp\nnonce\nbody\n`); notifies
 * are verified and decrypted here with its Rsa/Aes helpers (see `wechat-pay-notify.ts`).
 *
 * - Native pay → `qr` with `code_url`; with `h5`, mobile visitors → `redirect` to `h5_url`.
 * - One order per attempt: `out_trade_no` from the attempt's idempotency key; `time_expire`
 *   is the retry link's expiry. A repeat with the same key answers the same code.
 * - A new attempt closes the previous order first, and fails with `conflict` if it was paid.
 * - An uncertain answer (5xx, `SYSTEM_ERROR`, a timeout) is followed by a query before anything else.
 * - Refunds with `out_refund_no` from the refund key: WeChat Pay answers a repeat with the same refund.
 * - WeChat Pay reports no declined Native/H5 payment by notify (the customer picks another
 *   card in the app); a query's `PAYERROR` state is reported as failed.
 */
export class WechatPayGateway implements PaymentGateway {
  readonly name = 'wechat_pay';
  readonly #client: Decorator;
  readonly #appId: string;
  readonly #mchId: string;
  readonly #apiV3Key: Buffer;
  readonly #keys: ReadonlyMap<string, KeyObject>;
  readonly #notifyUrl: string;
  readonly #h5: boolean;
  readonly #toleranceSeconds: number;
  readonly #clock: Clock;

  constructor(options: WechatPayGatewayOptions) {
    for (const key of ['appId', 'mchId', 'merchantSerial', 'privateKey', 'notifyUrl'] as const) {
      if (!options[key]) throw new Error(`WechatPayGateway needs ${key}`);
    }
    if (Buffer.byteLength(options.apiV3Key) !== 32)
      throw new Error('WechatPayGateway: the APIv3 key has 32 characters');
    const keys = new Map(
      Object.entries(options.platformKeys).map(([serial, pem]) => [serial, createPublicKey(pem.trim())]),
    );
    if (keys.size === 0) throw new Error('WechatPayGateway needs a platform certificate or the WeChat Pay public key');
    this.#client = new Decorator({
      mchid: options.mchId,
      serial: options.merchantSerial,
      privateKey: String(createPrivateKey(options.privateKey.trim()).export({ type: 'pkcs8', format: 'pem' })),
      certs: Object.fromEntries(keys),
      baseURL: options.baseUrl ?? defaultBaseUrl,
      timeout: options.timeoutMs ?? 10_000,
    });
    this.#appId = options.appId;
    this.#mchId = options.mchId;
    this.#apiV3Key = Buffer.from(options.apiV3Key);
    this.#keys = keys;
    this.#notifyUrl = options.notifyUrl;
    this.#h5 = options.h5 ?? false;
    this.#toleranceSeconds = options.webhookToleranceSeconds ?? 300;
    this.#clock = options.clock ?? systemClock;
  }

  supports(method: PaymentMethod, currency: string): boolean {
    return method === 'wechat_pay' && currency.toUpperCase() === 'CNY';
  }

  async createPayment(request: PaymentRequest): Promise<CreatedPayment> {
    this.#validate(request);
    const tradeNo = outTradeNo(request.idempotencyKey);
    const previous = request.previousGatewayPaymentId;
    if (previous && previous !== tradeNo) await this.#close(previous, 'supersede');

    // WeChat Pay refuses an expiry less than a minute away, and takes it to the second.
    const expiresAt = new Date(Math.floor(request.expiresAt.getTime() / 1000) * 1000);
    if (expiresAt.getTime() - this.#clock.now().getTime() < 60_000) {
      throw new GatewayError('invalid_request', 'The retry link expires within a minute', { code: 'expired' });
    }
    const h5 = this.#h5 && request.device === 'mobile' && request.clientIp !== undefined;
    const attach = attachOf(request.orderId, request.attemptId);
    const body = {
      appid: this.#appId,
      mchid: this.#mchId,
      description: description(request.description),
      out_trade_no: tradeNo,
      time_expire: rfc3339Beijing(expiresAt),
      ...(attach ? { attach } : {}),
      notify_url: this.#notifyUrl,
      amount: { total: request.amount, currency: 'CNY' },
      ...(h5 ? { scene_info: { payer_client_ip: request.clientIp, h5_info: { type: 'Wap' } } } : {}),
    };
    const path = h5 ? 'v3/pay/transactions/h5' : 'v3/pay/transactions/native';
    const answer = await this.#open(tradeNo, path, body);
    const nextAction: PaymentNextAction | undefined = h5
      ? typeof answer.h5_url === 'string'
        ? { type: 'redirect', url: withRedirect(answer.h5_url, request.returnUrl) }
        : undefined
      : typeof answer.code_url === 'string'
        ? { type: 'qr', payload: answer.code_url, expiresAt }
        : undefined;
    if (!nextAction)
      throw new GatewayError('invalid_request', 'WeChat Pay returned no code_url/h5_url', { code: 'no_code_url' });
    return { gatewayPaymentId: tradeNo, status: 'requires_action', nextAction };
  }

  async retrievePayment(gatewayPaymentId: string): Promise<PaymentStatus> {
    const transaction = await this.#query(gatewayPaymentId);
    const status = statusOf(transaction.trade_state);
    const failureCode = status === 'failed' ? (transaction.trade_state ?? 'PAYERROR') : undefined;
    const paidAt = transaction.success_time ? new Date(transaction.success_time) : undefined;
    return {
      gatewayPaymentId,
      status,
      amount: transaction.amount?.total ?? 0,
      currency: transaction.amount?.currency ?? 'CNY',
      method: 'wechat_pay',
      ...(failureCode ? { failureCode, failureCategory: classifyWechatPayCode(failureCode) } : {}),
      ...(status === 'succeeded' && paidAt && !Number.isNaN(paidAt.getTime()) ? { paidAt } : {}),
    };
  }

  async cancelPayment(gatewayPaymentId: string): Promise<void> {
    await this.#close(gatewayPaymentId, 'cancel');
  }

  async refund(input: RefundRequest): Promise<RefundResult> {
    if (!Number.isSafeInteger(input.amount) || input.amount <= 0) {
      throw new GatewayError('invalid_request', 'Refund amount must be a positive integer', { code: 'invalid_amount' });
    }
    if (input.currency.toUpperCase() !== 'CNY') {
      throw new GatewayError('invalid_request', `WeChat Pay refunds in CNY, not ${input.currency}`, {
        code: 'currency_mismatch',
        gatewayPaymentId: input.gatewayPaymentId,
      });
    }
    const refundNo = outRefundNo(input.refundKey);
    // WeChat Pay wants the order's total with every refund; a repeated refund key is answered
    // with the refund it made, whatever the order's state is now.
    const existing = await this.#refundOf(refundNo);
    if (existing) return { gatewayRefundId: refundNo, status: refundStatus(existing.status) };
    const transaction = await this.#query(input.gatewayPaymentId);
    if (transaction.trade_state !== 'SUCCESS' && transaction.trade_state !== 'REFUND') {
      throw new GatewayError(
        'conflict',
        `WeChat Pay order ${input.gatewayPaymentId} is ${transaction.trade_state ?? 'unknown'}, not paid`,
        {
          code: transaction.trade_state ?? 'NOTPAY',
          gatewayPaymentId: input.gatewayPaymentId,
        },
      );
    }
    const body = {
      out_trade_no: input.gatewayPaymentId,
      out_refund_no: refundNo,
      reason: input.reason.slice(0, 80),
      notify_url: this.#notifyUrl,
      amount: { refund: input.amount, total: transaction.amount?.total ?? input.amount, currency: 'CNY' },
    };
    let refund: Refund;
    try {
      refund = await this.#call<Refund>('write', 'v3/refund/domestic/refunds', 'POST', body, input.gatewayPaymentId);
    } catch (error) {
      if (isGatewayError(error, 'unknown_outcome')) {
        const made = await this.#refundOf(refundNo).catch(() => {
          throw error;
        });
        if (made) return { gatewayRefundId: refundNo, status: refundStatus(made.status) };
        refund = await this.#call<Refund>('write', 'v3/refund/domestic/refunds', 'POST', body, input.gatewayPaymentId);
      } else if (isGatewayError(error) && (error.code === 'INVALID_REQUEST' || error.code === 'NOT_ENOUGH')) {
        // More than is left to refund (or the order is no longer refundable): the payment's state forbids it.
        throw new GatewayError('conflict', error.message, {
          code: error.code,
          gatewayPaymentId: input.gatewayPaymentId,
          cause: error,
        });
      } else {
        throw error;
      }
    }
    return { gatewayRefundId: refundNo, status: refundStatus(refund.status) };
  }

  async parseWebhook(rawBody: Buffer, headers: WebhookHeaders): Promise<GatewayEvent | null> {
    const notify = openNotify(rawBody, headers, {
      keys: this.#keys,
      apiV3Key: this.#apiV3Key,
      mchId: this.#mchId,
      appId: this.#appId,
      now: Math.floor(this.#clock.now().getTime() / 1000),
      toleranceSeconds: this.#toleranceSeconds,
    });
    return toGatewayEvent(notify, this.#mchId, this.#appId);
  }

  /** WeChat Pay: 204 without a body on success; a 4xx/5xx with `{code:"FAIL",message}` makes it resend. */
  webhookReply(result: WebhookResult): WebhookReply {
    if (result.ok) return { status: 204, body: '' };
    return {
      status: result.status >= 400 ? result.status : 500,
      contentType: 'application/json; charset=utf-8',
      body: JSON.stringify({ code: 'FAIL', message: result.message }),
    };
  }

  // ---- internals ----

  #validate(request: PaymentRequest): void {
    if (!Number.isSafeInteger(request.amount) || request.amount <= 0) {
      throw new GatewayError('invalid_request', 'amount must be a positive integer', { code: 'invalid_amount' });
    }
    if (!this.supports(request.method, request.currency)) {
      throw new GatewayError(
        'invalid_request',
        `WeChat Pay direct takes WeChat Pay in CNY, not ${request.method} in ${request.currency}`,
        {
          code: request.method === 'wechat_pay' ? 'currency_not_supported' : 'method_not_supported',
          category: 'method_unsupported',
        },
      );
    }
  }

  /** Places the order; on an uncertain answer queries first, and repeats only for an unpaid order. */
  async #open(tradeNo: string, path: string, body: object): Promise<Record<string, unknown>> {
    try {
      return await this.#call<Record<string, unknown>>('write', path, 'POST', body, tradeNo);
    } catch (error) {
      if (!isGatewayError(error, 'unknown_outcome')) throw error;
      let state: string | undefined;
      try {
        state = (await this.#query(tradeNo)).trade_state;
      } catch (queryError) {
        if (!isGatewayError(queryError) || queryError.code !== 'ORDER_NOT_EXIST') throw error;
      }
      if (state !== undefined && state !== 'NOTPAY') {
        throw new GatewayError('conflict', `WeChat Pay order ${tradeNo} is already ${state}`, {
          code: state,
          gatewayPaymentId: tradeNo,
          cause: error,
        });
      }
      return await this.#call<Record<string, unknown>>('write', path, 'POST', body, tradeNo);
    }
  }

  async #close(tradeNo: string, why: 'cancel' | 'supersede'): Promise<void> {
    try {
      await this.#call(
        'write',
        `v3/pay/transactions/out-trade-no/${encodeURIComponent(tradeNo)}/close`,
        'POST',
        {
          mchid: this.#mchId,
        },
        tradeNo,
      );
      return;
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error;
      if (error.code === 'ORDER_NOT_EXIST') return;
      if (error.kind === 'invalid_request' && error.code !== 'ORDER_CLOSED') throw error;
      if (error.kind === 'unavailable') throw error;
      // Paid, closed, or an uncertain answer: the order's state decides.
      const state = (await this.#query(tradeNo)).trade_state;
      if (state === 'CLOSED' || state === 'REVOKED' || state === 'PAYERROR') return;
      if (state === 'SUCCESS' || state === 'REFUND') {
        if (why === 'cancel') return;
        throw new GatewayError('conflict', `WeChat Pay order ${tradeNo} is already paid`, {
          code: 'ORDERPAID',
          gatewayPaymentId: tradeNo,
          cause: error,
        });
      }
      throw new GatewayError(
        state === 'USERPAYING' ? 'conflict' : 'unknown_outcome',
        `WeChat Pay order ${tradeNo} could not be closed (${state ?? 'unknown'})`,
        {
          code: state ?? error.code ?? 'close_failed',
          gatewayPaymentId: tradeNo,
          cause: error,
        },
      );
    }
  }

  async #query(tradeNo: string): Promise<Transaction> {
    return this.#call<Transaction>(
      'read',
      `v3/pay/transactions/out-trade-no/${encodeURIComponent(tradeNo)}?mchid=${encodeURIComponent(this.#mchId)}`,
      'GET',
      undefined,
      tradeNo,
    );
  }

  /** The refund made for this `out_refund_no`, or undefined when there is none. */
  async #refundOf(refundNo: string): Promise<Refund | undefined> {
    try {
      return await this.#call<Refund>(
        'read',
        `v3/refund/domestic/refunds/${encodeURIComponent(refundNo)}`,
        'GET',
        undefined,
      );
    } catch (error) {
      if (isGatewayError(error) && (error.code === 'RESOURCE_NOT_EXISTS' || error.code === 'ORDER_NOT_EXIST'))
        return undefined;
      throw error;
    }
  }

  async #call<T>(
    kind: WechatPayCallKind,
    path: string,
    method: 'GET' | 'POST',
    body: object | undefined,
    gatewayPaymentId?: string,
  ): Promise<T> {
    try {
      const response = await this.#client.request<T>(path, method, body, {});
      return (response.data ?? {}) as T;
    } catch (error) {
      throw toGatewayError(error, kind, gatewayPaymentId);
    }
  }
}

function statusOf(state: string | undefined): GatewayPaymentStatus {
  switch (state) {
    case 'SUCCESS':
    case 'REFUND':
      return 'succeeded';
    case 'CLOSED':
    case 'REVOKED':
      return 'cancelled';
    case 'USERPAYING':
      return 'pending';
    case 'PAYERROR':
      return 'failed';
    default:
      return 'requires_action';
  }
}

function refundStatus(status: string | undefined): RefundResult['status'] {
  if (status === 'SUCCESS') return 'succeeded';
  if (status === 'CLOSED' || status === 'ABNORMAL') return 'failed';
  return 'pending';
}

/** WeChat Pay's `out_trade_no`: 6–32 of `[A-Za-z0-9_\-|*]`; a key that does not fit is hashed. */
export function outTradeNo(idempotencyKey: string): string {
  return /^[A-Za-z0-9_\-|*]{6,32}$/.test(idempotencyKey) ? idempotencyKey : digest(idempotencyKey);
}

/** `out_refund_no`: 1–64 of `[A-Za-z0-9_\-|*@]`. */
export function outRefundNo(refundKey: string): string {
  return /^[A-Za-z0-9_\-|*@]{1,64}$/.test(refundKey) ? refundKey : digest(refundKey);
}

function digest(text: string): string {
  return `h${createHash('sha256').update(text).digest('hex').slice(0, 31)}`;
}

/** RFC 3339 in Beijing time, as WeChat Pay writes it: `2026-03-08T09:30:00+08:00`. */
export function rfc3339Beijing(at: Date): string {
  return `${new Date(at.getTime() + 8 * 3_600_000).toISOString().slice(0, 19)}+08:00`;
}

/** WeChat Pay's description: 127 characters at most. */
function description(text: string): string {
  return (text.trim() || 'Order').slice(0, 127);
}

/** H5 pay returns to `redirect_url` after the WeChat app; WeChat Pay wants it URL-encoded. */
function withRedirect(h5Url: string, returnUrl: string): string {
  const separator = h5Url.includes('?') ? '&' : '?';
  return `${h5Url}${separator}redirect_url=${encodeURIComponent(returnUrl)}`;
}
