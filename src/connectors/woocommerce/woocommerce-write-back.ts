import { formatAmount } from '../../platform/format-amount.js';
import type { EventForShop, ShopWriteBack, WriteBackResult } from '../shop-connector.js';
import { WoocommerceApiError, type WoocommerceApi, type WoocommerceNote } from './woocommerce-api.js';

/**
 * Tells WooCommerce what recoup did. A payment recoup collected marks the order paid (WooCommerce's
 * own payment completion: status, stock, emails) and adds a private note saying how; a refund
 * adds a note only: the money went back through recoup's gateway, and a WooCommerce refund would
 * try to move it again or restock.
 *
 * WooCommerce cancels a `pending` order nobody paid once its hold-stock time (60 minutes by default)
 * has passed, far sooner than a recovery ends: while a recovery runs for a pending order, the order
 * is put `on-hold` (which that cleanup leaves alone, stock still held), and given back as `pending`
 * if the recovery ends without a payment. A failed order is never cancelled that way and stays as
 * it is. Not with link mode `platform`: WooCommerce's payment page does not take a held order.
 *
 * A delivery is retried after any failure, so each step first looks whether an earlier attempt
 * already did it: the order paid with this transaction, a note naming this payment or refund.
 */
export function createWoocommerceWriteBack(
  api: WoocommerceApi,
  options: { holdPendingOrders: boolean } = { holdPendingOrders: true },
): ShopWriteBack {
  return {
    events: options.holdPendingOrders
      ? ['recovery.started', 'recovery.ended', 'payment.succeeded', 'refund.succeeded']
      : ['payment.succeeded', 'refund.succeeded'],
    async apply(event) {
      try {
        if (event.type === 'payment.succeeded') return await markPaid(api, event);
        if (event.type === 'refund.succeeded') return await noteRefund(api, event);
        if (event.type === 'recovery.started') return await holdWhileRecovering(api, event);
        if (event.type === 'recovery.ended') return await releaseHold(api, event);
        return { kind: 'skipped', reason: `${event.type} is not written back to WooCommerce` };
      } catch (err) {
        if (err instanceof WoocommerceApiError) return { kind: 'failed', status: err.status, detail: err.message };
        return {
          kind: 'failed',
          status: null,
          detail: `unexpected error: ${err instanceof Error ? err.name : 'unknown'}`,
        };
      }
    },
  };
}

/** WooCommerce statuses of an order that has been paid: set_paid would not complete it again. */
const paidStatuses = new Set(['processing', 'completed', 'refunded']);

async function markPaid(api: WoocommerceApi, event: EventForShop): Promise<WriteBackResult> {
  const data = event.data;
  if (data.collected_by !== 'recoup') return { kind: 'skipped', reason: 'the shop reported this payment itself' };
  const orderId = wooOrderId(data.order_id);
  if (!orderId) return { kind: 'skipped', reason: `order ${String(data.order_id)} is not a WooCommerce order id` };
  const paymentId = text(data.payment_id);
  const transactionId = text(data.gateway_payment_id) || null;

  const order = await api.getOrder(orderId);
  const alreadyPaid = paidStatuses.has(order.status);
  // Paid with another transaction (a payment the shop took meanwhile): recoup's duplicate is
  // refunded on its side, and WooCommerce keeps its own record; the note tells ops of both.
  const paidByOther = alreadyPaid && order.transactionId !== (transactionId ?? '');
  const duplicate = data.duplicate === true || paidByOther;
  if (!alreadyPaid && !duplicate) await api.markPaid(orderId, transactionId);

  const notes = await api.listNotes(orderId);
  const noted = mentions(notes, 'payment', paymentId);
  if (!noted) await api.addNote(orderId, paidNote(data, paymentId, duplicate));
  const marked = alreadyPaid ? `order already ${order.status}` : duplicate ? 'left as it is' : 'marked paid';
  return {
    kind: 'done',
    status: null,
    detail: `WooCommerce order ${orderId}: ${marked}, ${noted ? 'note already there' : 'note added'}${paidByOther ? ` (paid there with transaction ${order.transactionId || 'none'})` : ''}`,
  };
}

async function noteRefund(api: WoocommerceApi, event: EventForShop): Promise<WriteBackResult> {
  const data = event.data;
  const orderId = wooOrderId(data.order_id);
  if (!orderId) return { kind: 'skipped', reason: `order ${String(data.order_id)} is not a WooCommerce order id` };
  const refundId = text(data.refund_id);
  const notes = await api.listNotes(orderId);
  if (mentions(notes, 'refund', refundId)) {
    return { kind: 'done', status: null, detail: `WooCommerce order ${orderId}: refund note already there` };
  }
  const reason = data.reason === 'duplicate' ? 'a duplicate payment' : 'asked by ops';
  const note = text(data.note);
  await api.addNote(
    orderId,
    `Refunded by recoup: ${money(data)}, refund ${refundId}, payment ${text(data.payment_id)}, ${reason}${note ? `: ${note}` : ''}`,
  );
  return { kind: 'done', status: null, detail: `WooCommerce order ${orderId}: refund note added` };
}

async function holdWhileRecovering(api: WoocommerceApi, event: EventForShop): Promise<WriteBackResult> {
  const orderId = wooOrderId(event.data.order_id);
  if (!orderId)
    return { kind: 'skipped', reason: `order ${String(event.data.order_id)} is not a WooCommerce order id` };
  const recoveryId = text(event.data.recovery_id);
  const order = await api.getOrder(orderId);
  const notes = await api.listNotes(orderId);
  const held = mentions(notes, 'recovery', recoveryId);
  // Held by an earlier attempt whose answer was lost, or moved on by the shop: left as it is.
  if (order.status !== 'pending' && !(held && order.status === 'on-hold')) {
    return { kind: 'skipped', reason: `WooCommerce order ${orderId} is ${order.status}: nothing to hold` };
  }
  if (!held) {
    await api.addNote(
      orderId,
      `On hold while recoup reminds the customer to pay (recovery ${recoveryId}), so that WooCommerce does not cancel it as unpaid`,
    );
  }
  if (order.status === 'pending') await api.putOnHold(orderId);
  return { kind: 'done', status: null, detail: `WooCommerce order ${orderId}: on hold while the recovery runs` };
}

async function releaseHold(api: WoocommerceApi, event: EventForShop): Promise<WriteBackResult> {
  const orderId = wooOrderId(event.data.order_id);
  if (!orderId)
    return { kind: 'skipped', reason: `order ${String(event.data.order_id)} is not a WooCommerce order id` };
  const state = text(event.data.state);
  // Recovered: marked paid by the payment's write-back or by the shop. Cancelled: the shop did it.
  if (state !== 'exhausted' && state !== 'stopped') {
    return { kind: 'skipped', reason: `the recovery ended ${state}: the order's status is WooCommerce's` };
  }
  const recoveryId = text(event.data.recovery_id);
  const order = await api.getOrder(orderId);
  const notes = await api.listNotes(orderId);
  // Only a hold recoup put: an order the shop put on hold itself stays so.
  if (order.status !== 'on-hold' || !mentions(notes, 'recovery', recoveryId)) {
    return { kind: 'skipped', reason: `WooCommerce order ${orderId} is ${order.status}, not held by recoup` };
  }
  await api.putBackToPending(orderId);
  await api.addNote(
    orderId,
    `Back to pending payment: recoup's recovery ${recoveryId} ended ${state} (${text(event.data.reason) || 'no reason given'})`,
  );
  return { kind: 'done', status: null, detail: `WooCommerce order ${orderId}: back to pending` };
}

function paidNote(data: Record<string, unknown>, paymentId: string, duplicate: boolean): string {
  const method = text(data.method) || 'payment';
  const gateway = text(data.gateway) || 'unknown gateway';
  const attempt = data.attempt === null || data.attempt === undefined ? 'none' : text(data.attempt);
  const tail = duplicate ? ' (a duplicate: the order was already paid, recoup refunds it)' : '';
  return `Paid through recoup: ${method} via ${gateway}, ${money(data)}, payment ${paymentId}, reminder attempt ${attempt}, attribution ${text(data.attribution) || 'none'}${tail}`;
}

/** A note recoup wrote for this payment or refund: `payment pay_…,` as the notes above spell it. */
function mentions(notes: readonly WoocommerceNote[], what: 'payment' | 'refund' | 'recovery', id: string): boolean {
  if (id === '') return false;
  const pattern = new RegExp(`\\b${what} ${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w-])`);
  return notes.some((note) => pattern.test(note.note));
}

/** `USD 49.99`: the currency code, never a symbol several currencies share. */
function money(data: Record<string, unknown>): string {
  const amount = data.amount;
  const currency = text(data.currency);
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || !/^[A-Z]{3}$/.test(currency)) {
    return `${String(amount)} ${currency}`.trim();
  }
  return formatAmount(amount, currency, 'en', { currencyDisplay: 'code' }).replace(/\s/g, ' ');
}

/** WooCommerce order ids are numbers; recoup holds them as their decimal text. */
function wooOrderId(value: unknown): string | undefined {
  const id = text(value);
  return /^[1-9]\d{0,19}$/.test(id) ? id : undefined;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : typeof value === 'number' ? String(value) : '';
}
