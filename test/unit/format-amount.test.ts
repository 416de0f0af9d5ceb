import { describe, expect, it } from 'vitest';
import { isRecoupError } from '../../src/platform/errors.js';
import { formatAmount, minorUnitDigits } from '../../src/platform/format-amount.js';

// Node 20's ICU: en puts the ISO code and a NO-BREAK SPACE (U+00A0) before currencies it has no
// symbol for (KWD), and prefixes CNY with CN¥ (zh-CN: ¥) and JPY with JP¥ in zh-CN.
const nbsp = '\u00a0';

describe('minorUnitDigits', () => {
  it('comes from Intl per currency', () => {
    expect(minorUnitDigits('JPY')).toBe(0);
    expect(minorUnitDigits('CNY')).toBe(2);
    expect(minorUnitDigits('USD')).toBe(2);
    expect(minorUnitDigits('EUR')).toBe(2);
    expect(minorUnitDigits('KWD')).toBe(3);
    expect(minorUnitDigits('CLF')).toBe(4);
    expect(minorUnitDigits('kwd')).toBe(3);
  });

  it('rejects a malformed code', () => {
    expect(() => minorUnitDigits('US')).toThrow(expect.objectContaining({ code: 'validation' }));
  });
});

describe('formatAmount', () => {
  it.each([
    [12900, 'CNY', 'CN¥129.00'],
    [4999, 'USD', '$49.99'],
    [1234567, 'JPY', '¥1,234,567'],
    [1234, 'KWD', `KWD${nbsp}1.234`],
    [123450, 'EUR', '€1,234.50'],
  ])('formats %i %s in en as %s', (minor, currency, expected) => {
    expect(formatAmount(minor, currency, 'en')).toBe(expected);
  });

  it.each([
    [12900, 'CNY', '¥129.00'],
    [4999, 'USD', 'US$49.99'],
    [1234567, 'JPY', 'JP¥1,234,567'],
    [1234, 'KWD', `KWD${nbsp}1.234`],
    [123450, 'EUR', '€1,234.50'],
  ])('formats %i %s in zh-CN as %s', (minor, currency, expected) => {
    expect(formatAmount(minor, currency, 'zh-CN')).toBe(expected);
  });

  it('is exact for amounts where dividing as a float drifts', () => {
    // 9007199254740991 / 100 and / 1000 as doubles format as …409.90 and …740.990.
    expect(formatAmount(Number.MAX_SAFE_INTEGER, 'USD', 'en')).toBe('$90,071,992,547,409.91');
    expect(formatAmount(Number.MAX_SAFE_INTEGER, 'KWD', 'en')).toBe(`KWD${nbsp}9,007,199,254,740.991`);
    expect(formatAmount(Number.MAX_SAFE_INTEGER, 'JPY', 'en')).toBe('¥9,007,199,254,740,991');
    expect(formatAmount(123456789012345, 'CNY', 'zh-CN')).toBe('¥1,234,567,890,123.45');
  });

  it('pads small and zero amounts and keeps the sign', () => {
    expect(formatAmount(0, 'JPY', 'en')).toBe('¥0');
    expect(formatAmount(5, 'USD', 'en')).toBe('$0.05');
    expect(formatAmount(5, 'KWD', 'en')).toBe(`KWD${nbsp}0.005`);
    expect(formatAmount(-4999, 'USD', 'en')).toBe('-$49.99');
  });

  it('can show the ISO code instead of the symbol', () => {
    expect(formatAmount(123400, 'INR', 'en')).toBe('₹1,234.00');
    expect(formatAmount(123400, 'INR', 'en', { currencyDisplay: 'code' })).toBe(`INR${nbsp}1,234.00`);
  });

  it('formats alike past the bound of its cache of formats (2,028 locale and currency pairs)', () => {
    const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const locales = [...letters].flatMap((a) => [...letters].map((b) => `en-${a}${b}`));
    for (const pass of [1, 2]) {
      for (const locale of locales) {
        for (const [currency, minor, amount] of [
          ['USD', 4999, 49.99],
          ['JPY', 4999, 4999],
          ['INR', 123456, 1234.56],
        ] as const) {
          const fresh = new Intl.NumberFormat(locale, { style: 'currency', currency }).format(amount);
          expect(formatAmount(minor, currency, locale), `pass ${pass}, ${currency} in ${locale}`).toBe(fresh);
        }
      }
    }
  });

  it('rejects amounts that are not integer minor units', () => {
    for (const bad of [12.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1]) {
      let caught: unknown;
      try {
        formatAmount(bad, 'USD', 'en');
      } catch (err) {
        caught = err;
      }
      expect(isRecoupError(caught, 'validation'), String(bad)).toBe(true);
    }
  });

  it('rejects a malformed currency or locale with a validation error naming the field', () => {
    expect(() => formatAmount(100, 'US', 'en')).toThrow(
      expect.objectContaining({ code: 'validation', issues: [expect.objectContaining({ path: 'currency' })] }),
    );
    expect(() => formatAmount(100, 'USD', 'not a locale!')).toThrow(
      expect.objectContaining({ code: 'validation', issues: [expect.objectContaining({ path: 'locale' })] }),
    );
  });
});
