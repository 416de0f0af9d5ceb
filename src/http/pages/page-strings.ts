import { z } from 'zod';
import { failureCategories, failureDetails, paymentMethods } from '../../domain/vocabulary.js';
import { RecoupError } from '../../platform/errors.js';
import {
  bundledLocalesDir,
  loadLocaleFiles,
  negotiateAcceptLanguage,
  negotiateLocale,
  referenceLocale,
} from '../../platform/locale-files.js';

/**
 * The wording of the customer-facing pages (retry, payment, unsubscribe), per page locale, read
 * from `locales/<tag>/pages.yaml`. Plain strings only: placeholders like `{amount}` are filled in
 * by `fillIn` before a value reaches a template, and every value is HTML-escaped there.
 *
 * The schema below is the list of keys: a new string is one line here and one line in each
 * locale's file (the start fails naming every file that lacks it).
 */

const text = z.string().min(1);
const byMethod = z.strictObject(
  Object.fromEntries(paymentMethods.map((m) => [m, text])) as Record<(typeof paymentMethods)[number], typeof text>,
);
const byCategory = z.strictObject(
  Object.fromEntries(failureCategories.map((c) => [c, text])) as Record<
    (typeof failureCategories)[number],
    typeof text
  >,
);
const byDetail = z.strictObject(
  Object.fromEntries(failureDetails.map((d) => [d, text])) as Record<(typeof failureDetails)[number], typeof text>,
);

/** The email unsubscribe pages; `{shop}` and `{address}` are filled in before rendering. */
const unsubscribeSchema = z.strictObject({
  confirmTitle: text,
  confirmText: text,
  confirmButton: text,
  confirmHint: text,
  retryText: text,
  doneTitle: text,
  doneText: text,
  alreadyTitle: text,
  alreadyText: text,
  invalidTitle: text,
  invalidText: text,
  errorTitle: text,
  errorText: text,
  /** The `text/plain` answer to a one-click POST. */
  oneClick: text,
});

export const pageStringsSchema = z.strictObject({
  /** Labels the templates use directly. */
  orderSummary: text,
  /** The accessible name of the list of cart lines. */
  itemsLabel: text,
  total: text,
  orderAmount: text,
  incentive: text,
  contactHeading: text,
  contactHint: text,
  emailLabel: text,
  phoneLabel: text,
  /** `{example}`: a mobile number of the customer's country, as the form wants it. */
  phoneHint: text,
  methodHeading: text,
  noMethods: text,
  errorSummary: text,
  checkPaid: text,
  checkAgain: text,
  otherMethod: text,
  backToPayment: text,
  /** Shown by the polling script only: the page moves on by itself once paid. */
  qrPending: text,
  /** The QR page without JavaScript: `{button}` is the check button's label. */
  qrNoScript: text,
  /** Sandbox gateway only: the link that does what scanning the code would. */
  qrSimulate: text,
  /** Before the shop's order reference on the success page. */
  orderReference: text,
  cardNoScript: text,
  cardSubmit: text,
  cardProcessing: text,
  cardFailed: text,
  methods: byMethod,

  /** Page titles and sentences the routes assemble; `{…}` are placeholders. */
  retryTitle: text,
  failedTitle: text,
  failedIntro: text,
  payButton: text,
  couponApplied: text,
  couponAppliedPlain: text,
  couponExpired: text,
  couponExpiredPlain: text,
  unavailable: text,
  previousAttemptOpen: text,
  cancelledAttempt: text,
  qrExpired: text,
  reasons: byCategory,
  /** Said in place of the category's reason when the failure's code tells more. */
  reasonDetails: byDetail,
  emailInvalid: text,
  phoneInvalid: text,
  phoneNeedsCountry: text,
  /** A valid number of a kind recoup does not text (premium-rate, shared-cost, …). */
  phoneNotTexted: text,
  methodRequired: text,
  methodNotOffered: text,
  /** The page leading on to the shop's own payment page; `{shop}`: the shop's name. */
  continueTitle: text,
  continueText: text,
  continueButton: text,
  qrTitle: text,
  qrAlt: text,
  qrSteps: z.array(text).min(1),
  qrPhoneHint: text,
  qrNotYet: text,
  pendingTitle: text,
  pendingText: text,
  successTitle: text,
  successText: text,
  /** When the amount paid cannot be shown. */
  successTextPlain: text,
  successNote: text,
  cardTitle: text,
  cardIntro: text,
  completedTitle: text,
  completedText: text,
  closedTitle: text,
  closedText: text,
  expiredTitle: text,
  expiredText: text,
  freshLinkButton: text,
  freshLinkHint: text,
  expiredNoFreshLink: text,
  invalidTitle: text,
  invalidText: text,
  freshSentTitle: text,
  freshSentText: text,
  freshTooSoonTitle: text,
  freshTooSoonText: text,
  /** `{time}`: when the quiet hours end, in the customer's timezone. */
  freshQuietTitle: text,
  freshQuietText: text,
  freshDailyLimitTitle: text,
  freshDailyLimitText: text,
  freshNotPossibleTitle: text,
  freshNotPossibleText: text,
  forbiddenTitle: text,
  forbiddenText: text,
  rateLimitedTitle: text,
  rateLimitedText: text,
  badRequestTitle: text,
  badRequestText: text,
  errorTitle: text,
  errorText: text,
  unsubscribe: unsubscribeSchema,
});

export type PageStrings = z.infer<typeof pageStringsSchema>;
export type UnsubscribeStrings = PageStrings['unsubscribe'];
/** A locale with a `locales/<tag>/pages.yaml`. */
export type PageLocale = string;

/** Reads and checks every locale's pages.yaml under `dir`; throws RecoupError('config') naming each gap. */
export function loadPageStrings(dir: string): Map<PageLocale, PageStrings> {
  return loadLocaleFiles(dir, 'pages', pageStringsSchema);
}

const loaded = loadPageStrings(bundledLocalesDir);

/** The page locales shipped, the reference (en) first. */
export const pageLocales: readonly PageLocale[] = [...loaded.keys()];

/**
 * Every shipped locale's strings. en is the reference the loader requires; zh-CN ships with recoup
 * as the second language of the operators' console, and the loader below holds it to that.
 */
export const pageStrings: Readonly<Record<PageLocale, PageStrings>> & {
  readonly en: PageStrings;
  readonly 'zh-CN': PageStrings;
} = Object.freeze(Object.fromEntries(loaded)) as never;
if (!loaded.has('zh-CN')) {
  throw new RecoupError('config', 'Locale files are invalid: locales/zh-CN/pages.yaml: missing', {
    issues: [{ path: 'locales/zh-CN/pages.yaml', message: 'missing' }],
  });
}

/** The strings of a page locale; the reference locale's for one that is not shipped. */
export function pageStringsFor(locale: PageLocale): PageStrings {
  return pageStrings[locale] ?? pageStrings[referenceLocale as 'en'];
}

/**
 * The page locale for a customer's stored locale, resolved like message locales (zh, zh_CN.UTF-8
 * → zh-CN; zh-Hant, zh-HK → zh-TW; ja-JP → ja), falling back to English.
 */
export function resolvePageLocale(locale: string | null | undefined): PageLocale {
  return negotiateLocale(pageLocales, locale) ?? referenceLocale;
}

/**
 * The page locale for a visitor recoup knows nothing about (a bad link, a rate-limited
 * request): the browser's most preferred language among those recoup has.
 */
export function localeFromAcceptLanguage(header: string | undefined): PageLocale {
  return negotiateAcceptLanguage(pageLocales, header) ?? referenceLocale;
}

/** Replaces `{name}` placeholders; unknown names are left as they are (a test catches them). */
export function fillIn(text: string, values: Record<string, string>): string {
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}
