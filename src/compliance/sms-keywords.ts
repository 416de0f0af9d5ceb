import { z } from 'zod';
import { RecoupError, type Issue } from '../platform/errors.js';
import { bundledLocalesDir, loadLocaleFiles, negotiateLocale, referenceLocale } from '../platform/locale-files.js';

/**
 * Keywords customers reply to reminders with, and recoup's short answers to them.
 *
 * Matching follows the carriers' (and Twilio's) rule: the whole message is the keyword, in any
 * case, so "stop" opts out and "stop sending me this" does not. Full-width letters (ＳＴＯＰ,
 * common on Chinese keyboards), surrounding spaces and trailing punctuation are ignored.
 */

export const smsCommands = ['opt_out', 'opt_in', 'help'] as const;
export type SmsCommand = (typeof smsCommands)[number];

const text = z.string().min(1);
const keywordList = z.array(z.union([z.string().min(1), z.number()]).transform(String)).min(1);

/**
 * `locales/<tag>/sms.yaml`: the keywords carriers define in that language (the reference
 * locale's are accepted in every language) and recoup's answers; `{shop}` is the shop's name, or
 * `us` when none is configured.
 */
export const smsLocaleSchema = z.strictObject({
  keywords: z.strictObject({ opt_out: keywordList, opt_in: keywordList, help: keywordList }).partial().optional(),
  replies: z.strictObject({ us: text, opt_out: text, opt_in: text, help: text }),
});
export type SmsLocale = z.infer<typeof smsLocaleSchema>;

export interface SmsKeywordBook {
  /** The reply locales shipped, the reference (en) first. */
  locales: readonly string[];
  /** Normalised keyword → what it asks for, and the locale whose keyword it is. */
  keywords: ReadonlyMap<string, { command: SmsCommand; locale: string }>;
  replies: ReadonlyMap<string, SmsLocale['replies']>;
}

/**
 * Reads every locale's sms.yaml under `dir`. Throws RecoupError('config') for a file off-shape, or
 * a keyword two locales give different meanings (STOP must never mean START somewhere).
 */
export function loadSmsKeywords(dir: string): SmsKeywordBook {
  const loaded = loadLocaleFiles(dir, 'sms', smsLocaleSchema);
  const keywords = new Map<string, { command: SmsCommand; locale: string }>();
  const issues: Issue[] = [];
  for (const [locale, file] of loaded) {
    for (const command of smsCommands) {
      for (const word of file.keywords?.[command] ?? []) {
        const keyword = normaliseKeyword(word);
        const known = keywords.get(keyword);
        if (known && known.command !== command) {
          issues.push({
            path: `locales/${locale}/sms.yaml`,
            message: `keyword ${keyword} is ${command} here but ${known.command} in locales/${known.locale}`,
          });
        }
        if (!known) keywords.set(keyword, { command, locale });
      }
    }
  }
  if (issues.length > 0) {
    throw new RecoupError(
      'config',
      `Locale files are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      {
        issues,
      },
    );
  }
  const replies = new Map([...loaded].map(([locale, file]) => [locale, file.replies]));
  return { locales: [...loaded.keys()], keywords, replies };
}

const book = loadSmsKeywords(bundledLocalesDir);

export interface ParsedReply {
  command: SmsCommand;
  /** The keyword as matched (upper case), for the consent ledger. */
  keyword: string;
  /**
   * The locale whose keyword it is, when not the reference one (退订 → zh-CN): the language to
   * answer in when the customer's is unknown.
   */
  locale: string | undefined;
  /** The keyword was a Chinese one. */
  chinese: boolean;
}

/** `STOP`, `stop.`, ` Stop `, `ＳＴＯＰ` → STOP; anything else → the text itself. */
export function normaliseKeyword(body: string): string {
  return body
    .normalize('NFKC')
    .replace(/^[\s"'“”‘’]+|[\s"'“”‘’.!?。！？]+$/gu, '')
    .replace(/\s+/g, '')
    .toUpperCase();
}

/**
 * The command an inbound SMS carries, if any. `optOutType` is Twilio's own classification
 * (STOP / START / HELP), sent only when the Messaging Service has Advanced Opt-Out: it covers
 * keywords configured at Twilio that recoup does not know.
 */
export function parseSmsReply(body: string, optOutType?: string): ParsedReply | undefined {
  const keyword = normaliseKeyword(body);
  const known = book.keywords.get(keyword);
  if (known) {
    const locale = known.locale === referenceLocale ? undefined : known.locale;
    return { command: known.command, keyword, locale, chinese: locale?.startsWith('zh') ?? false };
  }
  const twilioCommand: Record<string, SmsCommand> = { STOP: 'opt_out', START: 'opt_in', HELP: 'help' };
  const command = optOutType ? twilioCommand[optOutType.toUpperCase()] : undefined;
  return command
    ? { command, keyword: keyword.slice(0, 40) || optOutType!.toUpperCase(), locale: undefined, chinese: false }
    : undefined;
}

/** A locale with a `locales/<tag>/sms.yaml`. */
export type ReplyLocale = string;

/** `zh`, `zh_CN`, `zh-Hans-CN` → zh-CN; `zh-Hant` → zh-TW; a language not shipped → en. */
export function replyLocale(locale: string | null | undefined): ReplyLocale | undefined {
  if (!locale) return undefined;
  return negotiateLocale(book.locales, locale) ?? referenceLocale;
}

/** recoup's answer to a command; short enough for one segment with a short shop name. */
export function smsReplyText(command: SmsCommand, locale: ReplyLocale, shopName: string | undefined): string {
  const table = book.replies.get(locale) ?? book.replies.get(referenceLocale)!;
  const shop = shopName?.trim() || table.us;
  // One pass, so braces in a shop's name are never read as placeholders.
  return table[command].replace(/\{shop\}/g, () => shop);
}
