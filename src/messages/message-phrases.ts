import { z } from 'zod';
import {
  failureCategories,
  failureDetails,
  paymentMethods,
  type FailureCategory,
  type FailureDetail,
  type PaymentMethod,
} from '../domain/vocabulary.js';
import { bundledLocalesDir, loadLocaleFiles, negotiateLocale, referenceLocale } from '../platform/locale-files.js';

/**
 * Phrases every reminder template may use, per locale, from `locales/<tag>/messages.yaml`. A
 * template locale without its own file uses the closest shipped one by language, else English.
 */

const text = z.string().min(1);
const perCategory = z.strictObject(
  Object.fromEntries(failureCategories.map((c) => [c, text])) as Record<FailureCategory, typeof text>,
);
const method = z.strictObject({ name: text, title: text });
const detail = z.strictObject({ reason: text, advice: text });

const pluralForms = z
  .strictObject({ zero: text, one: text, two: text, few: text, many: text, other: text })
  .partial()
  .required({ other: true });

export const messagePhrasesSchema = z.strictObject({
  /** `name` for mid-sentence ("pay by card"), `title` standalone ("Card"). */
  methods: z.strictObject(
    Object.fromEntries(paymentMethods.map((m) => [m, method])) as Record<PaymentMethod, typeof method>,
  ),
  /** Why the last payment failed, one short sentence per category. */
  reasons: perCategory,
  /** What the customer can do about it, one short sentence per category. */
  advice: perCategory,
  /** Said in place of the category's reason and advice when the failure's code tells more. */
  details: z.strictObject(
    Object.fromEntries(failureDetails.map((d) => [d, detail])) as Record<FailureDetail, typeof detail>,
  ),
  /** `coupon_invalid` when the order names its coupon; `{code}`. */
  couponReason: text,
  /** Under a cart list cut short, by the locale's plural rules; `{count}` lines are not shown. */
  moreItems: pluralForms,
});
type MessagePhrasesFile = z.infer<typeof messagePhrasesSchema>;

export interface Phrases {
  methods: MessagePhrasesFile['methods'];
  reasons: Record<FailureCategory, string>;
  advice: Record<FailureCategory, string>;
  details: Record<FailureDetail, { reason: string; advice: string }>;
  couponReason: (code: string) => string;
  moreItems: (count: number) => string;
}

/** Reads and checks every locale's messages.yaml under `dir`. */
export function loadMessagePhrases(dir: string): Map<string, Phrases> {
  const files = loadLocaleFiles(dir, 'messages', messagePhrasesSchema);
  return new Map([...files].map(([locale, file]) => [locale, phrases(locale, file)]));
}

function phrases(locale: string, file: MessagePhrasesFile): Phrases {
  const plural = new Intl.PluralRules(locale);
  return {
    methods: file.methods,
    reasons: file.reasons,
    advice: file.advice,
    details: file.details,
    // One pass each, so braces in a coupon code are never read as placeholders.
    couponReason: (code) => file.couponReason.replace(/\{code\}/g, () => code),
    moreItems: (count) =>
      (file.moreItems[plural.select(count)] ?? file.moreItems.other).replace(/\{count\}/g, () => String(count)),
  };
}

const loaded = loadMessagePhrases(bundledLocalesDir);
const locales = [...loaded.keys()];

/** The phrases for a template locale: its own, the closest by language, or English. */
export function phrasesFor(locale: string): Phrases {
  return loaded.get(negotiateLocale(locales, locale) ?? referenceLocale) ?? loaded.get(referenceLocale)!;
}
