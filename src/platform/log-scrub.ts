import { stdSerializers } from 'pino';

/**
 * Masks email addresses and phone numbers inside log values, wherever they hide: the logger's
 * redact paths cover known fields (`to`, `email`, `phone`), but providers put addresses in error
 * messages ("The 'To' number +86… is not valid"), SMTP errors carry `rejected: [address]`, and
 * Postgres errors quote values in `detail`. Applied to every log object and every serialized error.
 */

const emailPattern = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
// International numbers as people and providers write them: +8613800138000, +1 (555) 010-0000.
const phonePattern = /\+\d[\d ().-]{5,20}\d/g;

/** `+86*******8000`, `l***@example.com`: enough to tell addresses apart, not to use them. */
export function maskAddressText(address: string): string {
  const at = address.indexOf('@');
  if (at > 0) return `${address.slice(0, 1)}***${address.slice(at)}`;
  const digits = address.replace(/[^\d+]/g, '');
  if (digits.length <= 6) return '*'.repeat(digits.length);
  return `${digits.slice(0, 3)}${'*'.repeat(digits.length - 7)}${digits.slice(-4)}`;
}

export function scrubText(text: string): string {
  return text.replace(emailPattern, maskAddressText).replace(phonePattern, maskAddressText);
}

/**
 * A copy of `value` with every string scrubbed. Walks plain objects and arrays only (to a depth
 * of 8), so framework objects such as Fastify's request, which have their own serializers, pass
 * untouched.
 */
export function scrubPersonalData<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return scrubText(value) as T;
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item: unknown) => scrubPersonalData(item, depth + 1)) as T;
  if (value instanceof Error) return scrubError(value) as T;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    out[key] = scrubPersonalData(item, depth + 1);
  }
  return out as T;
}

/**
 * An error as pino's standard serializer shows it (type, message with causes, stack, own fields
 * such as nodemailer's `rejected`), as a plain object with every string scrubbed.
 */
export function scrubError(err: unknown): unknown {
  const serialized = stdSerializers.err(err as Error) as unknown;
  if (serialized === null || typeof serialized !== 'object') return scrubPersonalData(serialized);
  const plain: Record<string, unknown> = {};
  // for…in: pino puts type/message/stack on the serialized error's prototype.
  for (const key in serialized) {
    const item = (serialized as Record<string, unknown>)[key];
    if (item !== undefined) plain[key] = item instanceof Error ? scrubError(item) : item;
  }
  return scrubPersonalData(plain);
}

/**
 * pino's `formatters.log`: scrubs every field of a log object. `errorKey` (default `err`) is left
 * to the error serializer, which must be `scrubError`; errors under other keys are scrubbed here.
 */
export function scrubLogObject(object: Record<string, unknown>, errorKey = 'err'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    out[key] = key === errorKey ? value : value instanceof Error ? scrubError(value) : scrubPersonalData(value);
  }
  return out;
}
