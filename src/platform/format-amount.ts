import { RecoupError } from './errors.js';

/**
 * Money for customers: integer minor units → a localised currency string. The decimal point is
 * shifted on the digit string (BigInt), and Intl formats that exact decimal string, so no amount
 * ever passes through a binary float (1234567.89 stays 1234567.89, however large).
 */

const formats = new Map<string, Intl.NumberFormat>();
/** A shop uses a handful of locales and currencies: the bound only keeps odd input from growing the map. */
const maxFormats = 1_024;
/** resolvedOptions() builds a fresh object each call; the answer per currency never changes. */
const minorDigits = new Map<string, number>();

export interface FormatAmountOptions {
  /** `symbol` (default): `₹1,234.00`; `code`: `INR 1,234.00`, plain ASCII apart from the locale's spaces. */
  currencyDisplay?: 'symbol' | 'code';
}

function numberFormat(
  currency: string,
  locale: string,
  currencyDisplay: 'symbol' | 'code' = 'symbol',
): Intl.NumberFormat {
  const key = `${locale}|${currency}|${currencyDisplay}`;
  let format = formats.get(key);
  if (!format) {
    try {
      format = new Intl.NumberFormat(locale, { style: 'currency', currency, currencyDisplay });
    } catch (err) {
      throw new RecoupError('validation', `Cannot format ${currency} in locale "${locale}"`, {
        issues: [{ path: 'locale', message: `"${locale}" is not a valid locale` }],
        cause: err,
      });
    }
    if (formats.size >= maxFormats) formats.clear();
    formats.set(key, format);
  }
  return format;
}

function checkCurrency(currency: string): string {
  if (!/^[A-Za-z]{3}$/.test(currency)) {
    throw new RecoupError('validation', `Invalid currency "${currency}"`, {
      issues: [{ path: 'currency', message: 'must be an ISO 4217 code such as CNY or USD' }],
    });
  }
  return currency.toUpperCase();
}

/**
 * Digits after the decimal point in the currency's minor unit, as Intl (CLDR) knows it: JPY 0,
 * CNY 2, KWD 3. Unknown but well-formed codes get CLDR's default, 2.
 */
export function minorUnitDigits(currency: string): number {
  const code = checkCurrency(currency);
  let digits = minorDigits.get(code);
  if (digits === undefined) {
    digits = numberFormat(code, 'en').resolvedOptions().maximumFractionDigits ?? 2;
    minorDigits.set(code, digits);
  }
  return digits;
}

/** `formatAmount(12900, 'CNY', 'zh-CN')` → `¥129.00`; `formatAmount(4999, 'USD', 'en')` → `$49.99`. */
export function formatAmount(
  minor: number,
  currency: string,
  locale: string,
  options: FormatAmountOptions = {},
): string {
  if (!Number.isSafeInteger(minor)) {
    throw new RecoupError('validation', `Amount ${minor} is not an integer number of minor units`, {
      issues: [{ path: 'amount', message: 'must be a safe integer (minor units)' }],
    });
  }
  const code = checkCurrency(currency);
  const digits = minorUnitDigits(code);
  const negative = minor < 0;
  const magnitude = (negative ? -BigInt(minor) : BigInt(minor)).toString().padStart(digits + 1, '0');
  const whole = magnitude.slice(0, magnitude.length - digits);
  const fraction = magnitude.slice(magnitude.length - digits);
  const decimal = `${negative ? '-' : ''}${whole}${digits > 0 ? `.${fraction}` : ''}`;
  // Intl accepts a decimal string and formats it exactly (ECMA-402 "Intl.NumberFormat v3").
  return numberFormat(code, locale, options.currencyDisplay).format(decimal as `${number}`);
}

let iso4217: ReadonlySet<string> | undefined;

/** An ISO 4217 code Intl knows, and so whose minor unit recoup knows (`USD`, not `usd` or `XYZ`). */
export function isKnownCurrency(code: string): boolean {
  iso4217 ??= new Set(Intl.supportedValuesOf('currency'));
  return /^[A-Z]{3}$/.test(code) && iso4217.has(code);
}

/**
 * A decimal amount as shops write it (`"12.50"` USD → 1250, `"1500"` JPY → 1500) in the currency's
 * minor units, worked on the digit string so no float rounds it. More fraction digits than the
 * currency has are accepted only as zeros (`"1000.00"` JPY is 1000, `"10.005"` USD is undefined),
 * as is anything that is not a plain non-negative decimal or is too large to count exactly.
 */
export function decimalToMinor(value: string | number, currency: string): number | undefined {
  const written = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value.trim();
  const match = /^(\d{1,16})(?:\.(\d{1,12}))?$/.exec(written);
  if (!match) return undefined;
  const digits = minorUnitDigits(currency);
  const fraction = match[2] ?? '';
  if (/[^0]/.test(fraction.slice(digits))) return undefined;
  const minor = Number(`${match[1]}${fraction.slice(0, digits).padEnd(digits, '0')}`);
  return Number.isSafeInteger(minor) ? minor : undefined;
}
