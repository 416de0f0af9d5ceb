import { z } from 'zod';
import { isValidTimezone } from '../config.js';
import { eventTypes } from '../domain.js';
import { validationError, type Issue } from '../errors.js';

const id = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
const optionalText = (max: number) => z.string().max(max, `must be at most ${max} characters`).optional().nullable();

const customerSchema = z.object({
  id,
  name: optionalText(200),
  email: z.email('must be an email address').max(254).optional().nullable(),
  phone: z
    .string()
    .regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 phone number such as +8613800138000')
    .optional()
    .nullable(),
  locale: z
    .string()
    .regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/, 'must be a BCP 47 locale such as en or zh-CN')
    .optional()
    .nullable(),
  timezone: z.string().refine(isValidTimezone, 'must be an IANA timezone such as Asia/Shanghai').optional().nullable(),
});

const orderSchema = z.object({
  id,
  amount: z
    .number('must be an integer amount in minor units')
    .int('must be an integer amount in minor units')
    .min(0, 'must not be negative')
    .max(Number.MAX_SAFE_INTEGER),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as CNY'),
  description: optionalText(500),
  coupon_code: optionalText(100),
  /** The coupon in full: recoup checks its expiry on the retry page and at payment time. */
  coupon: z
    .object({
      code: z.string().trim().min(1, 'must not be empty').max(100),
      discount_amount: z.number().int('must be an integer in minor units').min(0).max(Number.MAX_SAFE_INTEGER),
      expires_at: z.iso
        .datetime({ offset: true, message: 'must be an ISO 8601 timestamp with a timezone' })
        .optional()
        .nullable(),
    })
    .optional()
    .nullable(),
  /** Optional: run this order's recovery on the named active cadence instead of the best match. */
  cadence: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be a cadence name')
    .optional()
    .nullable(),
  customer: customerSchema,
});

const paymentSchema = z.object({
  gateway: optionalText(50),
  method: optionalText(50),
  failure_code: optionalText(100),
  failure_message: optionalText(1000),
  /** Amount actually paid/attempted, when it differs from the order's. */
  amount: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().nullable(),
});

export const eventSchema = z
  .object({
    id,
    type: z.enum(eventTypes, `must be one of ${eventTypes.join(', ')}`),
    occurred_at: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 timestamp with a timezone' }),
    order: orderSchema.optional(),
    customer: customerSchema.optional(),
    payment: paymentSchema.optional().nullable(),
  })
  .superRefine((event, ctx) => {
    if (event.type === 'customer.updated') {
      if (!event.customer && !event.order) {
        ctx.addIssue({
          code: 'custom',
          path: ['customer'],
          message: 'customer.updated needs a customer (or an order with one)',
        });
      }
    } else if (!event.order) {
      ctx.addIssue({ code: 'custom', path: ['order'], message: `required for ${event.type}` });
    }
  });

export type EventInput = z.output<typeof eventSchema>;
export type CustomerInput = z.output<typeof customerSchema>;

/** `order.customer.email`, `steps[1].after`: the path notation used in every problem response. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out || '(body)';
}

export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message }));
}

/** Validates an event body; throws a validation RecoupError listing every bad field. */
export function parseEvent(body: unknown): EventInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ path: '(body)', message: 'must be a JSON object' }]);
  }
  const parsed = eventSchema.safeParse(body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  // A lone UTF-16 surrogate (e.g. "\ud800") is valid JSON text but no Unicode string, and "\u0000" is
  // valid JSON but no Postgres text: Postgres refuses both in jsonb and text alike, so they are refused
  // here, by field, like any other bad value.
  const malformed = illFormedStrings(parsed.data);
  if (malformed.length > 0) {
    throw validationError(
      malformed.map((p) => ({ path: formatPath(p), message: 'must be valid Unicode text without NUL characters' })),
    );
  }
  return parsed.data;
}

/** A high surrogate not followed by a low one, a low one not preceded by a high one, or NUL. */
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const wellFormed = (text: string) => !text.includes('\u0000') && !loneSurrogate.test(text);

/** Paths of the strings in `value` (keys included) that Postgres cannot store as text. */
function illFormedStrings(value: unknown, path: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof value === 'string') return wellFormed(value) ? [] : [path];
  if (Array.isArray(value)) return value.flatMap((item, i) => illFormedStrings(item, [...path, i]));
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) =>
      wellFormed(key) ? illFormedStrings(item, [...path, key]) : [[...path, key]],
    );
  }
  return [];
}
