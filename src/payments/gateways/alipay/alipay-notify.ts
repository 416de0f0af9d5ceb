import type { GatewayEvent } from '../../payment-gateway.js';
import { GatewayError } from '../../payment-gateway.js';
import { amountOfTradeNo, fromBeijingTime, fromYuan } from './alipay-trade.js';

/** What recoup echoes through Alipay in `passback_params`, to attribute a notify to its attempt. */
export function passbackParams(orderId: string, attemptId: string): string {
  // Alipay asks for the value URL-encoded; it comes back in the notify as sent.
  return encodeURIComponent(new URLSearchParams({ order: orderId, attempt: attemptId }).toString());
}

function passbackIds(value: string | undefined): { orderId?: string; attemptId?: string } {
  if (!value) return {};
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return {};
  }
  const params = new URLSearchParams(decoded);
  const orderId = params.get('order');
  const attemptId = params.get('attempt');
  return { ...(orderId ? { orderId } : {}), ...(attemptId ? { attemptId } : {}) };
}

/**
 * A notify whose signature was verified → recoup's event, or null when it carries nothing
 * for recoup (`WAIT_BUYER_PAY`). Checks that it is for this app and that the amount is the
 * one the trade was opened for; a mismatch is refused (nothing recorded), never trusted.
 *
 * Alipay reports a refund with the trade's own status plus `refund_fee` and `out_biz_no`
 * (the refund's `out_request_no`): `TRADE_SUCCESS` after a partial refund, `TRADE_CLOSED`
 * after a full one. Those are refund events, never a second payment.
 */
export function toGatewayEvent(params: Record<string, string>, appId: string): GatewayEvent | null {
  if (params.app_id !== appId) {
    throw new GatewayError('invalid_request', `Alipay notify for app ${params.app_id ?? '(none)'}, not ${appId}`, {
      code: 'app_id_mismatch',
    });
  }
  const tradeNo = params.out_trade_no ?? '';
  const expected = amountOfTradeNo(tradeNo);
  if (expected === undefined) {
    throw new GatewayError('invalid_request', `Alipay notify for a trade recoup did not open: ${tradeNo}`, {
      code: 'unknown_out_trade_no',
    });
  }
  const total = fromYuan(params.total_amount);
  if (total !== expected) {
    throw new GatewayError(
      'invalid_request',
      `Alipay notify for ${tradeNo} says total_amount ${params.total_amount ?? '(none)'}, the trade asked ${expected} fen`,
      { code: 'amount_mismatch', gatewayPaymentId: tradeNo },
    );
  }
  const id = params.notify_id;
  if (!id) throw new GatewayError('invalid_request', 'Alipay notify without notify_id', { code: 'missing_notify_id' });
  const common = {
    id,
    gatewayPaymentId: tradeNo,
    ...passbackIds(params.passback_params),
    currency: 'CNY',
    method: 'alipay' as const,
  };
  const refunded = fromYuan(params.refund_fee);
  if (params.out_biz_no && refunded !== undefined && refunded > 0) {
    return {
      ...common,
      type: 'refund.succeeded',
      amount: refunded,
      refundId: params.out_biz_no,
      occurredAt: fromBeijingTime(params.gmt_refund) ?? fromBeijingTime(params.notify_time) ?? new Date(),
    };
  }
  switch (params.trade_status) {
    case 'TRADE_SUCCESS':
    case 'TRADE_FINISHED':
      return {
        ...common,
        type: 'payment.succeeded',
        amount: total,
        occurredAt: fromBeijingTime(params.gmt_payment) ?? fromBeijingTime(params.notify_time) ?? new Date(),
      };
    case 'TRADE_CLOSED':
      return {
        ...common,
        type: 'payment.cancelled',
        amount: total,
        occurredAt: fromBeijingTime(params.gmt_close) ?? fromBeijingTime(params.notify_time) ?? new Date(),
      };
    default:
      return null;
  }
}
