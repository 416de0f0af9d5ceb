import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../../../platform/clock.js';
import { paymentMethods, type PaymentMethod } from '../../../domain/vocabulary.js';
import type { Logger } from '../../../platform/logger.js';
import { classifyFailure } from '../../../recoveries/classify-failure.js';
import {
  GatewayError,
  gatewayEventTypes,
  singleHeader,
  type CreatedPayment,
  type GatewayEvent,
  type GatewayEventType,
  type PaymentGateway,
  type PaymentNextAction,
  type PaymentRequest,
  type PaymentStatus,
  type RefundRequest,
  type RefundResult,
  type WebhookHeaders,
} from '../../payment-gateway.js';
import { sandboxSignatureHeader, signSandboxPayload, verifySandboxSignature } from './sandbox-signature.js';
import { InMemorySandboxStore, type SandboxPayment, type SandboxRefund, type SandboxStore } from './sandbox-store.js';

export interface SandboxGatewayOptions {
  /** recoup's public base URL (no trailing slash needed); the hosted pages live under `${publicUrl}/sandbox/…`. */
  publicUrl: string;
  /** Secret the webhooks are signed with (HMAC-SHA256); it also keys the hosted pages' form tokens. */
  webhookSecret: string;
  /**
   * Where the sandbox POSTs its webhooks, e.g. `${publicUrl}/webhooks/payments/sandbox`.
   * Unset: none are sent, and recoup learns outcomes through `retrievePayment` only.
   */
  webhookUrl?: string;
  /** Default: the system clock. Drives expiry, timestamps and signature times. */
  clock?: Clock;
  /** Sends one delivery and throws unless it was accepted. Default: `fetch` POST, 5 s timeout, 2xx accepted. */
  dispatchWebhook?: (delivery: SandboxWebhookDelivery) => Promise<void>;
  /** Waits before each further delivery attempt after the first fails. Default 1 s, 5 s, 30 s, 2 min. */
  webhookRetryDelaysMs?: readonly number[];
  /** Default: InMemorySandboxStore (state is lost on restart). */
  store?: SandboxStore;
  /** Delivery failures are logged here. Default: not logged. */
  logger?: Pick<Logger, 'warn'>;
}

/** One webhook POST the sandbox makes. Signed afresh on every attempt, so retries stay within the tolerance. */
export interface SandboxWebhookDelivery {
  url: string;
  eventId: string;
  /** 1 for the first try. */
  attempt: number;
  body: string;
  headers: Record<string, string>;
}

/** What the customer does on a hosted sandbox page. */
export type SandboxOutcome = { type: 'succeed' } | { type: 'decline'; code: string } | { type: 'timeout' };

/**
 * Decline codes the hosted pages offer, per method, in each gateway's own vocabulary so
 * that they classify like the real thing (card codes as Stripe's, Alipay ACQ.* codes,
 * WeChat Pay codes).
 */
export const sandboxDeclineCodes: Readonly<Record<PaymentMethod, readonly { code: string; label: string }[]>> = {
  card: [
    { code: 'card_declined', label: 'Card declined (generic)' },
    { code: 'insufficient_funds', label: 'Insufficient funds' },
    { code: 'expired_card', label: 'Expired card' },
    { code: 'incorrect_cvc', label: 'Incorrect CVC' },
    { code: 'do_not_honor', label: 'Do not honor' },
    { code: 'authentication_required', label: '3-D Secure authentication required' },
    { code: 'card_not_supported', label: 'Card type not supported' },
    { code: 'fraudulent', label: 'Suspected fraud' },
    { code: 'processing_error', label: 'Processor error' },
  ],
  alipay: [
    { code: 'ACQ.BUYER_BALANCE_NOT_ENOUGH', label: 'Balance not enough' },
    { code: 'ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR', label: 'Daily limit reached' },
    { code: 'ACQ.BUYER_ENABLE_STATUS_FORBID', label: 'Buyer account restricted' },
    { code: 'ACQ.PAYMENT_REQUEST_HAS_RISK', label: 'Risk control rejection' },
    { code: 'ACQ.SYSTEM_ERROR', label: 'Alipay system error' },
  ],
  wechat_pay: [
    { code: 'NOTENOUGH', label: 'Balance not enough' },
    { code: 'PAYERROR', label: 'Payment error (generic)' },
    { code: 'ACCOUNTERROR', label: 'Account frozen' },
    { code: 'NOTSUPORTCARD', label: 'Bank card not supported' },
    { code: 'SYSTEMERROR', label: 'WeChat Pay system error' },
  ],
};

const defaultRetryDelaysMs = [1_000, 5_000, 30_000, 120_000] as const;
const dispatchTimeoutMs = 5_000;

/**
 * The embedded default gateway: payments that never touch money, completed by hand on
 * hosted pages that recoup itself serves (see `sandboxRoutes`). It behaves like a real
 * gateway where it matters to recoup: idempotent creation, superseded attempts closed,
 * expiry, refunds, and HMAC-signed webhooks delivered with retries.
 *
 * Card and Alipay redirect to `${publicUrl}/sandbox/checkout/:id` (styled per method);
 * WeChat Pay returns a QR code whose payload is `${publicUrl}/sandbox/scan/:id`, the page a
 * phone would show after scanning.
 */
export class SandboxGateway implements PaymentGateway {
  readonly name = 'sandbox';
  readonly #publicUrl: string;
  readonly #secret: string;
  readonly #webhookUrl: string | undefined;
  readonly #clock: Clock;
  readonly #dispatch: (delivery: SandboxWebhookDelivery) => Promise<void>;
  readonly #retryDelaysMs: readonly number[];
  readonly #store: SandboxStore;
  readonly #logger: Pick<Logger, 'warn'> | undefined;
  readonly #locks = new Map<string, Promise<void>>();
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(options: SandboxGatewayOptions) {
    if (!options.webhookSecret) throw new Error('SandboxGateway needs a webhookSecret');
    this.#publicUrl = options.publicUrl.replace(/\/+$/, '');
    this.#secret = options.webhookSecret;
    this.#webhookUrl = options.webhookUrl;
    this.#clock = options.clock ?? systemClock;
    this.#dispatch = options.dispatchWebhook ?? fetchDelivery;
    this.#retryDelaysMs = options.webhookRetryDelaysMs ?? defaultRetryDelaysMs;
    this.#store = options.store ?? new InMemorySandboxStore();
    this.#logger = options.logger;
  }

  supports(method: PaymentMethod, currency: string): boolean {
    return paymentMethods.includes(method) && /^[A-Za-z]{3}$/.test(currency);
  }

  async createPayment(request: PaymentRequest): Promise<CreatedPayment> {
    validateRequest(request, this.#clock.now());
    const created = await this.#exclusive(`key:${request.idempotencyKey}`, async () => {
      const existing = await this.#store.getPaymentByKey(request.idempotencyKey);
      if (existing) {
        if (
          existing.orderId !== request.orderId ||
          existing.amount !== request.amount ||
          existing.currency !== request.currency.toUpperCase() ||
          existing.method !== request.method
        ) {
          throw new GatewayError('conflict', `Idempotency key ${request.idempotencyKey} was used for another payment`, {
            code: 'idempotency_key_reused',
            gatewayPaymentId: existing.id,
          });
        }
        return { payment: await this.#exclusive(`pay:${existing.id}`, () => this.#current(existing.id)), events: [] };
      }
      const events: SandboxEvent[] = [];
      if (request.previousGatewayPaymentId) {
        events.push(...(await this.#supersede(request.previousGatewayPaymentId, request.orderId)));
      }
      const now = this.#clock.now();
      const payment: SandboxPayment = {
        id: `sbx_${randomBytes(12).toString('hex')}`,
        idempotencyKey: request.idempotencyKey,
        orderId: request.orderId,
        attemptId: request.attemptId,
        attemptNumber: request.attemptNumber,
        amount: request.amount,
        currency: request.currency.toUpperCase(),
        method: request.method,
        description: request.description,
        locale: request.customer.locale,
        returnUrl: request.returnUrl,
        expiresAt: new Date(request.expiresAt),
        device: request.device,
        status: 'requires_action',
        failureCode: undefined,
        failureCategory: undefined,
        createdAt: now,
        paidAt: undefined,
        closedAt: undefined,
        amountRefunded: 0,
      };
      await this.#store.savePayment(payment);
      return { payment, events };
    });
    for (const event of created.events) void this.#emit(event);
    const { payment } = created;
    if (!payment) throw new Error('sandbox payment vanished');
    return { gatewayPaymentId: payment.id, status: payment.status, nextAction: this.#nextAction(payment) };
  }

  async retrievePayment(gatewayPaymentId: string): Promise<PaymentStatus> {
    const payment = await this.#exclusive(`pay:${gatewayPaymentId}`, () => this.#current(gatewayPaymentId));
    if (!payment) throw notFound(gatewayPaymentId);
    return {
      gatewayPaymentId: payment.id,
      status: payment.status,
      amount: payment.amount,
      currency: payment.currency,
      method: payment.method,
      ...(payment.failureCode ? { failureCode: payment.failureCode } : {}),
      ...(payment.failureCategory ? { failureCategory: payment.failureCategory } : {}),
      ...(payment.paidAt ? { paidAt: payment.paidAt } : {}),
      amountRefunded: payment.amountRefunded,
    };
  }

  async cancelPayment(gatewayPaymentId: string): Promise<void> {
    const events = await this.#exclusive(`pay:${gatewayPaymentId}`, async () => {
      const payment = await this.#current(gatewayPaymentId);
      if (!payment) throw notFound(gatewayPaymentId);
      return this.#close(payment);
    });
    for (const event of events) void this.#emit(event);
  }

  async refund(input: RefundRequest): Promise<RefundResult> {
    const result = await this.#exclusive(`refund:${input.refundKey}`, async () => {
      const existing = await this.#store.getRefundByKey(input.refundKey);
      if (existing) {
        if (existing.paymentId !== input.gatewayPaymentId || existing.amount !== input.amount) {
          throw new GatewayError('conflict', `Refund key ${input.refundKey} was used for another refund`, {
            code: 'idempotency_key_reused',
            gatewayPaymentId: existing.paymentId,
          });
        }
        return { refund: existing, event: undefined };
      }
      return this.#exclusive(`pay:${input.gatewayPaymentId}`, async () => {
        const payment = await this.#current(input.gatewayPaymentId);
        if (!payment) throw notFound(input.gatewayPaymentId);
        if (input.currency.toUpperCase() !== payment.currency) {
          throw new GatewayError('invalid_request', `Refund currency ${input.currency} is not ${payment.currency}`, {
            code: 'currency_mismatch',
            gatewayPaymentId: payment.id,
          });
        }
        if (!Number.isSafeInteger(input.amount) || input.amount <= 0) {
          throw new GatewayError('invalid_request', 'Refund amount must be a positive integer', {
            code: 'invalid_amount',
            gatewayPaymentId: payment.id,
          });
        }
        if (payment.status !== 'succeeded') {
          throw new GatewayError('conflict', `Payment ${payment.id} is ${payment.status}, not paid`, {
            code: 'payment_not_paid',
            gatewayPaymentId: payment.id,
          });
        }
        if (input.amount > payment.amount - payment.amountRefunded) {
          throw new GatewayError('conflict', `Refund exceeds the ${payment.amount - payment.amountRefunded} left`, {
            code: 'amount_exceeds_refundable',
            gatewayPaymentId: payment.id,
          });
        }
        const now = this.#clock.now();
        const refund: SandboxRefund = {
          id: `sbx_re_${randomBytes(12).toString('hex')}`,
          refundKey: input.refundKey,
          paymentId: payment.id,
          amount: input.amount,
          currency: payment.currency,
          reason: input.reason,
          // The sandbox settles refunds at once; real gateways may report `pending` first.
          status: 'succeeded',
          createdAt: now,
        };
        await this.#store.saveRefund(refund);
        await this.#store.savePayment({ ...payment, amountRefunded: payment.amountRefunded + input.amount });
        return { refund, event: this.#event('refund.succeeded', payment, { refund }) };
      });
    });
    if (result.event) void this.#emit(result.event);
    return { gatewayRefundId: result.refund.id, status: result.refund.status };
  }

  async parseWebhook(rawBody: Buffer, headers: WebhookHeaders): Promise<GatewayEvent | null> {
    verifySandboxSignature(rawBody, singleHeader(headers, sandboxSignatureHeader), this.#secret, this.#clock.now());
    let body: SandboxEventBody;
    try {
      body = sandboxEventSchema.parse(JSON.parse(rawBody.toString('utf8')));
    } catch (error) {
      throw new GatewayError('invalid_request', 'Sandbox webhook body is not a sandbox event', { cause: error });
    }
    const { data } = body;
    const failureCode = data.failure_code ?? undefined;
    return {
      id: body.id,
      type: body.type,
      gatewayPaymentId: data.payment_id,
      orderId: data.order_id,
      attemptId: data.attempt_id,
      amount: data.amount,
      currency: data.currency,
      method: data.method,
      ...(failureCode
        ? { failureCode, failureCategory: classifyFailure({ gateway: codeFamily(data.method), code: failureCode }) }
        : {}),
      ...(data.refund_id ? { refundId: data.refund_id } : {}),
      occurredAt: new Date(body.created * 1000),
    };
  }

  // ---- what the hosted pages use ----

  /** The payment behind a hosted page (expired if its time is up), or undefined for an unknown id. */
  async checkout(gatewayPaymentId: string): Promise<SandboxPayment | undefined> {
    return this.#exclusive(`pay:${gatewayPaymentId}`, () => this.#current(gatewayPaymentId));
  }

  /**
   * Applies the customer's choice on a hosted page, then delivers the webhook. Resolves after
   * the first delivery attempt (further ones continue in the background), so a customer sent
   * back to recoup usually finds the outcome already recorded. Throws `conflict` if the
   * payment is no longer open, `invalid_request` for an unknown id or decline code.
   */
  async complete(gatewayPaymentId: string, outcome: SandboxOutcome): Promise<SandboxPayment> {
    const { payment, event } = await this.#exclusive(`pay:${gatewayPaymentId}`, async () => {
      const current = await this.#current(gatewayPaymentId);
      if (!current) throw notFound(gatewayPaymentId);
      if (current.status !== 'requires_action') {
        throw new GatewayError('conflict', `Payment ${current.id} is already ${current.status}`, {
          code: 'payment_not_open',
          gatewayPaymentId: current.id,
        });
      }
      const now = this.#clock.now();
      let next: SandboxPayment;
      if (outcome.type === 'succeed') {
        next = { ...current, status: 'succeeded', paidAt: now };
      } else {
        const code = outcome.type === 'timeout' ? 'expired' : outcome.code;
        if (outcome.type === 'decline' && !sandboxDeclineCodes[current.method].some((d) => d.code === code)) {
          throw new GatewayError('invalid_request', `Unknown ${current.method} decline code ${code}`, {
            code: 'invalid_decline_code',
          });
        }
        next = { ...current, ...this.#failure(current.method, code), closedAt: now };
      }
      await this.#store.savePayment(next);
      return {
        payment: next,
        event: this.#event(next.status === 'succeeded' ? 'payment.succeeded' : 'payment.failed', next),
      };
    });
    // Outside the lock: recoup's webhook handler may call retrievePayment on this very payment.
    await this.#emit(event);
    return payment;
  }

  /** A token for the hosted page's form, so that only someone who loaded the page can post it. */
  formToken(gatewayPaymentId: string): string {
    return createHmac('sha256', this.#secret).update(`sandbox-form:${gatewayPaymentId}`).digest('base64url');
  }

  checkFormToken(gatewayPaymentId: string, token: string | undefined): boolean {
    const expected = Buffer.from(this.formToken(gatewayPaymentId));
    const given = Buffer.from(token ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Stops pending webhook retries. Safe to call twice. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
  }

  // ---- internals ----

  #nextAction(payment: SandboxPayment): PaymentNextAction {
    if (payment.method === 'wechat_pay') {
      const scan = `${this.#publicUrl}/sandbox/scan/${payment.id}`;
      // The code holds the scan page's address: the page showing it may link there too.
      return { type: 'qr', payload: scan, expiresAt: payment.expiresAt, simulateUrl: scan };
    }
    return { type: 'redirect', url: `${this.#publicUrl}/sandbox/checkout/${payment.id}` };
  }

  /** Loads a payment, expiring it first if its page or QR code has timed out. Call under its lock. */
  async #current(id: string): Promise<SandboxPayment | undefined> {
    const payment = await this.#store.getPayment(id);
    if (!payment || payment.status !== 'requires_action' || this.#clock.now() < payment.expiresAt) return payment;
    const expired: SandboxPayment = {
      ...payment,
      ...this.#failure(payment.method, 'expired'),
      closedAt: this.#clock.now(),
    };
    await this.#store.savePayment(expired);
    void this.#emit(this.#event('payment.failed', expired));
    return expired;
  }

  /** Closes the previous attempt's payment before a new one opens. Call under the new key's lock. */
  async #supersede(previousId: string, orderId: string): Promise<SandboxEvent[]> {
    return this.#exclusive(`pay:${previousId}`, async () => {
      const previous = await this.#current(previousId);
      // Unknown (e.g. the in-memory store restarted): nothing is left that could be paid.
      if (!previous) return [];
      if (previous.orderId !== orderId) {
        throw new GatewayError('invalid_request', `Payment ${previousId} belongs to another order`, {
          code: 'previous_payment_mismatch',
        });
      }
      if (previous.status === 'succeeded') {
        throw new GatewayError('conflict', `The previous payment ${previousId} is already paid`, {
          code: 'previous_payment_succeeded',
          gatewayPaymentId: previousId,
        });
      }
      return this.#close(previous);
    });
  }

  async #close(payment: SandboxPayment): Promise<SandboxEvent[]> {
    if (payment.status !== 'requires_action' && payment.status !== 'pending') return [];
    const cancelled: SandboxPayment = { ...payment, status: 'cancelled', closedAt: this.#clock.now() };
    await this.#store.savePayment(cancelled);
    return [this.#event('payment.cancelled', cancelled)];
  }

  #failure(method: PaymentMethod, code: string): Pick<SandboxPayment, 'status' | 'failureCode' | 'failureCategory'> {
    return {
      status: 'failed',
      failureCode: code,
      failureCategory: classifyFailure({ gateway: codeFamily(method), code }),
    };
  }

  #event(type: GatewayEventType, payment: SandboxPayment, extra: { refund?: SandboxRefund } = {}): SandboxEvent {
    const body: SandboxEventBody = {
      id: `evt_sbx_${randomBytes(12).toString('hex')}`,
      type,
      created: Math.floor(this.#clock.now().getTime() / 1000),
      data: {
        payment_id: payment.id,
        order_id: payment.orderId,
        attempt_id: payment.attemptId,
        amount: extra.refund?.amount ?? payment.amount,
        currency: payment.currency,
        method: payment.method,
        failure_code: type === 'payment.failed' ? (payment.failureCode ?? null) : null,
        refund_id: extra.refund?.id ?? null,
      },
    };
    return { id: body.id, body: JSON.stringify(body) };
  }

  /** Delivers an event: resolves after the first attempt (true if accepted) and schedules retries. */
  async #emit(event: SandboxEvent): Promise<boolean> {
    const url = this.#webhookUrl;
    if (!url || this.#closed) return false;
    const attempt = async (number: number): Promise<void> => {
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'recoup-sandbox',
        [sandboxSignatureHeader.toLowerCase()]: signSandboxPayload(event.body, this.#secret, this.#clock.now()),
      };
      await this.#dispatch({ url, eventId: event.id, attempt: number, body: event.body, headers });
    };
    const retry = (number: number, error: unknown): void => {
      const delay = this.#retryDelaysMs[number - 2];
      this.#logger?.warn(
        { err: error, eventId: event.id, attempt: number - 1, giveUp: delay === undefined },
        'sandbox webhook delivery failed',
      );
      if (delay === undefined || this.#closed) return;
      const timer = setTimeout(() => {
        this.#retryTimers.delete(timer);
        attempt(number).catch((next: unknown) => retry(number + 1, next));
      }, delay);
      timer.unref();
      this.#retryTimers.add(timer);
    };
    try {
      await attempt(1);
      return true;
    } catch (error) {
      retry(2, error);
      return false;
    }
  }

  /** Runs `task` after every earlier task with the same key: one writer per payment / key at a time. */
  async #exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }
}

interface SandboxEvent {
  id: string;
  body: string;
}

/** The sandbox's webhook body: its own wire format, like any gateway's. */
const sandboxEventSchema = z.object({
  id: z.string().min(1),
  type: z.enum(gatewayEventTypes),
  created: z.number().int().nonnegative(),
  data: z.object({
    payment_id: z.string().min(1),
    order_id: z.string(),
    attempt_id: z.string(),
    amount: z.number().int().nonnegative(),
    currency: z.string().regex(/^[A-Z]{3}$/),
    method: z.enum(paymentMethods),
    failure_code: z.string().nullable(),
    refund_id: z.string().nullable(),
  }),
});
type SandboxEventBody = z.infer<typeof sandboxEventSchema>;

/** Whose codes a method's declines use, for classifyFailure. */
function codeFamily(method: PaymentMethod): 'stripe' | 'alipay' | 'wechat_pay' {
  return method === 'card' ? 'stripe' : method;
}

function validateRequest(request: PaymentRequest, now: Date): void {
  const problems: string[] = [];
  if (!request.idempotencyKey) problems.push('idempotencyKey is empty');
  if (!Number.isSafeInteger(request.amount) || request.amount <= 0) problems.push('amount must be a positive integer');
  if (!/^[A-Za-z]{3}$/.test(request.currency)) problems.push('currency must be an ISO 4217 code');
  if (!paymentMethods.includes(request.method)) problems.push(`unknown method ${String(request.method)}`);
  if (!/^https?:\/\//i.test(request.returnUrl) || !URL.canParse(request.returnUrl))
    problems.push('returnUrl must be an http(s) URL');
  if (!(request.expiresAt instanceof Date) || !(request.expiresAt.getTime() > now.getTime())) {
    problems.push('expiresAt must be in the future');
  }
  if (problems.length > 0) {
    throw new GatewayError('invalid_request', `Invalid sandbox payment: ${problems.join('; ')}`, {
      code: 'invalid_request',
    });
  }
}

function notFound(id: string): GatewayError {
  return new GatewayError('invalid_request', `No sandbox payment ${id}`, { code: 'not_found' });
}

async function fetchDelivery(delivery: SandboxWebhookDelivery): Promise<void> {
  const response = await fetch(delivery.url, {
    method: 'POST',
    headers: delivery.headers,
    body: delivery.body,
    redirect: 'error',
    signal: AbortSignal.timeout(dispatchTimeoutMs),
  });
  await response.arrayBuffer().catch(() => undefined);
  if (!response.ok) throw new Error(`webhook endpoint answered ${response.status}`);
}
