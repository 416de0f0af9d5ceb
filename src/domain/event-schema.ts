import { z } from 'zod';
import { emailAddressProblem, normaliseAddress } from './addresses.js';
import { refusedNumberType, type PhoneNumberType } from './phone-numbers.js';
import { isValidTimezone } from '../platform/timezones.js';
import { eventTypes } from './vocabulary.js';
import { formatPath, validationError, zodIssues } from '../platform/errors.js';
import { unstorableTextMessage, unstorableTextPaths } from '../platform/storable-text.js';

const id = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
const optionalText = (max: number) => z.string().max(max, `must be at most ${max} characters`).optional().nullable();

const customerSchema = z.object({
  id,
  name: optionalText(200),
  // Stored normalised (src/domain/addresses.ts), the form suppressions and send-time checks compare.
  email: z
    .string()
    .overwrite((address) => normaliseAddress('email', address))
    .superRefine((address, ctx) => {
      const problem = emailAddressProblem(address);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .meta({ format: 'idn-email' })
    .optional()
    .nullable(),
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

/** A cart line, as emails and the retry page show it. */
const itemSchema = z.object({
  name: z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters'),
  quantity: z.number().int('must be a whole number').min(1, 'must be at least 1').max(1_000_000),
  /** The line's total (unit price × quantity) in the order's minor units. */
  amount: z
    .number()
    .int('must be an integer amount in minor units')
    .min(0, 'must not be negative')
    .max(Number.MAX_SAFE_INTEGER),
  sku: optionalText(100),
  /** Shown only from https: a page served over https cannot load it otherwise. */
  image_url: z
    .url({ protocol: /^https$/, message: 'must be an https URL' })
    .max(2_000, 'must be at most 2000 characters')
    .optional()
    .nullable(),
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
  items: z.array(itemSchema).max(100, 'must have at most 100 lines').optional().nullable(),
  /**
   * The shop's own page for paying this order (WooCommerce's payment_url, a Shopify or Stripe
   * recovery URL): where reminders lead when a connector's link mode is `platform`.
   */
  payment_url: z
    .url({ protocol: /^https?$/, message: 'must be an http(s) URL' })
    .max(2_000, 'must be at most 2000 characters')
    .optional()
    .nullable(),
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

/** Validates an event body; throws a validation RecoupError listing every bad field. */
export function parseEvent(body: unknown): EventInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ path: '(body)', message: 'must be a JSON object' }]);
  }
  const parsed = eventSchema.safeParse(body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  // Text Postgres would refuse mid-statement (src/platform/storable-text.ts) is refused here, by field.
  const malformed = unstorableTextPaths(parsed.data);
  if (malformed.length > 0) {
    throw validationError(malformed.map((p) => ({ path: formatPath(p), message: unstorableTextMessage })));
  }
  return parsed.data;
}

/** A field recoup left out of an event it applied, and why: listed in the answer. */
export interface FieldWarning {
  path: string;
  message: string;
}

/**
 * The event without the phone numbers recoup does not text (premium-rate, shared-cost, …: see
 * src/domain/phone-numbers.ts). As with a connector's number that cannot be written in E.164, the
 * event is applied without it: the order is recorded and the customer gets the other reminders.
 */
export function withoutRefusedPhones(
  event: EventInput,
  textable?: readonly PhoneNumberType[],
): { event: EventInput; warnings: FieldWarning[] } {
  const warnings: FieldWarning[] = [];
  const keep = <C extends CustomerInput | undefined>(customer: C, path: string): C => {
    const refused = customer?.phone ? refusedNumberType(customer.phone, textable) : undefined;
    if (!customer || !refused) return customer;
    warnings.push({
      path,
      message: `a ${refused} number: recoup does not text those (SMS_NUMBER_TYPES), so it was left out`,
    });
    return { ...customer, phone: undefined };
  };
  const kept: EventInput = { ...event };
  if (event.order) kept.order = { ...event.order, customer: keep(event.order.customer, 'order.customer.phone') };
  if (event.customer) kept.customer = keep(event.customer, 'customer.phone');
  return warnings.length === 0 ? { event, warnings } : { event: kept, warnings };
}
