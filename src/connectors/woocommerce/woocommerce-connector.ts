import { createHash } from 'node:crypto';
import { z } from 'zod';
import { storableEmail } from '../../domain/addresses.js';
import type { EventInput } from '../../domain/event-schema.js';
import { decimalToMinor, isKnownCurrency } from '../../platform/format-amount.js';
import { verifyBodyHmac } from '../body-signature.js';
import { RecoupError } from '../../platform/errors.js';
import type { ConnectorMapping, ConnectorRequest, ShopConnector } from '../shop-connector.js';
import { createWoocommerceApi, type WoocommerceApiDeps } from './woocommerce-api.js';
import type { WoocommerceConfig } from './woocommerce-config.js';
import { toE164 } from './woocommerce-phone.js';
import { createWoocommerceWriteBack } from './woocommerce-write-back.js';

/**
 * WooCommerce's order webhooks (topics `order.created`, `order.updated`, `order.restored`; REST
 * API v3 order objects), signed with `X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the body
 * with the webhook's secret.
 */
export type WoocommerceConnectorDeps = WoocommerceApiDeps;

export function createWoocommerceConnector(
  config: WoocommerceConfig,
  deps: WoocommerceConnectorDeps = {},
): ShopConnector {
  return {
    platform: 'woocommerce',
    verify: (request) => verifyWoocommerce(request, config.webhookSecret),
    describe: describeWoocommerce,
    map: async (request) => mapWoocommerce(request),
    writeBack: config.api
      ? createWoocommerceWriteBack(createWoocommerceApi(config.api, deps), {
          // WooCommerce's own payment page takes only pending and failed orders: a held order
          // could not be paid there.
          holdPendingOrders: config.linkMode === 'recoup',
        })
      : undefined,
  };
}

/**
 * The ping WooCommerce posts when a webhook is saved: `webhook_id=<n>`, form-encoded and unsigned
 * (WooCommerce signs deliveries only), and the webhook is not saved unless it is answered 200.
 * It is let through unsigned only in exactly this shape, and maps to nothing.
 */
const pingBody = /^webhook_id=(\d{1,20})$/;

function isPing(request: ConnectorRequest): boolean {
  return header(request, 'x-wc-webhook-signature') === undefined && pingBody.test(request.rawBody.toString('latin1'));
}

export function verifyWoocommerce(request: ConnectorRequest, secret: string): void {
  const signature = header(request, 'x-wc-webhook-signature');
  if (signature === undefined) {
    if (isPing(request)) return;
    throw new RecoupError('unauthorized', 'WooCommerce webhook without X-WC-Webhook-Signature');
  }
  verifyBodyHmac(request.rawBody, signature, secret, 'X-WC-Webhook-Signature');
}

export function describeWoocommerce(request: ConnectorRequest): { deliveryId: string; topic: string } {
  if (isPing(request)) {
    return { deliveryId: `ping-${pingBody.exec(request.rawBody.toString('latin1'))?.[1] ?? ''}`, topic: 'ping' };
  }
  return {
    // WooCommerce always sends one; a body digest still names a delivery that somehow lacks it.
    deliveryId: header(request, 'x-wc-webhook-delivery-id') ?? `body-${digest(request.rawBody).slice(0, 32)}`,
    topic: header(request, 'x-wc-webhook-topic') ?? 'unknown',
  };
}

const orderTopics = new Set(['order.created', 'order.updated', 'order.restored']);

type MappedType = 'order.created' | 'payment.failed' | 'payment.succeeded' | 'order.cancelled';

/**
 * WooCommerce order statuses → recoup event types. `on-hold` waits for a payment made elsewhere
 * (a bank transfer, a cheque) and recoup puts orders on hold itself to keep WooCommerce from
 * cancelling them, so it changes nothing; `checkout-draft` is a block checkout not yet placed.
 */
const statusTypes: Readonly<Record<string, MappedType | null>> = {
  pending: 'order.created',
  failed: 'payment.failed',
  processing: 'payment.succeeded',
  completed: 'payment.succeeded',
  cancelled: 'order.cancelled',
  refunded: 'order.cancelled',
  trash: 'order.cancelled',
  'on-hold': null,
  'checkout-draft': null,
};

const text = z.string().nullish();
const decimal = z.union([z.string(), z.number()]);

/** The parts of a REST API v3 order recoup reads. */
const wooOrder = z.object({
  id: z.number().int().positive(),
  status: z.string(),
  currency: z.string(),
  total: decimal,
  customer_id: z.number().int().nonnegative().nullish(),
  billing: z.object({ first_name: text, last_name: text, email: text, phone: text, country: text }).partial().nullish(),
  payment_method: text,
  payment_method_title: text,
  payment_url: text,
  date_created_gmt: text,
  date_modified_gmt: text,
  line_items: z.array(z.unknown()).nullish(),
  meta_data: z.array(z.unknown()).nullish(),
});
type WooOrder = z.output<typeof wooOrder>;

const wooLine = z.object({
  name: z.string(),
  quantity: z.number(),
  total: decimal,
  sku: text,
  image: z.object({ src: text }).partial().nullish(),
});
const wooMeta = z.object({ key: z.string(), value: z.unknown() });

export function mapWoocommerce(request: ConnectorRequest): ConnectorMapping {
  const { deliveryId, topic } = describeWoocommerce(request);
  if (topic === 'ping') return { kind: 'ignored', reason: 'WooCommerce webhook ping' };
  if (!orderTopics.has(topic)) return { kind: 'ignored', reason: `topic ${topic} is not used` };

  let body: unknown;
  try {
    body = JSON.parse(request.rawBody.toString('utf8'));
  } catch {
    return { kind: 'rejected', reason: 'body is not JSON' };
  }
  const parsed = wooOrder.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      kind: 'rejected',
      reason: `not a WooCommerce order: ${issue?.path.join('.') || '(body)'} ${issue?.message}`,
    };
  }
  const order = parsed.data;
  const type = statusTypes[order.status];
  if (type === undefined) return { kind: 'ignored', reason: `order status ${order.status} is not used` };
  if (type === null) return { kind: 'ignored', reason: `order status ${order.status} changes nothing` };

  const currency = order.currency.trim().toUpperCase();
  if (!isKnownCurrency(currency)) return { kind: 'rejected', reason: `unknown currency "${order.currency}"` };
  const amount = decimalToMinor(order.total, currency);
  if (amount === undefined || amount <= 0) {
    return { kind: 'rejected', reason: `order total "${order.total}" is not a positive ${currency} amount` };
  }
  const occurredAt = gmtInstant(order.date_modified_gmt) ?? gmtInstant(order.date_created_gmt);
  if (!occurredAt) return { kind: 'rejected', reason: 'order has no readable date_modified_gmt' };
  const customer = customerOf(order);
  if (!customer) return { kind: 'rejected', reason: 'order has no usable billing email or phone' };

  const items = itemsOf(order, currency);
  const event: EventInput = {
    id: `woo_${order.id}_${digest(Buffer.concat([Buffer.from(`${deliveryId}\n`), request.rawBody])).slice(0, 32)}`,
    type,
    occurred_at: occurredAt,
    order: {
      id: String(order.id),
      amount,
      currency,
      description: items.length > 0 ? clip(items.map((item) => item.name).join(', '), 500) : undefined,
      customer,
      items: items.length > 0 ? items : undefined,
      payment_url: httpUrl(order.payment_url, /^https?:$/),
    },
    payment: paymentOf(order, type),
  };
  return { kind: 'events', events: [event] };
}

function customerOf(order: WooOrder): EventInput['customer'] | undefined {
  const billing = order.billing ?? {};
  const email = billing.email ? storableEmail(billing.email) : undefined;
  const phone = toE164(billing.phone, billing.country);
  if (!email && !phone) return undefined;
  const name = clip(
    [billing.first_name, billing.last_name]
      .map((part) => part?.trim())
      .filter(Boolean)
      .join(' '),
    200,
  );
  // A guest has no WooCommerce customer: the same address is the same customer across orders.
  const id = order.customer_id
    ? `woo-cus-${order.customer_id}`
    : `woo-guest-${digest(Buffer.from(email ?? phone ?? '')).slice(0, 24)}`;
  return { id, name: name || undefined, email, phone, locale: localeOf(order) };
}

/** WPML and Polylang record the order's language in its meta data; WooCommerce itself does not. */
const localeKeys = new Set(['wpml_language', 'locale', '_locale', 'pll_language', 'language']);
const bcp47 = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;

function localeOf(order: WooOrder): string | undefined {
  for (const entry of order.meta_data ?? []) {
    const meta = wooMeta.safeParse(entry);
    if (!meta.success || !localeKeys.has(meta.data.key) || typeof meta.data.value !== 'string') continue;
    const value = meta.data.value.trim();
    if (bcp47.test(value)) return value.replace(/_/g, '-');
  }
  return undefined;
}

function itemsOf(order: WooOrder, currency: string): NonNullable<NonNullable<EventInput['order']>['items']> {
  const items = [];
  for (const entry of order.line_items ?? []) {
    const line = wooLine.safeParse(entry);
    if (!line.success) continue;
    const name = clip(decodeEntities(line.data.name).trim(), 200);
    const amount = decimalToMinor(line.data.total, currency);
    if (!name || amount === undefined || !Number.isInteger(line.data.quantity) || line.data.quantity < 1) continue;
    items.push({
      name,
      quantity: Math.min(line.data.quantity, 1_000_000),
      amount,
      sku: line.data.sku?.trim() ? clip(line.data.sku.trim(), 100) : undefined,
      image_url: httpUrl(line.data.image?.src, /^https:$/),
    });
  }
  return items.slice(0, 100);
}

function paymentOf(order: WooOrder, type: MappedType): EventInput['payment'] {
  const gateway = order.payment_method?.trim() ? clip(order.payment_method.trim(), 50) : undefined;
  if (type === 'payment.failed') {
    return {
      gateway,
      // WooCommerce's order carries no decline code: `failed` means the gateway refused or failed
      // the payment, which recoup treats as a generic decline (try later, or another method).
      failure_code: 'payment_declined',
      failure_message: clip(
        `WooCommerce marked the order failed${order.payment_method_title ? ` (${order.payment_method_title})` : ''}`,
        1000,
      ),
    };
  }
  if (type === 'payment.succeeded') return { gateway };
  return undefined;
}

/** WooCommerce's `_gmt` dates are UTC without a zone: `2026-03-08T09:30:00`. */
function gmtInstant(value: string | null | undefined): string | undefined {
  if (!value || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(value.trim())) return undefined;
  const instant = new Date(`${value.trim()}Z`);
  return Number.isNaN(instant.getTime()) ? undefined : instant.toISOString();
}

function httpUrl(value: string | null | undefined, protocol: RegExp): string | undefined {
  if (!value || value.length > 2_000) return undefined;
  try {
    return protocol.test(new URL(value).protocol) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * WordPress stores product titles with HTML entities (`Ship Your Idea &ndash; Black`); recoup's
 * templates escape text themselves, so the entities are decoded once here.
 */
const namedEntities: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  ndash: '\u2013',
  mdash: '\u2014',
  hellip: '\u2026',
  lsquo: '\u2018',
  rsquo: '\u2019',
  ldquo: '\u201c',
  rdquo: '\u201d',
  times: '\u00d7',
};

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});/gi, (entity, body: string) => {
    if (body.startsWith('#')) {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : entity;
    }
    return namedEntities[body.toLowerCase()] ?? entity;
  });
}

function header(request: ConnectorRequest, name: string): string | undefined {
  const value = request.headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === '' ? undefined : first;
}

function digest(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function clip(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}
