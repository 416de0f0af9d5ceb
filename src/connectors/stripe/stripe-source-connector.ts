import { createHash } from 'node:crypto';
import Stripe from 'stripe';
import { z } from 'zod';
import { normaliseAddress, storableEmail } from '../../domain/addresses.js';
import { parseEvent, type CustomerInput, type EventInput } from '../../domain/event-schema.js';
import { paymentMethods } from '../../domain/vocabulary.js';
import { metadataKeys } from '../../payments/gateways/stripe/stripe-events.js';
import { systemClock, type Clock } from '../../platform/clock.js';
import { isRecoupError, RecoupError } from '../../platform/errors.js';
import { isKnownCurrency, minorUnitDigits } from '../../platform/format-amount.js';
import type { ConnectorMapping, ConnectorRequest, ShopConnector } from '../shop-connector.js';
import type { StripeSourceConfig } from './stripe-source-config.js';

export interface StripeSourceDeps {
  /** Judges the age of a webhook signature. Default: the system clock. */
  clock?: Clock;
  /** Timeout of one customer fetch, in ms. Default 10 000. */
  customerTimeoutMs?: number;
}

/** Stripe's own default: an older signature is treated as a replay. */
const signatureToleranceSeconds = 300;

/**
 * The shop's own Stripe account as a source of orders: a failed PaymentIntent starts a recovery,
 * an expired Checkout Session starts an abandoned-checkout one, and a success or cancellation ends
 * them.
 *
 * There is no write-back: the shop's Stripe account already knows of every payment it took, and a
 * payment recoup collects goes through recoup's own gateway account, not through the shop's Stripe
 * objects, so there is nothing to tell it.
 */
export function createStripeSourceConnector(config: StripeSourceConfig, deps: StripeSourceDeps = {}): ShopConnector {
  return new StripeSourceConnector(config, deps);
}

class StripeSourceConnector implements ShopConnector {
  readonly platform = 'stripe';
  readonly writeBack = undefined;
  readonly #webhookSecret: string;
  readonly #clock: Clock;
  readonly #stripe: Stripe | undefined;

  constructor(config: StripeSourceConfig, deps: StripeSourceDeps) {
    this.#webhookSecret = config.webhookSecret;
    this.#clock = deps.clock ?? systemClock;
    this.#stripe = config.secretKey
      ? stripeClient(config.secretKey, config.apiUrl, deps.customerTimeoutMs ?? 10_000)
      : undefined;
  }

  verify(request: ConnectorRequest): void {
    const signature = singleHeader(request.headers['stripe-signature']);
    if (!signature) throw new RecoupError('unauthorized', 'Stripe webhook without a Stripe-Signature header');
    try {
      Stripe.webhooks.constructEvent(
        request.rawBody,
        signature,
        this.#webhookSecret,
        signatureToleranceSeconds,
        undefined,
        this.#clock.now().getTime(),
      );
    } catch (error) {
      if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
        throw new RecoupError('unauthorized', `Stripe webhook rejected: ${error.message}`, { cause: error });
      }
      // Signed, but not JSON: the signature holds, and map rejects the content.
      if (!(error instanceof SyntaxError)) throw error;
    }
  }

  describe(request: ConnectorRequest): { deliveryId: string; topic: string } {
    const envelope = looseEnvelope.safeParse(parseJson(request.rawBody));
    const digest = createHash('sha256').update(request.rawBody).digest('hex').slice(0, 16);
    return {
      deliveryId: envelope.success && envelope.data.id ? envelope.data.id : `body-${digest}`,
      topic: envelope.success && envelope.data.type ? envelope.data.type : 'unknown',
    };
  }

  /**
   * Never throws for content. It throws RecoupError('unavailable') in one case: the event needs
   * the customer's contact, names only a `cus_…` id, and fetching it failed for a reason that
   * passes (a 5xx, a timeout, rate limiting). Stripe does not deliver a 2xx again, so answering
   * `rejected` would lose the order for good; the 503 makes Stripe redeliver it (for up to three
   * days), when the fetch will likely work.
   */
  async map(request: ConnectorRequest): Promise<ConnectorMapping> {
    const parsed = envelopeSchema.safeParse(parseJson(request.rawBody));
    if (!parsed.success) return { kind: 'rejected', reason: 'not a Stripe event (no id, type, created, data.object)' };
    const event = parsed.data;
    try {
      const draft = draftOf(event);
      if ('ignored' in draft) return { kind: 'ignored', reason: draft.ignored };
      return { kind: 'events', events: [await this.#complete(event, draft)] };
    } catch (error) {
      if (error instanceof Rejection) return { kind: 'rejected', reason: error.message };
      throw error;
    }
  }

  async #complete(event: Envelope, draft: Draft): Promise<EventInput> {
    let contact = draft.contact;
    let fetchFailure: FetchFailure | undefined;
    if (draft.stripeCustomerId && !draft.customerExpanded && this.#stripe) {
      const fetched = await fetchCustomer(this.#stripe, draft.stripeCustomerId);
      if ('failed' in fetched) fetchFailure = fetched;
      else contact = merge(contact, fetched);
    }
    if (draft.needsContact && !contact.email && !contact.phone) {
      if (fetchFailure?.transient) {
        throw new RecoupError(
          'unavailable',
          `Stripe customer ${draft.stripeCustomerId ?? ''} could not be fetched (${fetchFailure.failed}); Stripe will deliver ${event.id} again`,
        );
      }
      const named = draft.stripeCustomerId ? `customer ${draft.stripeCustomerId}` : undefined;
      const why = !named
        ? 'it names no Stripe customer'
        : fetchFailure
          ? `fetching ${named} failed (${fetchFailure.failed})`
          : !this.#stripe && !draft.customerExpanded
            ? `${named} is not fetched without STRIPE_SOURCE_SECRET_KEY`
            : `${named} has none either`;
      throw new Rejection(`no email or phone: the event has none, and ${why}`);
    }
    const customerId = customerIdOf(draft.stripeCustomerId, contact);
    if (!customerId) throw new Rejection('no customer: the event has no email, phone or Stripe customer');
    const customer: CustomerInput = {
      id: customerId,
      ...(contact.name ? { name: contact.name } : {}),
      ...(contact.email ? { email: contact.email } : {}),
      ...(contact.phone ? { phone: contact.phone } : {}),
      ...(contact.locale ? { locale: contact.locale } : {}),
    };
    const mapped = {
      id: `stripe-${event.id}`,
      type: draft.type,
      occurred_at: new Date(event.created * 1000).toISOString(),
      order: { ...draft.order, customer },
      ...(draft.payment ? { payment: draft.payment } : {}),
    };
    // What the intake would refuse (text Postgres cannot store, say) is a rejection here, with the fields.
    try {
      return parseEvent(mapped);
    } catch (error) {
      if (!isRecoupError(error, 'validation')) throw error;
      throw new Rejection(`not a valid order: ${error.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
    }
  }
}

/** The content is not something recoup can take: answered 2xx, recorded with this reason. */
class Rejection extends Error {}

function stripeClient(secretKey: string, apiUrl: string | undefined, timeoutMs: number): Stripe {
  const api = apiUrl ? new URL(apiUrl) : undefined;
  return new Stripe(secretKey, {
    ...(api
      ? {
          host: api.hostname,
          port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)),
          protocol: api.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
    timeout: timeoutMs,
    // One retry of a read is cheap; Stripe redelivers the whole event after a 503 anyway.
    maxNetworkRetries: 1,
    telemetry: false,
    appInfo: { name: 'recoup' },
  });
}

// ---------------------------------------------------------------------------------------------
// Payloads: only the fields recoup reads, each as loose as Stripe's API reference allows.

const text = z.string().nullish();
const metadataSchema = z.record(z.string(), z.string()).nullish();
const contactSchema = z.object({ email: text, phone: text, name: text }).nullish();
const customerObjectSchema = z.object({
  id: z.string(),
  deleted: z.boolean().optional(),
  email: text,
  phone: text,
  name: text,
  preferred_locales: z.array(z.string()).nullish(),
});
const customerField = z.union([z.string(), customerObjectSchema]).nullish();
const idField = z.union([z.string(), z.object({ id: z.string() })]).nullish();

const paymentIntentSchema = z.object({
  id: z.string().min(1),
  amount: z.unknown(),
  amount_received: z.unknown(),
  currency: z.unknown(),
  description: text,
  metadata: metadataSchema,
  receipt_email: text,
  customer: customerField,
  shipping: z.object({ name: text, phone: text }).nullish(),
  payment_method_types: z.array(z.string()).nullish(),
  last_payment_error: z
    .object({
      code: text,
      decline_code: text,
      message: text,
      payment_method: z.object({ type: text, billing_details: contactSchema }).nullish(),
    })
    .nullish(),
});
type PaymentIntent = z.output<typeof paymentIntentSchema>;

const checkoutSessionSchema = z.object({
  id: z.string().min(1),
  amount_total: z.unknown(),
  currency: z.unknown(),
  metadata: metadataSchema,
  customer: customerField,
  customer_email: text,
  customer_details: contactSchema,
  payment_intent: idField,
  payment_status: text,
  recovered_from: text,
  locale: text,
  consent: z.object({ promotions: text }).nullish(),
  after_expiration: z.object({ recovery: z.object({ url: text }).nullish() }).nullish(),
});
type CheckoutSession = z.output<typeof checkoutSessionSchema>;

const envelopeSchema = z.object({
  id: z.string().min(1).max(100),
  type: z.string().min(1),
  created: z.number().int().positive(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});
type Envelope = z.output<typeof envelopeSchema>;

const looseEnvelope = z.object({ id: z.string().max(100).optional(), type: z.string().max(100).optional() });

function parseJson(rawBody: Buffer): unknown {
  try {
    return JSON.parse(rawBody.toString('utf8'));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Mapping

interface Contact {
  email?: string;
  phone?: string;
  name?: string;
  locale?: string;
}

interface Draft {
  type: 'order.created' | 'payment.failed' | 'payment.succeeded' | 'order.cancelled';
  order: { id: string; amount: number; currency: string; description?: string; payment_url?: string };
  payment?: NonNullable<EventInput['payment']>;
  contact: Contact;
  stripeCustomerId: string | undefined;
  /** The event carries the customer itself, not only its id: nothing to fetch. */
  customerExpanded: boolean;
  /** It starts or feeds a recovery, so recoup must be able to reach the customer. */
  needsContact: boolean;
}

function draftOf(event: Envelope): Draft | { ignored: string } {
  switch (event.type) {
    case 'payment_intent.payment_failed':
      return intentDraft('payment.failed', paymentIntentOf(event));
    case 'payment_intent.succeeded':
      return intentDraft('payment.succeeded', paymentIntentOf(event));
    case 'payment_intent.canceled':
      return intentDraft('order.cancelled', paymentIntentOf(event));
    case 'checkout.session.expired':
      return expiredSessionDraft(checkoutSessionOf(event));
    case 'checkout.session.completed':
      return completedSessionDraft(checkoutSessionOf(event));
    default:
      return { ignored: `recoup does not act on Stripe's ${event.type}` };
  }
}

function paymentIntentOf(event: Envelope): PaymentIntent {
  const parsed = paymentIntentSchema.safeParse(event.data.object);
  if (!parsed.success) {
    throw new Rejection(`${event.type} without a readable PaymentIntent (${fieldsOf(parsed.error)})`);
  }
  return parsed.data;
}

function checkoutSessionOf(event: Envelope): CheckoutSession {
  const parsed = checkoutSessionSchema.safeParse(event.data.object);
  if (!parsed.success) {
    throw new Rejection(`${event.type} without a readable Checkout Session (${fieldsOf(parsed.error)})`);
  }
  return parsed.data;
}

function fieldsOf(error: z.ZodError): string {
  return [...new Set(error.issues.map((issue) => issue.path.join('.') || '(object)'))].join(', ');
}

function intentDraft(type: Draft['type'], intent: PaymentIntent): Draft | { ignored: string } {
  // With one Stripe account as both the shop and recoup's gateway, recoup's own retry attempts
  // show up here too; their outcome reaches recoup through the gateway's webhook.
  if (intent.metadata?.[metadataKeys.attemptId]) {
    return { ignored: `PaymentIntent ${intent.id} is one recoup created for a retry` };
  }
  const { currency, toMinor } = moneyOf(intent.currency);
  const error = intent.last_payment_error;
  const order = {
    id: orderIdOf(intent.metadata, intent.id),
    amount: toMinor(intent.amount, 'amount'),
    currency,
    ...(intent.description?.trim() ? { description: intent.description.trim().slice(0, 500) } : {}),
  };
  const methodType = error?.payment_method?.type ?? intent.payment_method_types?.[0];
  const payment: NonNullable<EventInput['payment']> = {
    gateway: 'stripe',
    ...(methodType ? { method: methodOf(methodType) } : {}),
  };
  if (type === 'payment.failed') {
    const code = error?.decline_code || error?.code;
    if (code) payment.failure_code = code.slice(0, 100);
    if (error?.message) payment.failure_message = error.message.slice(0, 1000);
  }
  if (type === 'payment.succeeded' && typeof intent.amount_received === 'number' && intent.amount_received > 0) {
    payment.amount = toMinor(intent.amount_received, 'amount_received');
  }
  const billing = error?.payment_method?.billing_details;
  const { customerContact, ...customerRef } = stripeCustomerOf(intent.customer);
  return {
    type,
    order,
    payment,
    contact: merge(
      contactOf({ email: intent.receipt_email }),
      contactOf(billing ?? {}),
      contactOf(intent.shipping ?? {}),
      customerContact,
    ),
    ...customerRef,
    needsContact: type === 'payment.failed',
  };
}

function expiredSessionDraft(session: CheckoutSession): Draft | { ignored: string } {
  // Checkout's consent collection: the customer declined promotional messages, and Stripe asks
  // that recovery messages respect that.
  if (session.consent?.promotions === 'opt_out') {
    return { ignored: `Checkout Session ${session.id} expired, and its customer declined promotional messages` };
  }
  const draft = sessionDraft('order.created', session);
  const url = session.after_expiration?.recovery?.url;
  if (url && /^https?:\/\//.test(url) && url.length <= 2_000) draft.order.payment_url = url;
  return draft;
}

function completedSessionDraft(session: CheckoutSession): Draft | { ignored: string } {
  // `unpaid`: a delayed method is still settling; `no_payment_required`: nothing was owed.
  if (session.payment_status !== 'paid') {
    return {
      ignored: `Checkout Session ${session.id} completed with payment_status ${session.payment_status ?? 'unset'}`,
    };
  }
  return sessionDraft('payment.succeeded', session);
}

/**
 * A Checkout Session's order: `metadata.order_id`; else, for a session made from an expired one's
 * recovery URL, the expired session (recorded under its own id: since API version 2022-08-01 a
 * session has no PaymentIntent until the customer pays, so an expired one has none), which its
 * payment then ends; else its PaymentIntent, the id that PaymentIntent's own events carry; else
 * the session itself.
 */
function sessionDraft(type: 'order.created' | 'payment.succeeded', session: CheckoutSession): Draft {
  const { currency, toMinor } = moneyOf(session.currency);
  const intentId = typeof session.payment_intent === 'string' ? session.payment_intent : session.payment_intent?.id;
  const { customerContact, ...customerRef } = stripeCustomerOf(session.customer);
  const amount = toMinor(session.amount_total, 'amount_total');
  return {
    type,
    order: {
      id: orderIdOf(session.metadata, session.recovered_from || intentId || session.id),
      amount,
      currency,
    },
    ...(type === 'payment.succeeded' ? { payment: { gateway: 'stripe', amount } } : {}),
    contact: merge(
      contactOf(session.customer_details ?? {}),
      contactOf({ email: session.customer_email, locale: session.locale }),
      customerContact,
    ),
    ...customerRef,
    needsContact: type === 'order.created',
  };
}

function orderIdOf(metadata: Record<string, string> | null | undefined, fallback: string): string {
  // The shop's own order number, where its integration tags its Stripe objects with it.
  const id = metadata?.order_id?.trim() || fallback;
  if (id.length > 200) throw new Rejection(`order id ${id.slice(0, 40)}… is longer than 200 characters`);
  return id;
}

function methodOf(stripeType: string): string {
  const known = paymentMethods.find((method) => method === stripeType);
  // Another Stripe type (link, klarna, …) is kept as Stripe names it, for the order's story.
  return known ?? stripeType.slice(0, 50);
}

// ---------------------------------------------------------------------------------------------
// Money

/** Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal). */
const stripeZeroDecimal = new Set('BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF'.split(' '));
/** Stripe's three-decimal currencies; every other one has two in Stripe's API. */
const stripeThreeDecimal = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/**
 * Stripe amounts are in Stripe's minor units, which are not always recoup's (ISO's, as
 * src/platform/format-amount.ts knows them): ISK, HUF, IDR, COP and a few more stay two-decimal
 * in Stripe's API for backward compatibility (ISK 100 = 1 króna), where recoup counts whole
 * units. The amount is rescaled, and refused when it holds a fraction recoup cannot.
 */
function moneyOf(raw: unknown): { currency: string; toMinor: (amount: unknown, field: string) => number } {
  const currency = typeof raw === 'string' ? raw.toUpperCase() : '';
  if (!isKnownCurrency(currency)) throw new Rejection(`unknown currency ${JSON.stringify(raw ?? null)}`);
  const stripeDigits = stripeZeroDecimal.has(currency) ? 0 : stripeThreeDecimal.has(currency) ? 3 : 2;
  const shift = minorUnitDigits(currency) - stripeDigits;
  return {
    currency,
    toMinor(amount, field) {
      if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
        throw new Rejection(`${field} ${JSON.stringify(amount ?? null)} is not a positive whole amount`);
      }
      if (shift >= 0) return amount * 10 ** shift;
      const divisor = 10 ** -shift;
      if (amount % divisor !== 0) {
        throw new Rejection(`${field} ${amount} holds a fraction of a ${currency} minor unit`);
      }
      return amount / divisor;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Customers

const localePattern = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;
const e164 = /^\+[1-9]\d{6,14}$/;

function contactOf(fields: {
  email?: string | null | undefined;
  phone?: string | null | undefined;
  name?: string | null | undefined;
  locale?: string | null | undefined;
}): Contact {
  const email = fields.email ? storableEmail(fields.email) : undefined;
  const phone = fields.phone ? normaliseAddress('sms', fields.phone).replace(/^00/, '+') : '';
  const name = fields.name?.trim().slice(0, 200) ?? '';
  const locale = fields.locale ?? '';
  return {
    ...(email ? { email } : {}),
    // Only a number with its country code: a national number cannot be dialled without guessing.
    ...(e164.test(phone) ? { phone } : {}),
    ...(name ? { name } : {}),
    ...(localePattern.test(locale) ? { locale } : {}),
  };
}

/** The first of each field, in the order given. */
function merge(...contacts: Contact[]): Contact {
  const merged: Contact = {};
  for (const contact of contacts) {
    merged.email ??= contact.email;
    merged.phone ??= contact.phone;
    merged.name ??= contact.name;
    merged.locale ??= contact.locale;
  }
  return Object.fromEntries(Object.entries(merged).filter(([, value]) => value !== undefined)) as Contact;
}

interface StripeCustomerRef {
  stripeCustomerId: string | undefined;
  customerExpanded: boolean;
  customerContact: Contact;
}

function stripeCustomerOf(field: z.output<typeof customerField>): StripeCustomerRef {
  if (!field) return { stripeCustomerId: undefined, customerExpanded: false, customerContact: {} };
  if (typeof field === 'string') {
    return { stripeCustomerId: field || undefined, customerExpanded: false, customerContact: {} };
  }
  return {
    stripeCustomerId: field.id,
    customerExpanded: true,
    customerContact: field.deleted ? {} : customerContactOf(field),
  };
}

function customerContactOf(customer: z.output<typeof customerObjectSchema>): Contact {
  return contactOf({ ...customer, locale: customer.preferred_locales?.[0] });
}

function customerIdOf(stripeCustomerId: string | undefined, contact: Contact): string | undefined {
  if (stripeCustomerId) return `stripe-${stripeCustomerId}`.slice(0, 200);
  // Hashed: a customer id travels through logs and reports, where the address must not.
  if (contact.email) return `stripe-email-${digest(contact.email)}`;
  if (contact.phone) return `stripe-phone-${digest(contact.phone)}`;
  return undefined;
}

function digest(address: string): string {
  return createHash('sha256').update(address, 'utf8').digest('hex').slice(0, 32);
}

interface FetchFailure {
  /** Why, for logs and the rejection: Stripe's error type, status and code, never its message. */
  failed: string;
  /** A 5xx, a timeout or rate limiting: the same fetch later will likely work. */
  transient: boolean;
}

async function fetchCustomer(stripe: Stripe, id: string): Promise<Contact | FetchFailure> {
  try {
    const customer = customerObjectSchema.safeParse(await stripe.customers.retrieve(id));
    if (!customer.success) return { failed: 'an unreadable customer', transient: false };
    if (customer.data.deleted) return { failed: 'the customer was deleted', transient: false };
    return customerContactOf(customer.data);
  } catch (error) {
    if (!(error instanceof Stripe.errors.StripeError)) throw error;
    const transient =
      error instanceof Stripe.errors.StripeConnectionError ||
      error instanceof Stripe.errors.StripeAPIError ||
      error instanceof Stripe.errors.StripeRateLimitError ||
      (error.statusCode ?? 0) >= 500;
    const failed = [error.type, error.statusCode, error.code].filter((part) => part !== undefined).join(' ');
    return { failed, transient };
  }
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
