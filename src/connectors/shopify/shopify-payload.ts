import { createHash } from 'node:crypto';
import { z } from 'zod';
import { normaliseAddress, storableEmail } from '../../domain/addresses.js';
import type { CustomerInput, EventInput } from '../../domain/event-schema.js';
import { decimalToMinor, isKnownCurrency } from '../../platform/format-amount.js';

/**
 * Reading Shopify's webhook payloads (orders, checkouts, privacy requests) into the parts of
 * recoup's events. Payloads are untrusted JSON: every reader returns undefined instead of throwing.
 */

type Json = Record<string, unknown>;

export function record(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

export function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() || undefined;
  return undefined;
}

/** Shopify's ids are JSON numbers (or numeric strings in some topics). */
export function numericId(value: unknown): string | undefined {
  // Past 2^53 a JSON number has already lost digits: it names some other order.
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return String(value);
  if (typeof value === 'string' && /^[1-9]\d{0,30}$/.test(value)) return value;
  return undefined;
}

/**
 * The id of a Shopify object: from `admin_graphql_api_id` (`gid://shopify/Order/123`), a string
 * that keeps every digit, else from the numeric `id`.
 */
export function objectId(object: Json | undefined, type: 'Order' | 'Customer'): string | undefined {
  const gid = text(object?.admin_graphql_api_id);
  const match = gid === undefined ? null : new RegExp(`^gid://shopify/${type}/([1-9]\\d{0,30})$`).exec(gid);
  return match?.[1] ?? numericId(object?.id);
}

/** At most `max` characters, or undefined. */
function clip(value: string | undefined, max: number): string | undefined {
  return value === undefined ? undefined : value.slice(0, max);
}

/** An ISO 4217 code Intl knows (and so knows its minor unit), upper-cased; undefined otherwise. */
export function knownCurrency(value: unknown): string | undefined {
  const code = text(value)?.toUpperCase();
  return code && isKnownCurrency(code) ? code : undefined;
}

/** A decimal amount as Shopify writes it (`"199.00"`) in the currency's minor units. */
export function toMinorUnits(value: unknown, currency: string): number | undefined {
  const written = typeof value === 'number' ? value : text(value);
  return written === undefined ? undefined : decimalToMinor(written, currency);
}

const e164 = /^\+[1-9]\d{6,14}$/;

function validEmail(value: unknown): string | undefined {
  const address = text(value);
  return address === undefined ? undefined : storableEmail(address);
}

/** Only numbers already in E.164: a national number's country is a guess recoup does not make. */
function validPhone(value: unknown): string | undefined {
  const number = text(value);
  if (number === undefined) return undefined;
  const normalised = normaliseAddress('sms', number);
  return e164.test(normalised) ? normalised : undefined;
}

function firstOf<T>(values: unknown[], read: (value: unknown) => T | undefined): T | undefined {
  for (const value of values) {
    const found = read(value);
    if (found !== undefined) return found;
  }
  return undefined;
}

function hashed(kind: string, address: string): string {
  return `shopify-${kind}-${createHash('sha256').update(address, 'utf8').digest('hex').slice(0, 32)}`;
}

/**
 * recoup's customer id for a Shopify customer: Shopify's own id when the payload has one; for a
 * guest, a digest of the address (never the address itself, which would outlive an erasure).
 */
export function customerIdFor(shopifyCustomerId: string | undefined, email?: string, phone?: string) {
  if (shopifyCustomerId) return `shopify-cus-${shopifyCustomerId}`;
  if (email) return hashed('em', email);
  if (phone) return hashed('ph', phone);
  return undefined;
}

/**
 * Every recoup customer id a Shopify privacy request's customer may have been stored under: the
 * one for the Shopify id, and those of guest checkouts made with the same address.
 */
export function customerIdsToForget(payload: Json): string[] {
  const customer = record(payload.customer);
  if (!customer) return [];
  const email = validEmail(customer.email);
  const phone = validPhone(customer.phone);
  const ids = [
    customerIdFor(objectId(customer, 'Customer')),
    email === undefined ? undefined : customerIdFor(undefined, email),
    phone === undefined ? undefined : customerIdFor(undefined, undefined, phone),
  ];
  return [...new Set(ids.filter((id): id is string => id !== undefined))];
}

/** The customer of an order or checkout, or a reason there is none recoup can remind. */
export function customerOf(payload: Json): CustomerInput | { missing: string } {
  const customer = record(payload.customer) ?? {};
  const billing = record(payload.billing_address) ?? {};
  const email = firstOf([payload.email, payload.contact_email, customer.email], validEmail);
  const phone = firstOf([payload.phone, customer.phone, billing.phone], validPhone);
  if (email === undefined && phone === undefined) {
    return { missing: 'no contact: neither an email address nor an E.164 phone number' };
  }
  const id = customerIdFor(objectId(customer, 'Customer'), email, phone);
  if (id === undefined) return { missing: 'no customer' };
  const fullName = [text(customer.first_name), text(customer.last_name)].filter(Boolean).join(' ');
  const locale = text(payload.customer_locale);
  return {
    id,
    name: clip(fullName || text(billing.name), 200) ?? null,
    email: email ?? null,
    phone: phone ?? null,
    locale: locale && /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/.test(locale) ? locale : null,
  };
}

type Item = NonNullable<NonNullable<EventInput['order']>['items']>[number];

/**
 * The cart lines, each a unit price × quantity in the shop's currency. Shopify's webhooks carry
 * no image URL. A list with any line recoup cannot read is left out whole: a partial cart would
 * show the customer a total its lines do not add up to.
 */
export function itemsOf(payload: Json, currency: string): Item[] | undefined {
  const lines = payload.line_items;
  if (!Array.isArray(lines) || lines.length === 0 || lines.length > 100) return undefined;
  const items: Item[] = [];
  for (const value of lines) {
    const line = record(value);
    const name = clip(text(line?.title) ?? text(line?.name), 200);
    const quantity = line?.quantity;
    const shopPrice = record(record(line?.price_set)?.shop_money)?.amount;
    const unit = toMinorUnits(shopPrice ?? line?.price, currency);
    if (!name || typeof quantity !== 'number' || !Number.isSafeInteger(quantity) || quantity < 1) return undefined;
    if (unit === undefined || !Number.isSafeInteger(unit * quantity)) return undefined;
    const sku = text(line?.sku);
    items.push({ name, quantity, amount: unit * quantity, sku: sku && sku.length <= 100 ? sku : null });
  }
  return items;
}

const timestamp = z.iso.datetime({ offset: true });

/** The first of these that is an ISO 8601 timestamp with a timezone, as Shopify writes them. */
export function timestampOf(...values: unknown[]): string | undefined {
  return firstOf(values, (value) => {
    const written = text(value);
    return written !== undefined && timestamp.safeParse(written).success ? written : undefined;
  });
}

/** An http(s) URL the event schema takes, or undefined. */
export function pageUrl(value: unknown): string | undefined {
  const url = text(value);
  return url && url.length <= 2_000 && /^https?:\/\//.test(url) && URL.canParse(url) ? url : undefined;
}

/** The name of the payment gateway that took the money (`shopify_payments`, `paypal`, `manual`). */
export function gatewayNameOf(payload: Json): string | null {
  const names = Array.isArray(payload.payment_gateway_names) ? payload.payment_gateway_names : [];
  return clip(firstOf([...names, payload.gateway], text), 50) ?? null;
}
