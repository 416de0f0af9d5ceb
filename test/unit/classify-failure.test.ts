import { describe, expect, it } from 'vitest';
import {
  classifyFailure,
  customerAdvice,
  failureCodeTables,
  failureDetail,
} from '../../src/recoveries/classify-failure.js';
import { failureCategories, type FailureCategory } from '../../src/domain/vocabulary.js';

type Row = [code: string, category: FailureCategory];

const stripe: Row[] = [
  // decline codes
  ['authentication_required', 'authentication_required'],
  ['approve_with_id', 'insufficient_funds'],
  ['call_issuer', 'account_frozen'],
  ['card_not_supported', 'method_unsupported'],
  ['card_velocity_exceeded', 'insufficient_funds'],
  ['currency_not_supported', 'method_unsupported'],
  ['do_not_honor', 'account_frozen'],
  ['do_not_try_again', 'fraud_suspected'],
  ['duplicate_transaction', 'network'],
  ['expired_card', 'card_data'],
  ['fraudulent', 'fraud_suspected'],
  ['generic_decline', 'insufficient_funds'],
  ['incorrect_number', 'card_data'],
  ['incorrect_cvc', 'card_data'],
  ['incorrect_pin', 'card_data'],
  ['incorrect_zip', 'card_data'],
  ['insufficient_funds', 'insufficient_funds'],
  ['invalid_account', 'account_frozen'],
  ['invalid_amount', 'insufficient_funds'],
  ['invalid_cvc', 'card_data'],
  ['invalid_expiry_month', 'card_data'],
  ['invalid_expiry_year', 'card_data'],
  ['invalid_number', 'card_data'],
  ['invalid_pin', 'card_data'],
  ['issuer_not_available', 'gateway_outage'],
  ['lost_card', 'fraud_suspected'],
  ['merchant_blacklist', 'fraud_suspected'],
  ['new_account_information_available', 'card_data'],
  ['no_action_taken', 'account_frozen'],
  ['not_permitted', 'account_frozen'],
  ['offline_pin_required', 'authentication_required'],
  ['online_or_offline_pin_required', 'authentication_required'],
  ['pickup_card', 'fraud_suspected'],
  ['pin_try_exceeded', 'account_frozen'],
  ['processing_error', 'gateway_outage'],
  ['reenter_transaction', 'gateway_outage'],
  ['restricted_card', 'account_frozen'],
  ['revocation_of_all_authorizations', 'account_frozen'],
  ['revocation_of_authorization', 'account_frozen'],
  ['security_violation', 'account_frozen'],
  ['service_not_allowed', 'method_unsupported'],
  ['stolen_card', 'fraud_suspected'],
  ['stop_payment_order', 'account_frozen'],
  ['testmode_decline', 'method_unsupported'],
  ['transaction_not_allowed', 'method_unsupported'],
  ['try_again_later', 'insufficient_funds'],
  ['withdrawal_count_limit_exceeded', 'insufficient_funds'],
  // error codes and types
  ['card_declined', 'insufficient_funds'],
  ['api_error', 'gateway_outage'],
  ['api_connection_error', 'network'],
  ['rate_limit', 'gateway_outage'],
  ['requires_action', 'authentication_required'],
  ['payment_intent_authentication_failure', 'authentication_required'],
  ['payment_intent_payment_attempt_expired', 'abandoned'],
  ['payment_method_customer_decline', 'abandoned'],
  ['payment_method_provider_timeout', 'network'],
  ['payment_method_not_available', 'gateway_outage'],
  ['payment_intent_incompatible_payment_method', 'method_unsupported'],
  ['amount_too_large', 'method_unsupported'],
  ['postal_code_invalid', 'card_data'],
  ['coupon_expired', 'coupon_invalid'],
  ['balance_insufficient', 'unknown'],
  ['invalid_request_error', 'unknown'],
  // advice codes
  ['confirm_card_data', 'card_data'],
];

const alipay: Row[] = [
  ['ACQ.SYSTEM_ERROR', 'gateway_outage'],
  ['AQC.SYSTEM_ERROR', 'gateway_outage'],
  ['aop.unknow-error', 'gateway_outage'],
  ['20000', 'gateway_outage'],
  ['ACQ.PULL_MOBILE_CASHIER_FAIL', 'gateway_outage'],
  ['ACQ.BUYER_BALANCE_NOT_ENOUGH', 'insufficient_funds'],
  ['ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH', 'insufficient_funds'],
  ['ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR', 'insufficient_funds'],
  ['ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR', 'insufficient_funds'],
  ['ACQ.PAYMENT_FAIL', 'insufficient_funds'],
  ['USER_BALANCE_NOT_ENOUGH', 'insufficient_funds'],
  ['USER_AMOUNT_EXCEED_LIMIT', 'insufficient_funds'],
  ['ACQ.PAYMENT_AUTH_CODE_INVALID', 'authentication_required'],
  ['EXPIRED_CODE', 'authentication_required'],
  ['USER_PAYMENT_VERIFICATION_FAILED', 'authentication_required'],
  ['ACQ.BUYER_ENABLE_STATUS_FORBID', 'account_frozen'],
  ['ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT', 'account_frozen'],
  ['ACQ.ERROR_BALANCE_PAYMENT_DISABLE', 'account_frozen'],
  ['ACQ.MOBILE_PAYMENT_SWITCH_OFF', 'account_frozen'],
  ['USER_STATUS_ABNORMAL', 'account_frozen'],
  ['ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE', 'method_unsupported'],
  ['ACQ.TOTAL_FEE_EXCEED', 'method_unsupported'],
  ['ACQ.BEYOND_PAY_RESTRICTION', 'method_unsupported'],
  ['CURRENCY_NOT_SUPPORT', 'method_unsupported'],
  ['ACQ.PAYMENT_REQUEST_HAS_RISK', 'fraud_suspected'],
  ['RISK_REJECT', 'fraud_suspected'],
  ['ACQ.TRADE_HAS_CLOSE', 'abandoned'],
  ['TRADE_CLOSED', 'abandoned'],
  ['WAIT_BUYER_PAY', 'abandoned'],
  ['ACQ.INVALID_PARAMETER', 'unknown'],
  ['ACQ.SELLER_BEEN_BLOCKED', 'unknown'],
  ['ACQ.ACCESS_FORBIDDEN', 'unknown'],
];

const wechatPay: Row[] = [
  ['SYSTEMERROR', 'gateway_outage'],
  ['SYSTEM_ERROR', 'gateway_outage'],
  ['BANKERROR', 'gateway_outage'],
  ['BANK_ERROR', 'gateway_outage'],
  ['FREQUENCY_LIMITED', 'gateway_outage'],
  ['NOTENOUGH', 'insufficient_funds'],
  ['RULE_LIMIT', 'insufficient_funds'],
  ['PAYERROR', 'insufficient_funds'],
  ['TRADE_ERROR', 'insufficient_funds'],
  ['USERPAYING', 'authentication_required'],
  ['AUTHCODEEXPIRE', 'authentication_required'],
  ['AUTH_CODE_INVALID', 'authentication_required'],
  ['ACCOUNTERROR', 'account_frozen'],
  ['ACCOUNT_ERROR', 'account_frozen'],
  ['NOTSUPORTCARD', 'method_unsupported'],
  ['ORDERCLOSED', 'abandoned'],
  ['ORDER_CLOSED', 'abandoned'],
  ['CLOSED', 'abandoned'],
  ['NOTPAY', 'abandoned'],
  ['REVOKED', 'abandoned'],
  ['PARAM_ERROR', 'unknown'],
  ['SIGN_ERROR', 'unknown'],
  ['NO_AUTH', 'unknown'],
  ['OUT_TRADE_NO_USED', 'unknown'],
];

const generic: Row[] = [
  ['timeout', 'network'],
  ['ETIMEDOUT', 'network'],
  ['ECONNRESET', 'network'],
  ['ENOTFOUND', 'network'],
  ['408', 'network'],
  ['500', 'gateway_outage'],
  ['502', 'gateway_outage'],
  ['503', 'gateway_outage'],
  ['504', 'gateway_outage'],
  ['429', 'gateway_outage'],
  ['service_unavailable', 'gateway_outage'],
  ['coupon_invalid', 'coupon_invalid'],
  ['checkout_abandoned', 'abandoned'],
];

describe('classifyFailure', () => {
  it.each(stripe)('stripe %s → %s', (code, category) => {
    expect(classifyFailure({ gateway: 'stripe', code })).toBe(category);
  });

  it.each(alipay)('alipay %s → %s', (code, category) => {
    expect(classifyFailure({ gateway: 'alipay', code })).toBe(category);
  });

  it.each(wechatPay)('wechat_pay %s → %s', (code, category) => {
    expect(classifyFailure({ gateway: 'wechat_pay', code })).toBe(category);
  });

  it.each(generic)('any gateway %s → %s', (code, category) => {
    expect(classifyFailure({ code })).toBe(category);
    expect(classifyFailure({ gateway: 'stripe', code })).toBe(category);
  });

  it('ignores case and surrounding space in codes and gateway names', () => {
    expect(classifyFailure({ gateway: 'Stripe', code: ' Expired_Card ' })).toBe('card_data');
    expect(classifyFailure({ gateway: 'ALIPAY', code: 'acq.buyer_balance_not_enough' })).toBe('insufficient_funds');
    expect(classifyFailure({ gateway: 'WeChat Pay', code: 'notenough' })).toBe('insufficient_funds');
  });

  it('accepts gateway aliases and a missing gateway', () => {
    expect(classifyFailure({ gateway: 'wechat', code: 'USERPAYING' })).toBe('authentication_required');
    expect(classifyFailure({ gateway: 'wxpay', code: 'ORDERCLOSED' })).toBe('abandoned');
    expect(classifyFailure({ code: 'ACQ.BUYER_ENABLE_STATUS_FORBID' })).toBe('account_frozen');
    expect(classifyFailure({ gateway: 'sandbox', code: 'stolen_card' })).toBe('fraud_suspected');
  });

  it("falls back to the other gateways' tables when the named gateway does not know the code", () => {
    expect(classifyFailure({ gateway: 'stripe', code: 'NOTENOUGH' })).toBe('insufficient_funds');
    expect(classifyFailure({ gateway: 'alipay', code: 'lost_card' })).toBe('fraud_suspected');
  });

  it('treats null like a missing field and survives hostile gateway names', () => {
    expect(classifyFailure({ gateway: null, code: null, message: null })).toBe('unknown');
    expect(classifyFailure({ gateway: null, code: 'expired_card' })).toBe('card_data');
    expect(classifyFailure({ gateway: 'constructor', code: 'toString' })).toBe('unknown');
    expect(classifyFailure({ gateway: '__proto__', code: '__proto__' })).toBe('unknown');
  });

  it('takes a category name as the code itself', () => {
    for (const category of failureCategories) expect(classifyFailure({ code: category })).toBe(category);
  });

  it('returns unknown for an unknown or missing code', () => {
    expect(classifyFailure({ gateway: 'stripe', code: 'something_new' })).toBe('unknown');
    expect(classifyFailure({ gateway: 'stripe' })).toBe('unknown');
    expect(classifyFailure({})).toBe('unknown');
    expect(classifyFailure({ code: '' })).toBe('unknown');
    expect(classifyFailure({ code: '402' })).toBe('unknown');
  });

  it('uses a specific code inside a vague card_declined', () => {
    expect(classifyFailure({ gateway: 'stripe', code: 'card_declined', message: 'decline_code=stolen_card' })).toBe(
      'fraud_suspected',
    );
    expect(classifyFailure({ gateway: 'stripe', code: 'card_declined:expired_card' })).toBe('card_data');
    expect(classifyFailure({ gateway: 'alipay', code: '40004', message: 'Business Failed ACQ.TRADE_HAS_CLOSE' })).toBe(
      'abandoned',
    );
    expect(classifyFailure({ code: 'declined', message: 'connect ETIMEDOUT 10.0.0.1:443' })).toBe('network');
  });

  it('keeps the vague meaning when the message has no code in it', () => {
    expect(classifyFailure({ gateway: 'stripe', code: 'card_declined', message: 'Your card was declined.' })).toBe(
      'insufficient_funds',
    );
    // Prose is not mistaken for codes: "expired" here is a word, not a code.
    expect(classifyFailure({ gateway: 'stripe', code: 'card_declined', message: 'Your card has expired.' })).toBe(
      'insufficient_funds',
    );
    expect(classifyFailure({ gateway: 'stripe', code: 'generic_decline', message: 'Amount 500 declined' })).toBe(
      'insufficient_funds',
    );
  });

  it('does not let the message override a specific code', () => {
    expect(classifyFailure({ gateway: 'stripe', code: 'insufficient_funds', message: 'previous: stolen_card' })).toBe(
      'insufficient_funds',
    );
  });

  it('classifies by message alone when no code is given', () => {
    expect(classifyFailure({ gateway: 'wechat_pay', message: 'SYSTEMERROR 系统超时' })).toBe('gateway_outage');
    expect(classifyFailure({ message: 'Something odd happened' })).toBe('unknown');
  });

  it('has tables without contradictions and with only real categories', () => {
    for (const table of Object.values(failureCodeTables)) {
      for (const [code, category] of table) {
        expect(code).toBe(code.toLowerCase());
        expect(failureCategories).toContain(category);
      }
    }
  });
});

describe('customerAdvice', () => {
  const expected: Array<[FailureCategory, ReturnType<typeof customerAdvice>]> = [
    ['network', 'retry_same_method'],
    ['gateway_outage', 'retry_same_method'],
    ['insufficient_funds', 'retry_same_method'],
    ['card_data', 'update_details'],
    ['authentication_required', 'customer_present'],
    ['account_frozen', 'use_another_method'],
    ['method_unsupported', 'use_another_method'],
    ['fraud_suspected', 'no_reminders'],
    ['coupon_invalid', 'retry_same_method'],
    ['abandoned', 'retry_same_method'],
    ['unknown', 'use_another_method'],
  ];

  it.each(expected)('%s → %s', (category, advice) => {
    expect(customerAdvice(category)).toBe(advice);
  });

  it('covers every category', () => {
    expect(expected.map(([category]) => category).sort()).toEqual([...failureCategories].sort());
  });
});

describe('failureDetail', () => {
  it.each([
    ['card_data', 'expired_card', 'card_expired'],
    ['card_data', 'EXPIRED_CARD', 'card_expired'],
    ['card_data', 'card_declined:expired_card', 'card_expired'],
    ['card_data', 'incorrect_cvc', undefined],
    ['card_data', null, undefined],
    // Only as a refinement of its own category: a code from another failure tells nothing here.
    ['insufficient_funds', 'expired_card', undefined],
  ] as const)('%s with %s → %s', (category, code, detail) => {
    expect(failureDetail(category, code)).toBe(detail);
  });
});
