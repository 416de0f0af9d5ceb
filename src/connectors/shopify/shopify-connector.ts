import { createHash } from 'node:crypto';
import { verifyBodyHmac } from '../body-signature.js';
import { parseEvent, type EventInput } from '../../domain/event-schema.js';
import { isRecoupError, RecoupError } from '../../platform/errors.js';
import type { ConnectorMapping, ConnectorRequest, ShopConnector } from '../shop-connector.js';
import { createShopifyWriteBack, type ShopifyAdminDeps } from './shopify-admin.js';
import type { ShopifyConfig } from './shopify-config.js';
import {
  customerIdsToForget,
  customerOf,
  gatewayNameOf,
  itemsOf,
  knownCurrency,
  numericId,
  objectId,
  pageUrl,
  record,
  text,
  timestampOf,
  toMinorUnits,
} from './shopify-payload.js';

/**
 * Shopify's webhooks (`POST /webhooks/shops/shopify`) as recoup events:
 *
 * - `orders/create`: `pending` (awaiting payment: bank transfer, cash on delivery, a payment that
 *   did not go through) → `order.created`; `paid` → `payment.succeeded`; other states → ignored.
 * - `orders/paid` → `payment.succeeded`; `orders/cancelled` → `order.cancelled`.
 * - `checkouts/create`, `checkouts/update`: a checkout with no order yet, under its `token` as the
 *   recoup order id → `order.created` (an `abandoned` recovery once the grace period passes).
 *   Completed (`completed_at` set) → `payment.succeeded` for the token, so that recovery ends; the
 *   order it became arrives on its own webhooks under its own id.
 * - `customers/redact` → forget; `shop/redact`, `customers/data_request` → rejected, with what ops
 *   must do in the reason: recoup cannot do it alone, and rejected deliveries are what ops see.
 *
 * Orders are recoup orders under Shopify's numeric id, which write-back relies on to tell an
 * order (it can be marked paid) from a checkout token (Shopify collected it itself).
 */

export type ShopifyConnectorDeps = ShopifyAdminDeps;

function header(request: ConnectorRequest, name: string): string | undefined {
  const value = request.headers[name];
  return (Array.isArray(value) ? value[0] : value)?.trim() || undefined;
}

function verify(secret: string, request: ConnectorRequest): void {
  const signature = header(request, 'x-shopify-hmac-sha256');
  if (!signature) throw new RecoupError('unauthorized', 'Missing X-Shopify-Hmac-Sha256 header');
  verifyBodyHmac(request.rawBody, signature, secret, 'X-Shopify-Hmac-Sha256');
}

function describe(request: ConnectorRequest): { deliveryId: string; topic: string } {
  // The webhook id is the same on Shopify's retries. Without one, the body stands in for it.
  const deliveryId =
    header(request, 'x-shopify-webhook-id') ??
    `sha256-${createHash('sha256').update(request.rawBody).digest('hex').slice(0, 32)}`;
  return { deliveryId: deliveryId.slice(0, 100), topic: header(request, 'x-shopify-topic') ?? 'unknown' };
}

interface Delivery {
  deliveryId: string;
  topic: string;
  /** When Shopify fired the webhook: the event time of last resort. */
  triggeredAt: string | undefined;
  payload: Record<string, unknown>;
}

const rejected = (reason: string): ConnectorMapping => ({ kind: 'rejected', reason });
const ignored = (reason: string): ConnectorMapping => ({ kind: 'ignored', reason });

type Subject = 'order' | 'checkout';

function orderIdOf(subject: Subject, payload: Record<string, unknown>): string | undefined {
  if (subject === 'order') return objectId(payload, 'Order');
  const token = text(payload.token);
  return token && /^[A-Za-z0-9_-]{1,200}$/.test(token) ? token : undefined;
}

/**
 * The total in the shop's currency, never the customer's presentment currency: recoup's ledger and
 * reports reconcile with the shop's books and payouts, the line prices are in it, and
 * `orderMarkAsPaid` records the outstanding balance in it, so every amount recoup holds for a
 * Shopify order is in one currency.
 */
function shopMoney(payload: Record<string, unknown>): { amount: unknown; currency: unknown } {
  const money = record(record(payload.total_price_set)?.shop_money);
  return money
    ? { amount: money.amount, currency: money.currency_code }
    : {
        amount: payload.total_price,
        currency: payload.currency,
      };
}

function event(
  delivery: Delivery,
  subject: Subject,
  type: EventInput['type'],
  occurredAt: string | undefined,
  payment?: { gateway: string; method: string | null },
): ConnectorMapping {
  const { payload } = delivery;
  const id = orderIdOf(subject, payload);
  if (id === undefined) return rejected(`no ${subject === 'order' ? 'numeric order id' : 'checkout token'}`);
  const money = shopMoney(payload);
  const currency = knownCurrency(money.currency);
  if (currency === undefined) return rejected(`unknown currency ${JSON.stringify(money.currency ?? null)}`);
  const amount = toMinorUnits(money.amount, currency);
  if (amount === undefined || amount <= 0) {
    return rejected(`the total ${JSON.stringify(money.amount ?? null)} is not a positive ${currency} amount`);
  }
  const customer = customerOf(payload);
  if ('missing' in customer) return rejected(customer.missing);
  const at = timestampOf(occurredAt, payload.updated_at, payload.created_at, delivery.triggeredAt);
  if (at === undefined) return rejected('no timestamp for the event');

  const name = text(payload.name);
  const items = itemsOf(payload, currency);
  // An order's order_status_url is a status page, not a payment page; checkouts have a recovery URL.
  const paymentUrl = pageUrl(subject === 'checkout' ? payload.abandoned_checkout_url : payload.invoice_url);
  const digest = createHash('sha256')
    .update(JSON.stringify([delivery.topic, type, id, amount, currency, at, text(payload.financial_status) ?? null]))
    .digest('hex')
    .slice(0, 16);
  const candidate = {
    id: `shopify:${delivery.deliveryId}:${digest}`,
    type,
    occurred_at: at,
    order: {
      id,
      amount,
      currency,
      description: subject === 'order' && name ? `Order ${name}`.slice(0, 500) : null,
      customer,
      ...(items ? { items } : {}),
      ...(paymentUrl ? { payment_url: paymentUrl } : {}),
    },
    ...(payment ? { payment: { ...payment, amount } } : {}),
  };
  // What the intake would refuse is refused here, with the reason kept for ops.
  try {
    return { kind: 'events', events: [parseEvent(candidate)] };
  } catch (err) {
    const issues = isRecoupError(err) ? err.issues.map((i) => `${i.path} ${i.message}`).join('; ') : String(err);
    return rejected(`not a valid recoup event: ${issues}`);
  }
}

function mapOrder(delivery: Delivery): ConnectorMapping {
  const { payload, topic } = delivery;
  const status = text(payload.financial_status);
  const paid = { gateway: 'shopify', method: gatewayNameOf(payload) };
  switch (topic) {
    case 'orders/create':
      if (status === 'pending') return event(delivery, 'order', 'order.created', timestampOf(payload.created_at));
      if (status === 'paid') {
        return event(
          delivery,
          'order',
          'payment.succeeded',
          timestampOf(payload.processed_at, payload.created_at),
          paid,
        );
      }
      return ignored(`a new order whose financial status is ${status ?? 'missing'}: nothing awaits payment`);
    case 'orders/paid':
      return event(delivery, 'order', 'payment.succeeded', timestampOf(payload.updated_at), paid);
    default:
      return event(delivery, 'order', 'order.cancelled', timestampOf(payload.cancelled_at));
  }
}

function mapCheckout(delivery: Delivery): ConnectorMapping {
  const { payload } = delivery;
  if (payload.completed_at !== null && payload.completed_at !== undefined) {
    return event(delivery, 'checkout', 'payment.succeeded', timestampOf(payload.completed_at), {
      gateway: 'shopify',
      method: gatewayNameOf(payload),
    });
  }
  return event(delivery, 'checkout', 'order.created', timestampOf(payload.created_at));
}

function mapPrivacy(delivery: Delivery): ConnectorMapping {
  const { payload, topic } = delivery;
  const shop = text(payload.shop_domain) ?? 'the shop';
  if (topic === 'shop/redact') {
    // The payload names only the shop: which customers came from it is recoup's to find.
    return rejected(
      `${shop} asked for all its customer data to be erased: run \`recoup customers forget ID\` for each customer whose id starts with shopify-`,
    );
  }
  const ids = customerIdsToForget(payload);
  if (topic === 'customers/redact') {
    return ids.length > 0 ? { kind: 'forget', customerIds: ids } : rejected('a redact request naming no customer');
  }
  const request = text(String(record(payload.data_request)?.id ?? '')) ?? 'unnumbered';
  const orders = Array.isArray(payload.orders_requested) ? payload.orders_requested.map(numericId) : [];
  const orderList = orders.filter((id) => id !== undefined).join(', ');
  return rejected(
    `${shop} asks for the data held on customer ${ids.join(' / ') || '(none named)'} (data request ${request}` +
      `${orderList ? `, orders ${orderList}` : ''}): recoup has no export command; ` +
      'send it the orders (GET /v1/orders/:id) within 30 days',
  );
}

function map(request: ConnectorRequest): ConnectorMapping {
  const { deliveryId, topic } = describe(request);
  let body: unknown;
  try {
    body = JSON.parse(request.rawBody.toString('utf8'));
  } catch {
    return rejected('the body is not JSON');
  }
  const payload = record(body);
  if (!payload) return rejected('the body is not a JSON object');
  const delivery: Delivery = { deliveryId, topic, triggeredAt: header(request, 'x-shopify-triggered-at'), payload };
  switch (topic) {
    case 'orders/create':
    case 'orders/paid':
    case 'orders/cancelled':
      return mapOrder(delivery);
    case 'checkouts/create':
    case 'checkouts/update':
      return mapCheckout(delivery);
    case 'customers/redact':
    case 'customers/data_request':
    case 'shop/redact':
      return mapPrivacy(delivery);
    default:
      return ignored(`topic ${topic} is not one recoup uses`);
  }
}

/** The Shopify connector; it writes back when the Admin API credentials are configured. */
export function createShopifyConnector(config: ShopifyConfig, deps: ShopifyConnectorDeps = {}): ShopConnector {
  return {
    platform: 'shopify',
    verify: (request) => verify(config.webhookSecret, request),
    describe,
    map: async (request) => map(request),
    // An abandoned checkout is a recoup order under its token; Shopify's orders have numeric ids.
    paysOnPlatform: (orderId) => !/^\d+$/.test(orderId),
    writeBack: config.admin ? createShopifyWriteBack(config.admin, deps) : undefined,
  };
}
