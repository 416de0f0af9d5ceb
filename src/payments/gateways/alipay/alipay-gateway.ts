import { createPrivateKey, createPublicKey } from 'node:crypto';
import { AlipaySdk } from 'alipay-sdk';
import { systemClock, type Clock } from '../../../platform/clock.js';
import type { PaymentMethod } from '../../../domain/vocabulary.js';
import {
  GatewayError,
  isGatewayError,
  type CreatedPayment,
  type GatewayEvent,
  type GatewayPaymentStatus,
  type PaymentGateway,
  type PaymentRequest,
  type PaymentStatus,
  type RefundRequest,
  type RefundResult,
  type WebhookHeaders,
  type WebhookReply,
  type WebhookResult,
} from '../../payment-gateway.js';
import { answerError, toGatewayError, type AlipayAnswer, type AlipayCallKind } from './alipay-errors.js';
import { passbackParams, toGatewayEvent } from './alipay-notify.js';
import {
  amountOfTradeNo,
  beijingTime,
  fromBeijingTime,
  fromYuan,
  outRequestNo,
  outTradeNo,
  subjectOf,
  toYuan,
} from './alipay-trade.js';

export interface AlipayGatewayOptions {
  /** The Alipay open-platform application's id (`app_id`). */
  appId: string;
  /** The application's RSA private key (RSA2 signing): PEM (PKCS#8 or PKCS#1) or the bare base64 Alipay's key tool prints. */
  privateKey: string;
  /** Alipay's public key for this application (verifies answers and notifies): PEM or bare base64. */
  alipayPublicKey: string;
  /** Where Alipay posts notifies: `${PUBLIC_URL}/webhooks/payments/alipay`. */
  notifyUrl: string;
  /** The open-platform gateway. Default `https://openapi.alipay.com/gateway.do`; the sandbox's or a local fake's in tests. */
  gatewayUrl?: string;
  /**
   * `page` (default): desktop visitors get computer-website pay (`alipay.trade.page.pay`),
   * mobile visitors mobile-website pay (`alipay.trade.wap.pay`), both a redirect to Alipay's
   * cashier. `qr`: a face-to-face QR code (`alipay.trade.precreate`) shown on the retry page.
   */
  flow?: 'page' | 'qr';
  /** Per-request timeout. Default 10 000 ms. */
  timeoutMs?: number;
  /** Default: the system clock. Sets trade expiry. */
  clock?: Clock;
}

const defaultGatewayUrl = 'https://openapi.alipay.com/gateway.do';

/** A trade's state as `alipay.trade.query` reports it; `absent` when Alipay has no such trade (yet). */
interface Trade {
  status: 'WAIT_BUYER_PAY' | 'TRADE_SUCCESS' | 'TRADE_FINISHED' | 'TRADE_CLOSED' | 'absent';
  amount: number;
  paidAt?: Date;
}

/**
 * Alipay direct, through the official `alipay-sdk` (RSA2), for merchants with their own
 * Alipay account. Takes Alipay in CNY only.
 *
 * - One trade per attempt: `out_trade_no` comes from the attempt's idempotency key and its
 *   amount (see `outTradeNo`). A new attempt closes the previous trade first
 *   (`alipay.trade.close`) and fails with `conflict` when it was paid meanwhile.
 * - Page/wap pay trades only exist at Alipay once the customer opens the cashier: closing
 *   one that was never opened is a no-op, and its (signed, expiring) link stays usable until
 *   `time_expire`. A second payment that results is refunded by recoup like any duplicate.
 *   The QR flow creates the trade up front, so it can always be closed.
 * - An uncertain answer (`ACQ.SYSTEM_ERROR`, a timeout, a 5xx) is followed by
 *   `alipay.trade.query` before anything else; only then is the same request repeated.
 * - Refunds use `out_request_no` derived from the refund key (one per key, see
 *   `outRequestNo`): Alipay answers a repeat with the same refund.
 * - Notifies are form posts signed inside the body; `parseWebhook` verifies them with the
 *   SDK's `checkNotifySignV2` and accepts only `TRADE_SUCCESS`/`TRADE_FINISHED` as paid,
 *   after checking `app_id`, `out_trade_no` and `total_amount`.
 */
export class AlipayGateway implements PaymentGateway {
  readonly name = 'alipay';
  readonly #sdk: AlipaySdk;
  readonly #appId: string;
  readonly #notifyUrl: string;
  readonly #flow: 'page' | 'qr';
  readonly #clock: Clock;

  constructor(options: AlipayGatewayOptions) {
    if (!options.appId) throw new Error('AlipayGateway needs an appId');
    if (!options.notifyUrl) throw new Error('AlipayGateway needs a notifyUrl');
    this.#sdk = new AlipaySdk({
      appId: options.appId,
      privateKey: pkcs8Pem(options.privateKey),
      keyType: 'PKCS8',
      alipayPublicKey: spkiPem(options.alipayPublicKey),
      gateway: options.gatewayUrl ?? defaultGatewayUrl,
      timeout: options.timeoutMs ?? 10_000,
      camelcase: false,
      signType: 'RSA2',
    });
    this.#appId = options.appId;
    this.#notifyUrl = options.notifyUrl;
    this.#flow = options.flow ?? 'page';
    this.#clock = options.clock ?? systemClock;
  }

  supports(method: PaymentMethod, currency: string): boolean {
    return method === 'alipay' && currency.toUpperCase() === 'CNY';
  }

  async createPayment(request: PaymentRequest): Promise<CreatedPayment> {
    this.#validate(request);
    const tradeNo = outTradeNo(request.idempotencyKey, request.amount);
    const previous = request.previousGatewayPaymentId;
    if (previous && previous !== tradeNo) await this.#supersede(previous);

    const now = this.#clock.now();
    const common = {
      out_trade_no: tradeNo,
      total_amount: toYuan(request.amount),
      subject: subjectOf(request.description),
      passback_params: passbackParams(request.orderId, request.attemptId),
    };
    if (this.#flow === 'qr') {
      // Alipay takes whole minutes from the trade's creation. Counting them to the expiry's
      // minute keeps the QR code's announced expiry the same when the request is repeated.
      const expiresAt = new Date(Math.floor(request.expiresAt.getTime() / 60_000) * 60_000);
      const minutes = Math.floor((expiresAt.getTime() - now.getTime()) / 60_000);
      if (minutes < 1) {
        throw new GatewayError('invalid_request', 'The retry link expires within a minute', { code: 'expired' });
      }
      const bizContent = { ...common, timeout_express: `${minutes}m` };
      const answer = await this.#precreate(tradeNo, bizContent);
      const qrCode = typeof answer.qr_code === 'string' ? answer.qr_code : '';
      if (!qrCode) throw new GatewayError('invalid_request', 'Alipay returned no qr_code', { code: 'no_qr_code' });
      return {
        gatewayPaymentId: tradeNo,
        status: 'requires_action',
        nextAction: { type: 'qr', payload: qrCode, expiresAt },
      };
    }
    // Page and wap pay: a signed link to Alipay's cashier; nothing is sent to Alipay yet.
    if (request.expiresAt <= now) {
      throw new GatewayError('invalid_request', 'The retry link has expired', { code: 'expired' });
    }
    const mobile = request.device === 'mobile';
    const url = this.#sdk.pageExecute(mobile ? 'alipay.trade.wap.pay' : 'alipay.trade.page.pay', 'GET', {
      bizContent: {
        ...common,
        product_code: mobile ? 'QUICK_WAP_WAY' : 'FAST_INSTANT_TRADE_PAY',
        time_expire: beijingTime(request.expiresAt),
        ...(mobile ? { quit_url: request.returnUrl } : {}),
      },
      returnUrl: request.returnUrl,
      notifyUrl: this.#notifyUrl,
    });
    return { gatewayPaymentId: tradeNo, status: 'requires_action', nextAction: { type: 'redirect', url } };
  }

  async retrievePayment(gatewayPaymentId: string): Promise<PaymentStatus> {
    const trade = await this.#query(gatewayPaymentId);
    const refunded = trade.status === 'TRADE_CLOSED' && trade.paidAt !== undefined;
    return {
      gatewayPaymentId,
      status: statusOf(trade),
      amount: trade.amount,
      currency: 'CNY',
      method: 'alipay',
      ...(trade.paidAt && trade.status !== 'WAIT_BUYER_PAY' ? { paidAt: trade.paidAt } : {}),
      // A closed trade that had been paid was refunded in full.
      ...(refunded ? { amountRefunded: trade.amount } : {}),
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
      throw new GatewayError('invalid_request', `Alipay refunds in CNY, not ${input.currency}`, {
        code: 'currency_mismatch',
        gatewayPaymentId: input.gatewayPaymentId,
      });
    }
    const requestNo = outRequestNo(input.refundKey, input.keyVersion);
    const bizContent = {
      out_trade_no: input.gatewayPaymentId,
      refund_amount: toYuan(input.amount),
      out_request_no: requestNo,
      refund_reason: input.reason.slice(0, 256),
    };
    try {
      await this.#exec('write', 'alipay.trade.refund', bizContent, input.gatewayPaymentId);
    } catch (error) {
      if (!isGatewayError(error, 'unknown_outcome')) throw error;
      // Ask before repeating: the refund may have gone through.
      const done = await this.#refundDone(input.gatewayPaymentId, requestNo).catch(() => {
        throw error;
      });
      if (done) {
        return { gatewayRefundId: requestNo, status: 'succeeded' };
      }
      await this.#exec('write', 'alipay.trade.refund', bizContent, input.gatewayPaymentId);
    }
    // Alipay refunds synchronously: a 10000 answer (also for a repeated out_request_no) is done.
    return { gatewayRefundId: requestNo, status: 'succeeded' };
  }

  async parseWebhook(rawBody: Buffer, _headers: WebhookHeaders): Promise<GatewayEvent | null> {
    const params = formFields(rawBody);
    if (!params.sign) throw new GatewayError('invalid_signature', 'Alipay notify rejected: no sign');
    let verified: boolean;
    try {
      verified = this.#sdk.checkNotifySignV2(params);
    } catch (error) {
      throw new GatewayError('invalid_signature', 'Alipay notify rejected: unreadable signature', { cause: error });
    }
    if (!verified) throw new GatewayError('invalid_signature', 'Alipay notify rejected: bad signature');
    return toGatewayEvent(params, this.#appId);
  }

  /** Alipay reads only the body: `success` stops the resends, anything else (`fail`) asks for them. */
  webhookReply(result: WebhookResult): WebhookReply {
    return {
      status: result.ok ? 200 : result.status,
      contentType: 'text/plain; charset=utf-8',
      body: result.ok ? 'success' : 'fail',
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
        `Alipay direct takes Alipay in CNY, not ${request.method} in ${request.currency}`,
        {
          code: request.method === 'alipay' ? 'currency_not_supported' : 'method_not_supported',
          category: 'method_unsupported',
        },
      );
    }
  }

  /** Precreate, and on an uncertain answer query first: a paid or closed trade is not opened again. */
  async #precreate(tradeNo: string, bizContent: Record<string, string>): Promise<AlipayAnswer> {
    try {
      return await this.#exec('write', 'alipay.trade.precreate', bizContent, tradeNo, this.#notifyUrl);
    } catch (error) {
      if (!isGatewayError(error, 'unknown_outcome')) throw error;
      // If the query fails too, the outcome stays unknown (never `unavailable`: a new attempt
      // would open a second trade beside one that may exist).
      const trade = await this.#query(tradeNo).catch(() => {
        throw error;
      });
      if (trade.status !== 'WAIT_BUYER_PAY' && trade.status !== 'absent') {
        throw new GatewayError('conflict', `Alipay trade ${tradeNo} is already ${trade.status}`, {
          code: trade.status,
          gatewayPaymentId: tradeNo,
          cause: error,
        });
      }
      // Not paid: the same precreate again returns the same QR code.
      return await this.#exec('write', 'alipay.trade.precreate', bizContent, tradeNo, this.#notifyUrl);
    }
  }

  /** Closes the previous attempt's trade; a paid one is a conflict, as the port asks. */
  async #supersede(previous: string): Promise<void> {
    await this.#close(previous, 'supersede');
  }

  async #close(tradeNo: string, why: 'cancel' | 'supersede'): Promise<void> {
    try {
      await this.#exec('write', 'alipay.trade.close', { out_trade_no: tradeNo }, tradeNo);
      return;
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error;
      // Never opened (page pay not visited): nothing to close.
      if (error.code === 'ACQ.TRADE_NOT_EXIST') return;
      if (error.kind !== 'conflict' && error.kind !== 'unknown_outcome') throw error;
      // Already final, or an uncertain answer: the trade's state decides.
      const trade = await this.#query(tradeNo);
      if (trade.status === 'TRADE_CLOSED' || trade.status === 'absent') return;
      if (trade.status === 'TRADE_SUCCESS' || trade.status === 'TRADE_FINISHED') {
        if (why === 'cancel') return;
        throw new GatewayError('conflict', `Alipay trade ${tradeNo} is already paid`, {
          code: 'ACQ.TRADE_HAS_SUCCESS',
          gatewayPaymentId: tradeNo,
          cause: error,
        });
      }
      throw new GatewayError('unknown_outcome', `Alipay trade ${tradeNo} could not be closed`, {
        code: error.code ?? 'close_failed',
        gatewayPaymentId: tradeNo,
        cause: error,
      });
    }
  }

  async #query(tradeNo: string): Promise<Trade> {
    let answer: AlipayAnswer;
    try {
      answer = await this.#exec('read', 'alipay.trade.query', { out_trade_no: tradeNo }, tradeNo);
    } catch (error) {
      if (!(error instanceof GatewayError) || error.code !== 'ACQ.TRADE_NOT_EXIST') throw error;
      const amount = amountOfTradeNo(tradeNo);
      if (amount === undefined) {
        throw new GatewayError('invalid_request', `No Alipay trade ${tradeNo}`, { code: 'ACQ.TRADE_NOT_EXIST' });
      }
      return { status: 'absent', amount };
    }
    const status = answer.trade_status;
    const amount = fromYuan(typeof answer.total_amount === 'string' ? answer.total_amount : undefined);
    if (
      (status !== 'WAIT_BUYER_PAY' &&
        status !== 'TRADE_SUCCESS' &&
        status !== 'TRADE_FINISHED' &&
        status !== 'TRADE_CLOSED') ||
      amount === undefined
    ) {
      throw new GatewayError('unavailable', `Alipay answered an unreadable trade ${tradeNo}`, {
        code: 'unreadable_trade',
        gatewayPaymentId: tradeNo,
      });
    }
    const paidAt = fromBeijingTime(typeof answer.send_pay_date === 'string' ? answer.send_pay_date : undefined);
    return { status, amount, ...(paidAt ? { paidAt } : {}) };
  }

  async #refundDone(tradeNo: string, requestNo: string): Promise<boolean> {
    try {
      const answer = await this.#exec(
        'read',
        'alipay.trade.fastpay.refund.query',
        { out_trade_no: tradeNo, out_request_no: requestNo },
        tradeNo,
      );
      return answer.refund_status === 'REFUND_SUCCESS';
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'ACQ.TRADE_NOT_EXIST') return false;
      throw error;
    }
  }

  /** One signed call; answers are verified against Alipay's public key. Non-10000 answers throw. */
  async #exec(
    kind: AlipayCallKind,
    method: string,
    bizContent: Record<string, string>,
    gatewayPaymentId?: string,
    notifyUrl?: string,
  ): Promise<AlipayAnswer> {
    let answer: AlipayAnswer;
    try {
      answer = (await this.#sdk.exec(
        method,
        { bizContent, ...(notifyUrl ? { notifyUrl } : {}) },
        { validateSign: true },
      )) as AlipayAnswer;
    } catch (error) {
      throw toGatewayError(error, kind, gatewayPaymentId);
    }
    if (answer.code !== '10000') throw answerError(answer, kind, gatewayPaymentId);
    return answer;
  }
}

function statusOf(trade: Trade): GatewayPaymentStatus {
  switch (trade.status) {
    case 'TRADE_SUCCESS':
    case 'TRADE_FINISHED':
      return 'succeeded';
    case 'TRADE_CLOSED':
      // Closed after payment: refunded in full, but it was paid.
      return trade.paidAt ? 'succeeded' : 'cancelled';
    default:
      return 'requires_action';
  }
}

/**
 * The notify's form fields. A field sent twice is ambiguous for a signature (which `sign`?
 * which amount?): refused rather than guessed at.
 */
function formFields(rawBody: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) {
    if (Object.hasOwn(fields, key)) {
      throw new GatewayError('invalid_signature', `Alipay notify rejected: ${key} sent twice`);
    }
    fields[key] = value;
  }
  return fields;
}

/** Any form of RSA private key Alipay's tools hand out → PKCS#8 PEM, which the SDK is told to expect. */
function pkcs8Pem(key: string): string {
  const text = key.trim();
  const parsed = text.includes('-----BEGIN')
    ? createPrivateKey(text)
    : tryEach([
        () => createPrivateKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'pkcs8' }),
        () => createPrivateKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'pkcs1' }),
      ]);
  return String(parsed.export({ type: 'pkcs8', format: 'pem' })).trim();
}

function spkiPem(key: string): string {
  const text = key.trim();
  const parsed = text.includes('-----BEGIN')
    ? createPublicKey(text)
    : createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' });
  return String(parsed.export({ type: 'spki', format: 'pem' })).trim();
}

function tryEach<T>(attempts: Array<() => T>): T {
  let last: unknown;
  for (const attempt of attempts) {
    try {
      return attempt();
    } catch (error) {
      last = error;
    }
  }
  throw last;
}
