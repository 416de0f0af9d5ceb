import { describe, expect, it } from 'vitest';
import {
  customerCountry,
  examplePhone,
  likelyCountry,
  methodsInCustomerOrder,
  preselectedMethod,
} from '../../src/payments/method-choice.js';

describe('customerCountry', () => {
  it.each([
    // The number on file wins over everything else.
    [{ phone: '+12015550123', locale: 'zh-CN', currency: 'CNY' }, 'US'],
    [{ phone: '+8613800138000', locale: 'en-US', currency: 'USD' }, 'CN'],
    // Then a region the locale names, then the currency's country, then the language's likely region.
    [{ phone: null, locale: 'en-GB', currency: 'USD' }, 'GB'],
    [{ phone: null, locale: 'zh_CN.UTF-8', currency: 'USD' }, 'CN'],
    [{ phone: null, locale: 'en', currency: 'CNY' }, 'CN'],
    [{ phone: null, locale: 'en', currency: 'EUR' }, 'US'],
    [{ phone: null, locale: 'zh', currency: 'EUR' }, 'CN'],
    [{ phone: 'not a number', locale: 'not a locale!', currency: 'EUR' }, undefined],
  ] as const)('%o → %s', (customer, country) => {
    expect(customerCountry(customer)).toBe(country);
  });
});

describe('methodsInCustomerOrder', () => {
  it('puts the wallets first in China and cards first elsewhere, keeping the step order within each', () => {
    expect(methodsInCustomerOrder(['card', 'wechat_pay', 'alipay'], 'CN')).toEqual(['wechat_pay', 'alipay', 'card']);
    expect(methodsInCustomerOrder(['alipay', 'wechat_pay', 'card'], 'US')).toEqual(['card', 'alipay', 'wechat_pay']);
    expect(methodsInCustomerOrder(['wechat_pay', 'alipay'], 'US')).toEqual(['wechat_pay', 'alipay']);
    expect(methodsInCustomerOrder(['alipay', 'card'], undefined)).toEqual(['card', 'alipay']);
  });
});

describe('preselectedMethod', () => {
  const methods = ['card', 'alipay', 'wechat_pay'] as const;

  it('takes the first method when nothing failed, or when the failed method is not on offer', () => {
    expect(preselectedMethod(methods, null)).toBe('card');
    expect(preselectedMethod(['alipay'], { category: 'account_frozen', code: 'do_not_honor', method: 'card' })).toBe(
      'alipay',
    );
    expect(preselectedMethod([], null)).toBeNull();
  });

  it('keeps the failed method while it can still work', () => {
    for (const [category, code] of [
      ['insufficient_funds', 'insufficient_funds'],
      ['card_data', 'incorrect_cvc'],
      ['authentication_required', 'authentication_required'],
      ['network', null],
    ] as const) {
      expect(preselectedMethod(['alipay', 'card'], { category, code, method: 'card' })).toBe('card');
    }
  });

  it('moves to another method when the failure says the method cannot work', () => {
    expect(preselectedMethod(methods, { category: 'account_frozen', code: 'do_not_honor', method: 'card' })).toBe(
      'alipay',
    );
    expect(preselectedMethod(methods, { category: 'method_unsupported', code: null, method: 'alipay' })).toBe('card');
    expect(preselectedMethod(['card'], { category: 'account_frozen', code: null, method: 'card' })).toBeNull();
  });

  it('pre-selects nothing after an expired card', () => {
    expect(preselectedMethod(methods, { category: 'card_data', code: 'expired_card', method: 'card' })).toBeNull();
  });
});

describe('examplePhone', () => {
  it("gives a mobile number of the customer's country, else of the fallback", () => {
    expect(examplePhone('US', 'CN')).toBe('+1 201 555 0123');
    expect(examplePhone('CN', 'US')).toBe('+86 131 2345 6789');
    expect(examplePhone('GB', 'US')).toMatch(/^\+44 7\d{3} \d{6}$/);
    expect(examplePhone(undefined, 'US')).toBe('+1 201 555 0123');
  });
});

describe('likelyCountry', () => {
  it("gives the country a page locale most likely means, for the phone example's fallback", () => {
    expect(['en', 'zh-CN', 'zh-TW', 'ja', 'ko', 'es', 'fr', 'de'].map(likelyCountry)).toEqual([
      'US',
      'CN',
      'TW',
      'JP',
      'KR',
      'ES',
      'FR',
      'DE',
    ]);
    expect(likelyCountry('not a locale!')).toBe('US');
  });
});
