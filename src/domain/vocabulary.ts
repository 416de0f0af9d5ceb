/** Vocabulary shared by every area: order, recovery, message, channel, payment method. */

export const failureCategories = [
  'network',
  'gateway_outage',
  'insufficient_funds',
  'card_data',
  'authentication_required',
  'account_frozen',
  'method_unsupported',
  'fraud_suspected',
  'coupon_invalid',
  'abandoned',
  'unknown',
] as const;
export type FailureCategory = (typeof failureCategories)[number];

/**
 * A failure the customer is told about more precisely than its category: `card_expired` (a
 * `card_data` failure) means that the same card cannot work again, whatever details are typed.
 */
export const failureDetails = ['card_expired'] as const;
export type FailureDetail = (typeof failureDetails)[number];

export const channels = ['sms', 'email'] as const;
export type Channel = (typeof channels)[number];

/**
 * The `channel` of a retry link ops issued by hand (a person hands it over, e.g. on a support call):
 * nothing was sent, so its message stays `issued`.
 */
export const opsLinkChannel = 'ops';

export const paymentMethods = ['card', 'alipay', 'wechat_pay'] as const;
export type PaymentMethod = (typeof paymentMethods)[number];

export const orderStatuses = ['pending', 'paid', 'cancelled'] as const;
export type OrderStatus = (typeof orderStatuses)[number];

export const recoveryStates = ['active', 'recovered', 'exhausted', 'stopped', 'cancelled'] as const;
export type RecoveryState = (typeof recoveryStates)[number];

export const messageStatuses = [
  'scheduled',
  'sending',
  'sent',
  'delivered',
  'failed',
  'skipped',
  'suppressed',
  'unknown',
  'issued',
] as const;
export type MessageStatus = (typeof messageStatuses)[number];

export const eventTypes = [
  'order.created',
  'payment.failed',
  'payment.succeeded',
  'order.cancelled',
  'customer.updated',
] as const;
export type EventType = (typeof eventTypes)[number];
