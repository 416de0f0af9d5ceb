import { formatAmount } from '../../platform/format-amount.js';
import type { EventForShop, ShopWriteBack, WriteBackResult } from '../shop-connector.js';
import { WoocommerceApiError, type WoocommerceApi, type WoocommerceNote } from './woocommerce-api.js';

/**
 * Tells WooCommerce what recoup did. A payment recoup collected marks the order paid (WooCommerce's
 * own payment completion: status, stock, emails) and adds a private note saying how; a refund
 * adds a note only: the money went back through recoup's gateway, and a WooCommerce refund would
 * try to move it again or restock.
 *
 * A delivery is retried after any failure, so each step first looks whether an earlier attempt
 * already did it: the order paid with this transaction, a note naming this payment or refund.
 */
export function createWoocommerceWriteBack(api: WoocommerceApi): ShopWriteBack {
  return {
    events: ['payment.succeeded', 'refund.succeeded'],
    async apply(event) {
      try {
        if (event.type === 'payment.succeeded') return await markPaid(api, event);
        if (event.type === 'refund.succeeded') return await noteRefund(api, event);
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

function paidNote(data: Record<string, unknown>, paymentId: string, duplicate: boolean): string {
  const method = text(data.method) || 'payment';
  const gateway = text(data.gateway) || 'unknown gateway';
  const attempt = data.attempt === null || data.attempt === undefined ? 'none' : text(data.attempt);
  const tail = duplicate ? ' (a duplicate: the order was already paid, recoup refunds it)' : '';
  return `Paid through recoup: ${method} via ${gateway}, ${money(data)}, payment ${paymentId}, reminder attempt ${attempt}, attribution ${text(data.attribution) || 'none'}${tail}`;
}

/** A note recoup wrote for this payment or refund: `payment pay_…,` as the notes above spell it. */
function mentions(notes: readonly WoocommerceNote[], what: 'payment' | 'refund', id: string): boolean {
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
