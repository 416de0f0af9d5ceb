import {
  getExampleNumber,
  isSupportedCountry,
  parsePhoneNumberFromString,
  type CountryCode,
} from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/mobile/examples';
import type { FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { customerAdvice, failureDetail } from '../recoveries/classify-failure.js';

/**
 * What the retry page adapts to the customer: the order of the payment methods, which one is
 * pre-selected, and the example phone number its form shows.
 */

/** What tells where a customer is. */
export interface CustomerSignals {
  /** The number on file (E.164), if any. */
  phone: string | null;
  /** The customer's stored locale (BCP 47, or POSIX like `zh_CN.UTF-8`). */
  locale: string;
  /** The order's currency (ISO 4217). */
  currency: string;
}

/**
 * The customer's country, from the strongest signal there is: the number on file, a region the
 * locale names (`en-US`), the currency's country (ISO 4217 codes start with it: USD, CNY, GBP;
 * not EUR), then the region the locale's language most likely means (`zh` → CN, `en` → US).
 */
export function customerCountry(customer: CustomerSignals): CountryCode | undefined {
  const fromPhone = customer.phone ? parsePhoneNumberFromString(customer.phone)?.country : undefined;
  if (fromPhone) return fromPhone;
  const locale = localeOf(customer.locale);
  const fromCurrency = customer.currency.slice(0, 2).toUpperCase();
  for (const region of [locale?.region, isSupportedCountry(fromCurrency) ? fromCurrency : undefined]) {
    if (region && isSupportedCountry(region)) return region;
  }
  const likely = locale?.maximize().region;
  return likely && isSupportedCountry(likely) ? likely : undefined;
}

function localeOf(tag: string): Intl.Locale | undefined {
  try {
    return new Intl.Locale(
      tag
        .trim()
        .replace(/[.@].*$/, '')
        .replaceAll('_', '-'),
    );
  } catch {
    return undefined;
  }
}

/** Where the wallets recoup takes (Alipay, WeChat Pay) are how most people pay online. */
const walletCountries: ReadonlySet<string> = new Set(['CN']);

/**
 * The methods in the order the customer most likely pays with: the wallets first in mainland
 * China, cards first everywhere else. Within each group the step's own order is kept.
 */
export function methodsInCustomerOrder(
  methods: readonly PaymentMethod[],
  country: CountryCode | undefined,
): PaymentMethod[] {
  const walletsFirst = country !== undefined && walletCountries.has(country);
  const rank = (method: PaymentMethod) => ((method === 'card') === walletsFirst ? 1 : 0);
  return [...methods].sort((a, b) => rank(a) - rank(b));
}

/** The last failed payment, as the order records it. */
export interface LastFailure {
  category: FailureCategory;
  code: string | null;
  /** The method that failed, when known. */
  method: PaymentMethod | undefined;
}

/**
 * The method the page pre-selects (null: none). The one the customer last chose while it can
 * still work; another one when the failure says it cannot (a refused account, an unsupported
 * method); none after an expired card, so that the customer chooses another card or method
 * instead of submitting the same card again.
 */
export function preselectedMethod(
  methods: readonly PaymentMethod[],
  failure: LastFailure | null,
): PaymentMethod | null {
  const failed = failure?.method !== undefined && methods.includes(failure.method) ? failure.method : undefined;
  if (!failure || !failed) return methods[0] ?? null;
  if (failureDetail(failure.category, failure.code) === 'card_expired') return null;
  if (['use_another_method', 'no_reminders'].includes(customerAdvice(failure.category))) {
    return methods.find((m) => m !== failed) ?? null;
  }
  return failed;
}

/** The country a locale's language most likely means (`ja` → JP, `zh-TW` → TW), else the US. */
export function likelyCountry(locale: string): CountryCode {
  const region = localeOf(locale)?.maximize().region;
  return region && isSupportedCountry(region) ? region : 'US';
}

/**
 * A mobile number from the customer's country, written as the form wants it (`+1 201 555 0123`),
 * from libphonenumber's examples; `fallback`'s when the country has none.
 */
export function examplePhone(country: CountryCode | undefined, fallback: CountryCode): string {
  const example = (country && getExampleNumber(country, examples)) || getExampleNumber(fallback, examples);
  return example?.formatInternational() ?? '';
}
