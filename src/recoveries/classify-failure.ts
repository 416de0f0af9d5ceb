import { failureCategories } from '../domain/vocabulary.js';
import type { FailureCategory, FailureDetail } from '../domain/vocabulary.js';

/**
 * Failure classification: a gateway's failure code → the recoup failure category that
 * decides how (and whether) a recovery reminds the customer.
 *
 * Categories, as used in the tables below:
 * - `network`: the shop or gateway could not be reached, or the outcome is uncertain.
 *   Query the payment before anything else; the same method is fine.
 * - `gateway_outage`: the gateway or processor failed (5xx, system errors, rate limits).
 *   Wait until it is healthy; the same method is fine.
 * - `insufficient_funds`: a soft decline — balance, daily/monthly limits, velocity, and
 *   the generic declines. The same method later, or another method now.
 * - `card_data`: expired card, wrong number/CVC/postcode/PIN. The customer must enter new details.
 * - `authentication_required`: 3-D Secure, wallet password, expired payment code. The
 *   customer must be present.
 * - `account_frozen`: the bank or wallet refuses this customer (do_not_honor, frozen or
 *   unverified account, switched-off wallet features). Another method; contact the bank/wallet.
 * - `method_unsupported`: this method cannot pay this order (card type, currency, amount
 *   limits). Another method; never the same.
 * - `fraud_suspected`: lost/stolen card, risk-control rejection, do_not_try_again. No
 *   reminders by default.
 * - `coupon_invalid`: the shop reports that the coupon failed.
 * - `abandoned`: the customer left: the trade expired or was closed unpaid.
 * - `unknown`: anything else, including merchant-side errors (bad parameters, signature,
 *   permissions) that no customer action can fix.
 */
type CodeTable = Partial<Record<FailureCategory, readonly string[]>>;

/**
 * Stripe: the `decline_code` of card errors, the `code` of API errors, `advice_code`
 * values and error types (https://docs.stripe.com/declines/codes, /error-codes).
 */
const stripeTable: CodeTable = {
  network: [
    'api_connection_error',
    'stripeconnectionerror',
    'payment_method_provider_timeout',
    // A matching payment went through moments ago: the outcome must be queried first.
    'duplicate_transaction',
  ],
  gateway_outage: [
    'api_error',
    'stripeapierror',
    'processing_error',
    'issuer_not_available',
    'reenter_transaction',
    'rate_limit',
    'rate_limit_error',
    'lock_timeout',
    'payment_method_not_available',
  ],
  insufficient_funds: [
    'insufficient_funds',
    'card_velocity_exceeded',
    'withdrawal_count_limit_exceeded',
    'try_again_later',
    'approve_with_id',
    'invalid_amount',
    // The generic declines. The issuer gave no reason, and most such declines are soft
    // (limits, risk scoring, a temporary block), so they get the reaction that fits most
    // of them: the same method later or another now. `unknown` would lose that
    // guidance; `account_frozen` would wrongly steer every customer away from their card.
    'card_declined',
    'generic_decline',
  ],
  card_data: [
    'expired_card',
    'incorrect_cvc',
    'invalid_cvc',
    'incorrect_number',
    'invalid_number',
    'invalid_expiry_month',
    'invalid_expiry_year',
    'incorrect_zip',
    'postal_code_invalid',
    'incorrect_address',
    'incorrect_pin',
    'invalid_pin',
    'new_account_information_available',
    'confirm_card_data',
  ],
  authentication_required: [
    'authentication_required',
    'requires_action',
    'payment_intent_action_required',
    'payment_intent_authentication_failure',
    'setup_intent_authentication_failure',
    'offline_pin_required',
    'online_or_offline_pin_required',
  ],
  account_frozen: [
    'do_not_honor',
    'call_issuer',
    'invalid_account',
    'no_action_taken',
    'not_permitted',
    'restricted_card',
    'security_violation',
    'stop_payment_order',
    'revocation_of_authorization',
    'revocation_of_all_authorizations',
    'pin_try_exceeded',
  ],
  method_unsupported: [
    'card_not_supported',
    'currency_not_supported',
    'transaction_not_allowed',
    'service_not_allowed',
    'invalid_card_type',
    'payment_method_unactivated',
    'payment_intent_incompatible_payment_method',
    'payment_method_currency_mismatch',
    'country_unsupported',
    'amount_too_large',
    'amount_too_small',
    'alipay_upgrade_required',
    // A test card number on a live account: a real card (or another method) is needed.
    'testmode_decline',
  ],
  fraud_suspected: [
    'fraudulent',
    'stolen_card',
    'lost_card',
    'pickup_card',
    'merchant_blacklist',
    'do_not_try_again',
    'highest_risk_level',
  ],
  coupon_invalid: ['coupon_expired'],
  abandoned: ['payment_intent_payment_attempt_expired', 'payment_method_customer_decline'],
  unknown: [
    'balance_insufficient', // the merchant's Stripe balance, not the customer's
    'authentication_error',
    'invalid_request_error',
    'api_key_expired',
    'idempotency_error',
    'payment_intent_unexpected_state',
  ],
};

/**
 * Alipay: trade API codes (`sub_code` ACQ.*, gateway `code`s), trade statuses, and
 * Alipay+ / Antom result codes.
 */
const alipayTable: CodeTable = {
  gateway_outage: [
    'ACQ.SYSTEM_ERROR',
    'AQC.SYSTEM_ERROR', // sic: Alipay documents this misspelling for some APIs
    'ACQ.PULL_MOBILE_CASHIER_FAIL',
    'isp.unknow-error', // sic
    'aop.unknow-error', // sic
    'isp.unknown-error',
    '20000', // gateway code: Service Currently Unavailable
    'SYSTEM_ERROR',
    'UNKNOWN_EXCEPTION',
    'REQUEST_TRAFFIC_EXCEED_LIMIT',
  ],
  insufficient_funds: [
    'ACQ.BUYER_BALANCE_NOT_ENOUGH',
    'ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH',
    'ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR',
    'ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR',
    'ACQ.PAYMENT_FAIL', // generic: refresh and retry, else another method
    '40004', // gateway code: Business Failed; the sub_code, when present, is more specific
    'USER_BALANCE_NOT_ENOUGH',
    'USER_AMOUNT_EXCEED_LIMIT',
    'PAYMENT_COUNT_EXCEED_LIMIT',
  ],
  authentication_required: [
    'ACQ.PAYMENT_AUTH_CODE_INVALID', // the customer's one-time payment code: refresh and present again
    'EXPIRED_CODE',
    'INVALID_CODE',
    'USER_PAYMENT_VERIFICATION_FAILED',
  ],
  account_frozen: [
    'ACQ.BUYER_ENABLE_STATUS_FORBID',
    'ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT',
    'ACQ.ERROR_BALANCE_PAYMENT_DISABLE',
    'ACQ.MOBILE_PAYMENT_SWITCH_OFF',
    'ACQ.USER_FACE_PAYMENT_SWITCH_OFF',
    'USER_STATUS_ABNORMAL',
    'USER_KYC_NOT_QUALIFIED',
    'VERIFY_TIMES_EXCEED_LIMIT',
  ],
  method_unsupported: [
    'ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE',
    'ACQ.TOTAL_FEE_EXCEED',
    'ACQ.BEYOND_PAY_RESTRICTION',
    'ACQ.BEYOND_PER_RECEIPT_RESTRICTION',
    'ACQ.BUYER_SELLER_EQUAL',
    'CURRENCY_NOT_SUPPORT',
    'PAYMENT_AMOUNT_EXCEED_LIMIT',
    'INVALID_PAYMENT_CODE',
  ],
  fraud_suspected: ['ACQ.PAYMENT_REQUEST_HAS_RISK', 'RISK_REJECT', 'FRAUD_REJECT'],
  abandoned: ['ACQ.TRADE_HAS_CLOSE', 'TRADE_CLOSED', 'WAIT_BUYER_PAY', 'ORDER_IS_CLOSED'],
  unknown: [
    'ACQ.INVALID_PARAMETER',
    'ACQ.ACCESS_FORBIDDEN',
    'ACQ.EXIST_FORBIDDEN_WORD',
    'ACQ.PARTNER_ERROR',
    'ACQ.CONTEXT_INCONSISTENT',
    'ACQ.TRADE_BUYER_NOT_MATCH',
    'ACQ.SELLER_BEEN_BLOCKED',
    'ACQ.INVALID_STORE_ID',
    'ACQ.TRADE_NOT_EXIST',
    'ACCESS_DENIED',
    'PROCESS_FAIL',
  ],
};

/** WeChat Pay: APIv3 error codes, APIv2 (micropay) err_codes and trade states. */
const wechatPayTable: CodeTable = {
  gateway_outage: ['SYSTEMERROR', 'SYSTEM_ERROR', 'BANKERROR', 'BANK_ERROR', 'FREQUENCY_LIMITED'],
  insufficient_funds: [
    'NOTENOUGH',
    'RULE_LIMIT',
    // Generic failures (a bank refusal without reason): treated like a generic card decline.
    'PAYERROR',
    'TRADE_ERROR',
  ],
  authentication_required: ['USERPAYING', 'AUTHCODEEXPIRE', 'AUTH_CODE_INVALID', 'AUTH_CODE_ERROR'],
  account_frozen: ['ACCOUNTERROR', 'ACCOUNT_ERROR', 'USER_ACCOUNT_ABNORMAL'],
  method_unsupported: ['NOTSUPORTCARD' /* sic */, 'NOT_SUPPORT_CARD'],
  abandoned: ['ORDERCLOSED', 'ORDER_CLOSED', 'CLOSED', 'NOTPAY', 'REVOKED', 'ORDERREVERSED'],
  unknown: [
    'PARAM_ERROR',
    'SIGN_ERROR',
    'NO_AUTH',
    'NOAUTH',
    'APPID_MCHID_NOT_MATCH',
    'MCH_NOT_EXISTS',
    'OUT_TRADE_NO_USED',
    'INVALID_REQUEST',
    'OPENID_MISMATCH',
    'BUYER_MISMATCH',
  ],
};

/** Codes from any source: transport errors, HTTP-ish names, and what a shop reports itself. */
const genericTable: CodeTable = {
  network: [
    'timeout',
    'timed_out',
    'request_timeout',
    'gateway_timeout',
    'network_error',
    'connection_error',
    'socket_hang_up',
    'etimedout',
    'esockettimedout',
    'econnreset',
    'econnrefused',
    'econnaborted',
    'enotfound',
    'eai_again',
    'epipe',
    'ehostunreach',
    'enetunreach',
    'und_err_connect_timeout',
    'und_err_socket',
  ],
  gateway_outage: [
    'internal_server_error',
    'bad_gateway',
    'service_unavailable',
    'too_many_requests',
    'rate_limited',
    'processor_error',
    'gateway_error',
  ],
  insufficient_funds: ['declined', 'payment_declined'],
  coupon_invalid: ['coupon_invalid', 'invalid_coupon', 'coupon_not_applicable', 'coupon_not_found'],
  abandoned: ['checkout_abandoned', 'expired', 'customer_cancelled', 'canceled_by_customer', 'cancelled_by_customer'],
};

/**
 * Codes that only say "declined". When one of these (or no code) is reported, a more
 * specific code found in the code string or the message decides, e.g. a Stripe
 * `card_declined` whose message carries `decline_code: stolen_card`.
 */
const vagueCodes = new Set(['card_declined', 'generic_decline', 'declined', 'payment_declined', '40004', 'payerror']);

export const failureGateways = ['stripe', 'alipay', 'wechat_pay'] as const;
export type FailureGateway = (typeof failureGateways)[number];

// A Map, not an object literal: a shop-supplied name like "constructor" must not hit Object.prototype.
const gatewayAliases = new Map<string, FailureGateway>([
  ['stripe', 'stripe'],
  ['alipay', 'alipay'],
  ['alipay_plus', 'alipay'],
  ['alipayplus', 'alipay'],
  ['antom', 'alipay'],
  ['wechat_pay', 'wechat_pay'],
  ['wechatpay', 'wechat_pay'],
  ['wechat', 'wechat_pay'],
  ['weixin', 'wechat_pay'],
  ['wxpay', 'wechat_pay'],
]);

function buildIndex(table: CodeTable): ReadonlyMap<string, FailureCategory> {
  const index = new Map<string, FailureCategory>();
  for (const [category, codes] of Object.entries(table) as Array<[FailureCategory, readonly string[]]>) {
    for (const code of codes) {
      const key = code.toLowerCase();
      const existing = index.get(key);
      if (existing && existing !== category)
        throw new Error(`failure code ${code} is both ${existing} and ${category}`);
      index.set(key, category);
    }
  }
  return index;
}

const gatewayIndexes: Record<FailureGateway, ReadonlyMap<string, FailureCategory>> = {
  stripe: buildIndex(stripeTable),
  alipay: buildIndex(alipayTable),
  wechat_pay: buildIndex(wechatPayTable),
};
const genericIndex = buildIndex(genericTable);

/** Every code each gateway table knows, lowercased, with its category (for docs and tests). */
export const failureCodeTables: Readonly<Record<FailureGateway | 'generic', ReadonlyMap<string, FailureCategory>>> = {
  ...gatewayIndexes,
  generic: genericIndex,
};

/** What the shop reported about a failed payment; null and undefined both mean "not reported". */
export interface FailureInput {
  /** Gateway name as the shop reports it (`stripe`, `alipay`, `wechat_pay`, aliases like `wechat`). */
  gateway?: string | null | undefined;
  /** Failure code: a Stripe decline/error code, an Alipay (sub_)code, a WeChat Pay code, or an HTTP status. */
  code?: string | null | undefined;
  message?: string | null | undefined;
}

/**
 * The failure category of a failed payment. Codes are case-insensitive. A code is looked
 * up in the named gateway's table first (codes can mean different things at different
 * gateways), then in the generic table, then in the other gateways' tables (shops do not
 * always name the gateway). A code that names a category itself (`fraud_suspected`) is
 * taken as is. An unknown code is `unknown`.
 */
export function classifyFailure(input: FailureInput): FailureCategory {
  const gateway = input.gateway ? gatewayAliases.get(normalize(input.gateway).replace(/[\s-]/g, '_')) : undefined;
  const code = input.code?.trim() ?? '';
  const direct = code === '' ? undefined : lookup(code, gateway);
  if (direct && !vagueCodes.has(normalize(code))) return direct;

  // The code is missing, vague or unknown: a specific code inside it or in the message decides.
  for (const token of [...tokens(code, true), ...tokens(input.message ?? '', false)]) {
    if (vagueCodes.has(token)) continue;
    const found = lookup(token, gateway);
    if (found) return found;
  }
  return direct ?? 'unknown';
}

function lookup(code: string, gateway: FailureGateway | undefined): FailureCategory | undefined {
  const key = normalize(code);
  if (isCategory(key)) return key;
  if (gateway) {
    const own = gatewayIndexes[gateway].get(key);
    if (own) return own;
  }
  const generic = genericIndex.get(key) ?? httpStatusCategory(key);
  if (generic) return generic;
  for (const other of failureGateways) {
    if (other === gateway) continue;
    const found = gatewayIndexes[other].get(key);
    if (found) return found;
  }
  return undefined;
}

function httpStatusCategory(key: string): FailureCategory | undefined {
  if (key === '408') return 'network';
  if (key === '429' || /^5\d\d$/.test(key)) return 'gateway_outage';
  return undefined;
}

/**
 * Code-like words of a text. In a code string every word counts ("card_declined:lost_card");
 * in a message only words shaped like codes (`insufficient_funds`, `ACQ.SYSTEM_ERROR`,
 * `NOTENOUGH`), so plain prose ("Your card has expired.") and amounts are not mistaken for codes.
 */
function tokens(text: string, isCode: boolean): string[] {
  return text
    .split(/[^A-Za-z0-9_.-]+/)
    .map((t) => t.replace(/^[.-]+|[.-]+$/g, ''))
    .filter((t) => t.length >= 3 && (isCode || /\w[_.]\w/.test(t) || /^[A-Z][A-Z0-9]{5,}$/.test(t)))
    .filter((t) => isCode || !/^[\d.]+$/.test(t))
    .map(normalize);
}

function normalize(code: string): string {
  return code.trim().toLowerCase();
}

function isCategory(key: string): key is FailureCategory {
  return (failureCategories as readonly string[]).includes(key);
}

/** What a reminder should ask of the customer. */
export type CustomerAdvice =
  'retry_same_method' | 'use_another_method' | 'update_details' | 'customer_present' | 'no_reminders';

const adviceByCategory: Record<FailureCategory, CustomerAdvice> = {
  network: 'retry_same_method',
  gateway_outage: 'retry_same_method',
  // "Same method later, or another now": reminders come later, and the retry page offers the others too.
  insufficient_funds: 'retry_same_method',
  card_data: 'update_details',
  authentication_required: 'customer_present',
  account_frozen: 'use_another_method',
  method_unsupported: 'use_another_method',
  fraud_suspected: 'no_reminders',
  // Nothing was wrong with the payment method; the reminder explains the real total.
  coupon_invalid: 'retry_same_method',
  abandoned: 'retry_same_method',
  // Without a reason, suggesting another method is the advice least likely to fail twice.
  unknown: 'use_another_method',
};

/** The reaction to a failure category: whether and how to remind, and what to offer. */
export function customerAdvice(category: FailureCategory): CustomerAdvice {
  return adviceByCategory[category];
}

/** Codes (any gateway's, lowercased) that say the card itself has expired. */
const expiredCardCodes: ReadonlySet<string> = new Set(['expired_card', 'card_expired']);

/**
 * What a customer should be told beyond the category, from the failure's code: an expired card
 * is a `card_data` failure, but checking the details typed cannot help; another card or method can.
 */
export function failureDetail(
  category: FailureCategory | null | undefined,
  code: string | null | undefined,
): FailureDetail | undefined {
  if (category !== 'card_data' || !code) return undefined;
  return tokens(code, true).some((token) => expiredCardCodes.has(token)) ? 'card_expired' : undefined;
}
