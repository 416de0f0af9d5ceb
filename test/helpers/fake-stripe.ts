import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import Stripe from 'stripe';

/**
 * A local stand-in for the slice of Stripe's API that StripeGateway calls, so the real SDK
 * runs against it through its `host` / `port` / `protocol` options: no network in tests.
 *
 * Implements, form-decoding bodies and queries like Stripe (bracket notation, indexed arrays):
 * - `POST /v1/payment_intents`, `GET|POST /v1/payment_intents/:id`, `POST …/:id/confirm`,
 *   `POST …/:id/cancel` (with `expand[]=latest_charge` on GET);
 * - `POST /v1/refunds`;
 * - `GET /v1/customers/:id`, for customers added with `addCustomer` (a deleted one answers as
 *   Stripe does, `{ id, object, deleted: true }`).
 *
 * Like Stripe it checks the bearer key (401), refuses unknown parameters (so the removed
 * `payment_method_types` is caught), enforces the PaymentIntent state machine
 * (`payment_intent_unexpected_state`), requires `return_url` for Alipay and
 * `payment_method_options[wechat_pay][client]` for WeChat Pay, and honours `Idempotency-Key`:
 * the same key with the same request replays the stored answer (`Idempotent-Replayed: true`),
 * with other parameters it is a 400 `idempotency_error`.
 *
 * The customer's side (paying on the Alipay page, scanning the QR code, Stripe.js for cards)
 * is `customerPays` / `customerFails`. Every state change records a Stripe-shaped event in
 * `events`; `signedWebhook` signs one with `Stripe-Signature` exactly as Stripe does.
 *
 * Faults (`failNext`): an error answer instead of processing (a `402` card error on confirm
 * is processed as a decline, as Stripe does, and stored for replay); `drop` processes the
 * request and then cuts the connection; `hang` processes it and never answers.
 */
export interface FakeStripe {
  /** Base URL, e.g. `http://127.0.0.1:43125`. */
  readonly url: string;
  readonly secretKey: string;
  readonly webhookSecret: string;
  /** What StripeGateway needs to talk to this server. */
  readonly gatewayOptions: {
    secretKey: string;
    webhookSecret: string;
    host: string;
    port: number;
    protocol: 'http';
  };
  /** Every request that reached the server, oldest first. */
  readonly requests: readonly FakeStripeRequest[];
  /** Every event Stripe would have sent, oldest first. */
  readonly events: readonly FakeStripeEvent[];
  paymentIntent(id: string): FakeJson | undefined;
  paymentIntentCount(): number;
  refundCount(): number;
  /** Stores a customer (`id` default: a new `cus_…`), as `GET /v1/customers/:id` then returns it. */
  addCustomer(customer: FakeJson): FakeJson;
  /** The next `count` requests of this operation (any, by default) get `fault`. */
  failNext(fault: FakeStripeFault, options?: { count?: number; on?: FakeStripeOperation }): void;
  /** The customer completes the payment (Alipay page, WeChat scan, card in Stripe.js). Returns the succeeded event. */
  customerPays(paymentIntentId: string, options?: { method?: string }): FakeStripeEvent;
  /** The customer's bank or wallet declines. Returns the payment_failed event. */
  customerFails(paymentIntentId: string, failure: FakeStripeFailure): FakeStripeEvent;
  /** The raw body and headers of a webhook delivery of `event`, signed like Stripe signs it. */
  signedWebhook(
    event: FakeStripeEvent,
    options?: { timestamp?: number; secret?: string },
  ): { rawBody: Buffer; headers: Record<string, string> };
  /** The latest recorded event of this type (for this object), if any. */
  lastEvent(type: string, objectId?: string): FakeStripeEvent | undefined;
  /** Forgets everything but the keys. */
  reset(): void;
  /** Stops the server, cutting held requests. Safe to call twice. */
  close(): Promise<void>;
}

export type FakeStripeOperation =
  'create' | 'update' | 'retrieve' | 'confirm' | 'cancel' | 'refund' | 'retrieve_customer';

export interface FakeStripeRequest {
  method: string;
  path: string;
  operation: FakeStripeOperation | undefined;
  /** The decoded form body (POST) or query (GET): nested objects and arrays. */
  params: FakeJson;
  /** The raw form body, to check exactly what went over the wire. */
  rawBody: string;
  idempotencyKey: string | undefined;
  stripeVersion: string | undefined;
  authorized: boolean;
  /** Undefined while held or when dropped. */
  status: number | undefined;
  replayed: boolean;
}

export interface FakeStripeFailure {
  code?: string;
  decline_code?: string;
  advice_code?: string;
  message?: string;
  /** Payment method type that failed. Default: the one attached, else `card`. */
  method?: string;
}

/** An error answer (`status` with Stripe's error fields), or a connection fault. */
export type FakeStripeFault = ({ status: number; type?: string } & Omit<FakeStripeFailure, 'method'>) | 'hang' | 'drop';

export type FakeJson = { [key: string]: unknown };

export interface FakeStripeEvent {
  id: string;
  object: 'event';
  type: string;
  created: number;
  api_version: string;
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  data: { object: FakeJson };
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: FakeJson,
  ) {
    super(String(body.message));
  }
}

const customerPath = /^\/v1\/customers\/([^/]+)$/;
const paymentIntentPath = /^\/v1\/payment_intents(?:\/([^/]+)(?:\/(confirm|cancel))?)?$/;
const knownMethodTypes = new Set(['card', 'alipay', 'wechat_pay']);
const createParams = new Set([
  'amount',
  'currency',
  'description',
  'metadata',
  'allowed_payment_method_types',
  'payment_method_options',
  'payment_method_data',
  'payment_method',
  'return_url',
  'receipt_email',
  'expand',
]);
const updateParams = new Set([
  'amount',
  'currency',
  'description',
  'metadata',
  'allowed_payment_method_types',
  'payment_method_options',
  'receipt_email',
  'expand',
]);
const confirmParams = new Set([
  'payment_method',
  'payment_method_data',
  'payment_method_options',
  'return_url',
  'expand',
]);
const cancelParams = new Set(['cancellation_reason', 'expand']);
const refundParams = new Set(['payment_intent', 'amount', 'reason', 'metadata', 'expand']);

export async function startFakeStripe(
  options: { secretKey?: string; webhookSecret?: string } = {},
): Promise<FakeStripe> {
  const secretKey = options.secretKey ?? `sk_test_${randomBytes(12).toString('hex')}`;
  const webhookSecret = options.webhookSecret ?? `whsec_${randomBytes(16).toString('hex')}`;
  const expectedAuth = Buffer.from(`Bearer ${secretKey}`);
  const requests: FakeStripeRequest[] = [];
  const events: FakeStripeEvent[] = [];
  const intents = new Map<string, FakeJson>();
  const charges = new Map<string, FakeJson>();
  const refunds = new Map<string, FakeJson>();
  const customers = new Map<string, FakeJson>();
  const idempotent = new Map<string, { fingerprint: string; status: number; body: FakeJson }>();
  const faults: { fault: FakeStripeFault; on: FakeStripeOperation | undefined }[] = [];
  const sockets = new Set<Socket>();
  let apiVersion = 'unknown';
  let baseUrl = '';

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, { error: { type: 'api_error', message: String(error) } });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rawBody = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const auth = Buffer.from(req.headers.authorization ?? '');
    const authorized = auth.length === expectedAuth.length && timingSafeEqual(auth, expectedAuth);
    const params = decodeForm(method === 'GET' ? url.search.slice(1) : rawBody);
    const idempotencyKey = header(req, 'idempotency-key');
    const stripeVersion = header(req, 'stripe-version');
    if (stripeVersion) apiVersion = stripeVersion;
    const route = routeOf(method, url.pathname);
    const record: FakeStripeRequest = {
      method,
      path: url.pathname,
      operation: route?.operation,
      params,
      rawBody,
      idempotencyKey,
      stripeVersion,
      authorized,
      status: undefined,
      replayed: false,
    };
    requests.push(record);
    const answer = (status: number, body: FakeJson, extraHeaders: Record<string, string> = {}) => {
      record.status = status;
      send(res, status, body, extraHeaders);
    };

    if (!authorized) {
      return answer(401, {
        error: { type: 'invalid_request_error', message: 'Invalid API Key provided: check the secret key.' },
      });
    }
    if (!route) {
      return answer(404, {
        error: { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${url.pathname}).` },
      });
    }

    // Stripe stores the answer per key and replays it; the same key with another request is refused.
    const fingerprint = `${method} ${url.pathname} ${rawBody}`;
    if (idempotencyKey && method === 'POST') {
      const stored = idempotent.get(idempotencyKey);
      if (stored) {
        if (stored.fingerprint !== fingerprint) {
          return answer(400, {
            error: {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            },
          });
        }
        record.replayed = true;
        return answer(stored.status, stored.body, { 'idempotent-replayed': 'true' });
      }
    }

    const faultIndex = faults.findIndex((entry) => entry.on === undefined || entry.on === route.operation);
    const fault = faultIndex >= 0 ? faults.splice(faultIndex, 1)[0]?.fault : undefined;

    let status: number;
    let body: FakeJson;
    if (fault && typeof fault === 'object') {
      if (fault.status === 402 && route.operation === 'confirm' && route.id && intents.has(route.id)) {
        // A decline is processed: the PaymentIntent records it, and the answer is stored for replay.
        const intent = requireIntent(route.id);
        const methodType = methodTypeOf(params) ?? currentMethodType(intent) ?? 'card';
        decline(intent, { ...fault, method: methodType });
        status = 402;
        body = { error: { ...cardError(intent), payment_intent: snapshot(intent) } };
      } else {
        return answer(fault.status, { error: faultBody(fault) });
      }
    } else {
      try {
        body = dispatch(route, params);
        status = 200;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        status = error.status;
        body = error.body;
      }
    }
    if (idempotencyKey && method === 'POST' && status !== 500) {
      idempotent.set(idempotencyKey, { fingerprint, status, body });
    }
    if (fault === 'hang') return; // processed, never answered
    if (fault === 'drop') {
      req.socket.destroy();
      return;
    }
    answer(status, body);
  }

  function dispatch(route: Route, params: FakeJson): FakeJson {
    switch (route.operation) {
      case 'create':
        return createIntent(params);
      case 'retrieve': {
        const intent = requireIntent(route.id);
        const expand = Array.isArray(params.expand) ? params.expand : [];
        const out = snapshot(intent);
        if (expand.includes('latest_charge') && typeof intent.latest_charge === 'string') {
          out.latest_charge = structuredClone(charges.get(intent.latest_charge) ?? null);
        }
        return out;
      }
      case 'update':
        return updateIntent(requireIntent(route.id), params);
      case 'confirm':
        return confirmIntent(requireIntent(route.id), params);
      case 'cancel':
        return cancelIntent(requireIntent(route.id), params);
      case 'refund':
        return createRefund(params);
      case 'retrieve_customer':
        return retrieveCustomer(route.id);
    }
  }

  function createIntent(params: FakeJson): FakeJson {
    rejectUnknown(params, createParams);
    const amount = positiveInteger(params.amount, 'amount');
    const currency = currencyParam(params.currency);
    const allowed = allowedTypes(params.allowed_payment_method_types) ?? ['card'];
    const id = `pi_${randomBytes(12).toString('hex')}`;
    const intent: FakeJson = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      currency,
      status: 'requires_payment_method',
      client_secret: `${id}_secret_${randomBytes(12).toString('hex')}`,
      description: typeof params.description === 'string' ? params.description : null,
      metadata: mergeMetadata({}, params.metadata),
      allowed_payment_method_types: allowed,
      payment_method_types: allowed,
      payment_method_options: optionsFor(allowed, params.payment_method_options, {}),
      payment_method: null,
      next_action: null,
      last_payment_error: null,
      latest_charge: null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic',
      confirmation_method: 'automatic',
      created: now(),
      livemode: false,
    };
    intents.set(id, intent);
    record('payment_intent.created', intent);
    return snapshot(intent);
  }

  function updateIntent(intent: FakeJson, params: FakeJson): FakeJson {
    rejectUnknown(params, updateParams);
    requireStatus(intent, ['requires_payment_method', 'requires_confirmation', 'requires_action'], 'update');
    if (params.amount !== undefined) intent.amount = positiveInteger(params.amount, 'amount');
    if (params.currency !== undefined) intent.currency = currencyParam(params.currency);
    if (typeof params.description === 'string') intent.description = params.description;
    if (params.metadata !== undefined) intent.metadata = mergeMetadata(intent.metadata as FakeJson, params.metadata);
    const allowed = allowedTypes(params.allowed_payment_method_types);
    if (allowed) {
      intent.allowed_payment_method_types = allowed;
      intent.payment_method_types = allowed;
    }
    intent.payment_method_options = optionsFor(
      intent.allowed_payment_method_types as string[],
      params.payment_method_options,
      intent.payment_method_options as FakeJson,
    );
    return snapshot(intent);
  }

  function confirmIntent(intent: FakeJson, params: FakeJson): FakeJson {
    rejectUnknown(params, confirmParams);
    requireStatus(intent, ['requires_payment_method', 'requires_confirmation', 'requires_action'], 'confirm');
    const type = methodTypeOf(params) ?? currentMethodType(intent);
    if (!type)
      throw invalidRequest(
        'parameter_missing',
        'You must provide a payment method to confirm this PaymentIntent.',
        'payment_method',
      );
    const allowed = intent.allowed_payment_method_types as string[];
    if (!allowed.includes(type)) {
      throw invalidRequest(
        'payment_intent_incompatible_payment_method',
        `The payment method type "${type}" is not allowed on this PaymentIntent.`,
        'payment_method',
      );
    }
    const options = optionsFor(allowed, params.payment_method_options, intent.payment_method_options as FakeJson);
    const returnUrl = typeof params.return_url === 'string' ? params.return_url : undefined;
    if (type === 'alipay' && !returnUrl)
      throw invalidRequest('parameter_missing', 'Missing required param: return_url.', 'return_url');
    const wechatClient = (options.wechat_pay as FakeJson | undefined)?.client;
    if (type === 'wechat_pay' && !wechatClient) {
      throw invalidRequest(
        'parameter_missing',
        'Missing required param: payment_method_options[wechat_pay][client].',
        'payment_method_options[wechat_pay][client]',
      );
    }
    intent.payment_method_options = options;
    intent.payment_method = newPaymentMethod(type, params.payment_method);
    intent.last_payment_error = null;
    if (type === 'alipay') {
      intent.status = 'requires_action';
      intent.next_action = {
        type: 'alipay_handle_redirect',
        alipay_handle_redirect: {
          url: `${baseUrl}/fake/alipay/${String(intent.id)}`,
          return_url: returnUrl,
          native_url: null,
          native_data: null,
        },
      };
    } else if (type === 'wechat_pay') {
      const code = randomBytes(8).toString('hex');
      intent.status = 'requires_action';
      intent.next_action = {
        type: 'wechat_pay_display_qr_code',
        wechat_pay_display_qr_code: {
          data: `weixin://wxpay/bizpayurl?pr=${code}`,
          hosted_instructions_url: `${baseUrl}/fake/wechat/${String(intent.id)}`,
          image_data_url: 'data:image/png;base64,iVBORw0KGgo=',
          image_url_png: `${baseUrl}/fake/wechat/${code}.png`,
          image_url_svg: `${baseUrl}/fake/wechat/${code}.svg`,
        },
      };
    } else {
      // A card confirmed server-side with a test payment method (pm_card_visa): paid at once.
      succeed(intent);
      return snapshot(intent);
    }
    record('payment_intent.requires_action', intent);
    return snapshot(intent);
  }

  function cancelIntent(intent: FakeJson, params: FakeJson): FakeJson {
    rejectUnknown(params, cancelParams);
    requireStatus(
      intent,
      ['requires_payment_method', 'requires_confirmation', 'requires_action', 'requires_capture'],
      'cancel',
    );
    intent.status = 'canceled';
    intent.canceled_at = now();
    intent.cancellation_reason = typeof params.cancellation_reason === 'string' ? params.cancellation_reason : null;
    intent.next_action = null;
    record('payment_intent.canceled', intent);
    return snapshot(intent);
  }

  function createRefund(params: FakeJson): FakeJson {
    rejectUnknown(params, refundParams);
    if (typeof params.payment_intent !== 'string') {
      throw invalidRequest('parameter_missing', 'Missing required param: payment_intent.', 'payment_intent');
    }
    const intent = requireIntent(params.payment_intent);
    if (intent.status !== 'succeeded' || typeof intent.latest_charge !== 'string') {
      throw invalidRequest(
        'payment_intent_unexpected_state',
        `This PaymentIntent (${String(intent.id)}) does not have a successful charge to refund.`,
        'payment_intent',
      );
    }
    const charge = charges.get(intent.latest_charge);
    if (!charge) throw new Error('charge missing');
    const remaining = Number(charge.amount) - Number(charge.amount_refunded);
    const amount = params.amount === undefined ? remaining : positiveInteger(params.amount, 'amount');
    if (remaining === 0) {
      throw invalidRequest('charge_already_refunded', `Charge ${String(charge.id)} has already been refunded.`);
    }
    if (amount > remaining) {
      throw invalidRequest(
        'amount_too_large',
        `Refund amount (${amount}) is greater than unrefunded amount on charge (${remaining}).`,
        'amount',
      );
    }
    const reason = params.reason;
    if (reason !== undefined && !['duplicate', 'fraudulent', 'requested_by_customer'].includes(String(reason))) {
      throw invalidRequest('parameter_invalid_string', `Invalid reason: ${String(reason)}`, 'reason');
    }
    const refund: FakeJson = {
      id: `re_${randomBytes(12).toString('hex')}`,
      object: 'refund',
      amount,
      currency: charge.currency,
      charge: charge.id,
      payment_intent: intent.id,
      status: 'succeeded',
      reason: reason ?? null,
      metadata: mergeMetadata({}, params.metadata),
      balance_transaction: null,
      created: now(),
    };
    refunds.set(String(refund.id), refund);
    charge.amount_refunded = Number(charge.amount_refunded) + amount;
    charge.refunded = charge.amount_refunded === charge.amount;
    record('refund.created', refund);
    record('charge.refunded', charge);
    return structuredClone(refund);
  }

  function retrieveCustomer(id: string | undefined): FakeJson {
    const customer = id === undefined ? undefined : customers.get(id);
    if (!customer) {
      throw new ApiError(404, {
        error: {
          type: 'invalid_request_error',
          code: 'resource_missing',
          param: 'id',
          message: `No such customer: '${id ?? ''}'`,
        },
      });
    }
    if (customer.deleted === true) return { id: customer.id, object: 'customer', deleted: true };
    return structuredClone(customer);
  }

  function succeed(intent: FakeJson, methodType?: string): void {
    const type = methodType ?? currentMethodType(intent) ?? 'card';
    if (currentMethodType(intent) !== type) intent.payment_method = newPaymentMethod(type, undefined);
    const charge: FakeJson = {
      id: `ch_${randomBytes(12).toString('hex')}`,
      object: 'charge',
      amount: intent.amount,
      amount_refunded: 0,
      currency: intent.currency,
      paid: true,
      refunded: false,
      status: 'succeeded',
      payment_intent: intent.id,
      payment_method: (intent.payment_method as FakeJson).id,
      created: now(),
    };
    charges.set(String(charge.id), charge);
    intent.status = 'succeeded';
    intent.amount_received = intent.amount;
    intent.latest_charge = charge.id;
    intent.next_action = null;
    intent.last_payment_error = null;
    record('charge.succeeded', charge);
    record('payment_intent.succeeded', intent);
  }

  function decline(intent: FakeJson, failure: FakeStripeFailure): FakeStripeEvent {
    const type = failure.method ?? currentMethodType(intent) ?? 'card';
    const paymentMethod = { id: `pm_${randomBytes(12).toString('hex')}`, object: 'payment_method', type };
    intent.status = 'requires_payment_method';
    intent.next_action = null;
    intent.payment_method = null;
    intent.last_payment_error = {
      type: 'card_error',
      code: failure.code ?? 'card_declined',
      ...(failure.decline_code ? { decline_code: failure.decline_code } : {}),
      ...(failure.advice_code ? { advice_code: failure.advice_code } : {}),
      message: failure.message ?? 'Your card was declined.',
      payment_method: paymentMethod,
    };
    return record('payment_intent.payment_failed', intent);
  }

  function cardError(intent: FakeJson): FakeJson {
    const error = intent.last_payment_error as FakeJson;
    return { ...error, doc_url: `https://stripe.com/docs/error-codes/${String(error.code)}` };
  }

  function record(type: string, object: FakeJson): FakeStripeEvent {
    const event: FakeStripeEvent = {
      id: `evt_${randomBytes(12).toString('hex')}`,
      object: 'event',
      type,
      created: now(),
      api_version: apiVersion,
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      data: { object: object.object === 'payment_intent' ? snapshot(object) : structuredClone(object) },
    };
    events.push(event);
    return event;
  }

  function requireIntent(id: string | undefined): FakeJson {
    const intent = id === undefined ? undefined : intents.get(id);
    if (!intent) {
      throw new ApiError(404, {
        error: {
          type: 'invalid_request_error',
          code: 'resource_missing',
          param: 'intent',
          message: `No such payment_intent: '${id ?? ''}'`,
        },
      });
    }
    return intent;
  }

  function requireStatus(intent: FakeJson, allowed: string[], action: string): void {
    if (allowed.includes(String(intent.status))) return;
    throw new ApiError(400, {
      error: {
        type: 'invalid_request_error',
        code: 'payment_intent_unexpected_state',
        message: `You cannot ${action} this PaymentIntent because it has a status of ${String(intent.status)}.`,
        payment_intent: snapshot(intent),
      },
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;

  return {
    url: baseUrl,
    secretKey,
    webhookSecret,
    gatewayOptions: { secretKey, webhookSecret, host: '127.0.0.1', port, protocol: 'http' },
    requests,
    events,
    paymentIntent: (id) => {
      const intent = intents.get(id);
      return intent && snapshot(intent);
    },
    paymentIntentCount: () => intents.size,
    refundCount: () => refunds.size,
    addCustomer(customer) {
      const stored: FakeJson = {
        id: `cus_${randomBytes(7).toString('hex')}`,
        object: 'customer',
        email: null,
        phone: null,
        name: null,
        preferred_locales: [],
        metadata: {},
        created: now(),
        livemode: false,
        ...structuredClone(customer),
      };
      customers.set(String(stored.id), stored);
      return structuredClone(stored);
    },
    failNext(fault, failOptions = {}) {
      for (let i = 0; i < (failOptions.count ?? 1); i++) faults.push({ fault, on: failOptions.on });
    },
    customerPays(id, payOptions = {}) {
      const intent = requireIntent(id);
      requireStatus(intent, ['requires_payment_method', 'requires_confirmation', 'requires_action'], 'pay');
      succeed(intent, payOptions.method);
      const event = events.at(-1);
      if (!event) throw new Error('no event');
      return event;
    },
    customerFails(id, failure) {
      const intent = requireIntent(id);
      requireStatus(intent, ['requires_payment_method', 'requires_confirmation', 'requires_action'], 'decline');
      return decline(intent, failure);
    },
    signedWebhook(event, signOptions = {}) {
      const payload = JSON.stringify(event);
      const signature = Stripe.webhooks.generateTestHeaderString({
        payload,
        secret: signOptions.secret ?? webhookSecret,
        ...(signOptions.timestamp === undefined ? {} : { timestamp: signOptions.timestamp }),
      });
      return {
        rawBody: Buffer.from(payload),
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature },
      };
    },
    lastEvent(type, objectId) {
      return events.findLast(
        (event) => event.type === type && (objectId === undefined || event.data.object.id === objectId),
      );
    },
    reset() {
      requests.length = 0;
      events.length = 0;
      intents.clear();
      charges.clear();
      refunds.clear();
      customers.clear();
      idempotent.clear();
      faults.length = 0;
    },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

interface Route {
  operation: FakeStripeOperation;
  id: string | undefined;
}

function routeOf(method: string, path: string): Route | undefined {
  if (method === 'POST' && path === '/v1/refunds') return { operation: 'refund', id: undefined };
  const customer = customerPath.exec(path);
  if (customer) {
    return method === 'GET' && customer[1]
      ? { operation: 'retrieve_customer', id: decodeURIComponent(customer[1]) }
      : undefined;
  }
  const match = paymentIntentPath.exec(path);
  if (!match) return undefined;
  const [, id, action] = match;
  if (method === 'GET' && id && !action) return { operation: 'retrieve', id: decodeURIComponent(id) };
  if (method !== 'POST') return undefined;
  if (!id) return { operation: 'create', id: undefined };
  const operation = action === 'confirm' || action === 'cancel' ? action : 'update';
  return { operation, id: decodeURIComponent(id) };
}

/**
 * Decodes a Stripe form body: `a[b][c]=v` → nested objects, `a[0]=x&a[1]=y` → arrays,
 * as the SDK encodes them.
 */
export function decodeForm(raw: string): FakeJson {
  const root: FakeJson = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const match = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
    if (!match) continue;
    const path = [match[1] ?? '', ...[...(match[2] ?? '').matchAll(/\[([^[\]]*)\]/g)].map((m) => m[1] ?? '')];
    let node: FakeJson = root;
    path.forEach((segment, index) => {
      if (index === path.length - 1) {
        node[segment] = value;
        return;
      }
      const next = node[segment];
      if (typeof next !== 'object' || next === null) node[segment] = {};
      node = node[segment] as FakeJson;
    });
  }
  return arraysFromIndexes(root) as FakeJson;
}

function arraysFromIndexes(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value as FakeJson).map(([key, inner]) => [key, arraysFromIndexes(inner)] as const);
  if (entries.length > 0 && entries.every(([key]) => /^\d+$/.test(key))) {
    return entries.sort(([a], [b]) => Number(a) - Number(b)).map(([, inner]) => inner);
  }
  return Object.fromEntries(entries);
}

function rejectUnknown(params: FakeJson, allowed: Set<string>): void {
  for (const key of Object.keys(params)) {
    if (!allowed.has(key)) throw invalidRequest('parameter_unknown', `Received unknown parameter: ${key}`, key);
  }
}

function invalidRequest(code: string, message: string, param?: string): ApiError {
  return new ApiError(400, { error: { type: 'invalid_request_error', code, message, ...(param ? { param } : {}) } });
}

function positiveInteger(value: unknown, param: string): number {
  const number = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(number) || number <= 0) {
    throw invalidRequest('parameter_invalid_integer', `Invalid integer: ${String(value)}`, param);
  }
  return number;
}

function currencyParam(value: unknown): string {
  if (typeof value !== 'string' || !/^[a-z]{3}$/.test(value)) {
    throw invalidRequest(
      'parameter_invalid_string',
      `Invalid currency: ${String(value)}. Stripe currencies are lowercase ISO codes.`,
      'currency',
    );
  }
  return value;
}

function allowedTypes(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0 || value.some((type) => !knownMethodTypes.has(String(type)))) {
    throw invalidRequest(
      'parameter_invalid_array',
      'Invalid allowed_payment_method_types',
      'allowed_payment_method_types',
    );
  }
  return value.map(String);
}

/** Payment method options, merged; options for a type the PaymentIntent does not allow are refused. */
function optionsFor(allowed: string[], given: unknown, current: FakeJson): FakeJson {
  const merged = structuredClone(current);
  if (given === undefined) return merged;
  if (typeof given !== 'object' || given === null) {
    throw invalidRequest('parameter_invalid_object', 'Invalid payment_method_options', 'payment_method_options');
  }
  for (const [type, options] of Object.entries(given as FakeJson)) {
    if (!allowed.includes(type)) {
      throw invalidRequest(
        'parameter_invalid_object',
        `payment_method_options[${type}] was given, but ${type} is not an allowed payment method type.`,
        `payment_method_options[${type}]`,
      );
    }
    merged[type] = { ...((merged[type] as FakeJson | undefined) ?? {}), ...(options as FakeJson) };
  }
  return merged;
}

function mergeMetadata(current: FakeJson, given: unknown): FakeJson {
  const merged = { ...current };
  if (typeof given !== 'object' || given === null) return merged;
  for (const [key, value] of Object.entries(given as FakeJson)) {
    if (value === '') delete merged[key];
    else merged[key] = String(value);
  }
  return merged;
}

function methodTypeOf(params: FakeJson): string | undefined {
  const data = params.payment_method_data;
  if (typeof data === 'object' && data !== null && typeof (data as FakeJson).type === 'string') {
    return String((data as FakeJson).type);
  }
  if (typeof params.payment_method === 'string' && params.payment_method.startsWith('pm_card')) return 'card';
  return undefined;
}

function currentMethodType(intent: FakeJson): string | undefined {
  const method = intent.payment_method;
  return typeof method === 'object' && method !== null ? String((method as FakeJson).type) : undefined;
}

function newPaymentMethod(type: string, given: unknown): FakeJson {
  return {
    id: typeof given === 'string' ? given : `pm_${randomBytes(12).toString('hex')}`,
    object: 'payment_method',
    type,
  };
}

function faultBody(fault: Exclude<FakeStripeFault, 'hang' | 'drop'>): FakeJson {
  const type =
    fault.type ??
    (fault.status === 402
      ? 'card_error'
      : fault.status === 429
        ? 'invalid_request_error'
        : fault.status >= 500
          ? 'api_error'
          : 'invalid_request_error');
  return {
    type,
    message: fault.message ?? `Programmed failure ${fault.status}`,
    ...(fault.code ? { code: fault.code } : fault.status === 429 ? { code: 'rate_limit' } : {}),
    ...(fault.decline_code ? { decline_code: fault.decline_code } : {}),
    ...(fault.advice_code ? { advice_code: fault.advice_code } : {}),
  };
}

/** The PaymentIntent as the API returns it: `payment_method` collapsed to its id. */
function snapshot(intent: FakeJson): FakeJson {
  const copy = structuredClone(intent);
  const method = copy.payment_method;
  if (typeof method === 'object' && method !== null) copy.payment_method = (method as FakeJson).id;
  return copy;
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function send(
  res: http.ServerResponse,
  status: number,
  body: FakeJson,
  extraHeaders: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'request-id': `req_${randomBytes(8).toString('hex')}`,
    ...extraHeaders,
  });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
