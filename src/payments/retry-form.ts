import { parsePhoneNumberWithError, type CountryCode } from 'libphonenumber-js/max';
import { storableEmail } from '../domain/addresses.js';
import { refusedNumberType, type PhoneNumberType } from '../domain/phone-numbers.js';
import { paymentMethods, type PaymentMethod } from '../domain/vocabulary.js';
import type { PageStrings } from '../http/pages/page-strings.js';
import type { RetryView } from './retry-session.js';

/** The form field that carries the CSRF token. */
export const csrfField = 'csrf';

export type FormFields = Partial<Record<string, string>>;

/** The form's fields as single strings (a repeated field counts by its first value). */
export function formFields(body: unknown): FormFields {
  if (typeof body !== 'object' || body === null) return {};
  const fields: FormFields = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === 'string') fields[key] = first;
  }
  return fields;
}

export type FormResult =
  | { ok: true; email: string | null; phone: string | null; method: PaymentMethod }
  | { ok: false; errors: Partial<Record<'email' | 'phone' | 'method', string>>; method: PaymentMethod | null };

/**
 * Empty email or phone means "keep what is on file"; a new email is stored normalised, a new phone
 * in E.164, and only a phone of a kind recoup texts (`textable`, SMS_NUMBER_TYPES) is taken.
 */
export function validateForm(
  form: FormFields,
  view: RetryView,
  t: PageStrings,
  textable?: readonly PhoneNumberType[],
): FormResult {
  const errors: Partial<Record<'email' | 'phone' | 'method', string>> = {};
  const emailInput = (form.email ?? '').trim();
  let email: string | null = null;
  if (emailInput) {
    email = storableEmail(emailInput) ?? null;
    if (!email) errors.email = t.emailInvalid;
  }
  const phoneInput = (form.phone ?? '').trim();
  let phone: string | null = null;
  if (phoneInput) {
    const parsed = normalisePhone(phoneInput, defaultCountry(view));
    if (!parsed.ok) errors.phone = parsed.needsCountry ? t.phoneNeedsCountry : t.phoneInvalid;
    else if (refusedNumberType(parsed.e164, textable)) errors.phone = t.phoneNotTexted;
    else phone = parsed.e164;
  }
  const method = paymentMethodOf(form.method ?? null);
  if (!method) errors.method = t.methodRequired;
  else if (!view.methods.includes(method)) errors.method = t.methodNotOffered;
  if (errors.email || errors.phone || errors.method || !method) return { ok: false, errors, method };
  return { ok: true, email, phone, method };
}

function normalisePhone(
  input: string,
  country: CountryCode | undefined,
): { ok: true; e164: string } | { ok: false; needsCountry: boolean } {
  if (input.length > 32) return { ok: false, needsCountry: false };
  try {
    const number = parsePhoneNumberWithError(input, country);
    return number.isValid() ? { ok: true, e164: number.number } : { ok: false, needsCountry: false };
  } catch (err) {
    const code = err instanceof Error ? err.message : '';
    return { ok: false, needsCountry: code === 'INVALID_COUNTRY' };
  }
}

/** A number typed without +country is read in the country of the number on file, else of the locale. */
function defaultCountry(view: RetryView): CountryCode | undefined {
  if (view.contact.phone) {
    try {
      const country = parsePhoneNumberWithError(view.contact.phone).country;
      if (country) return country;
    } catch {
      // An odd number on file: fall back to the locale.
    }
  }
  try {
    const region = new Intl.Locale(view.locale.replaceAll('_', '-').replace(/[.@].*$/, '')).maximize().region;
    return region && /^[A-Z]{2}$/.test(region) ? (region as CountryCode) : undefined;
  } catch {
    return undefined;
  }
}

export function paymentMethodOf(value: string | null): PaymentMethod | null {
  return paymentMethods.find((m) => m === value) ?? null;
}
