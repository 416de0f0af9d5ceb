/**
 * Keywords customers reply to reminders with, and recoup's short answers to them.
 *
 * Matching follows the carriers' (and Twilio's) rule: the whole message is the keyword, in any
 * case, so "stop" opts out and "stop sending me this" does not. Full-width letters (ＳＴＯＰ,
 * common on Chinese keyboards), surrounding spaces and trailing punctuation are ignored.
 */

export type SmsCommand = 'opt_out' | 'opt_in' | 'help';

const keywords: Record<SmsCommand, readonly string[]> = {
  // 退订 ("unsubscribe") and TD (its pinyin initials) are what Chinese carriers and senders use.
  opt_out: ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', '退订', 'TD'],
  opt_in: ['START', 'UNSTOP', 'YES'],
  help: ['HELP', 'INFO'],
};

const chineseKeywords: ReadonlySet<string> = new Set(['退订', 'TD']);

export interface ParsedReply {
  command: SmsCommand;
  /** The keyword as matched (upper case), for the consent ledger. */
  keyword: string;
  /** The keyword was a Chinese one: answer in Chinese when the customer's language is unknown. */
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
  for (const command of Object.keys(keywords) as SmsCommand[]) {
    if (keywords[command].includes(keyword)) return { command, keyword, chinese: chineseKeywords.has(keyword) };
  }
  const twilioCommand: Record<string, SmsCommand> = { STOP: 'opt_out', START: 'opt_in', HELP: 'help' };
  const command = optOutType ? twilioCommand[optOutType.toUpperCase()] : undefined;
  return command ? { command, keyword: keyword.slice(0, 40) || optOutType!.toUpperCase(), chinese: false } : undefined;
}

export type ReplyLocale = 'en' | 'zh-CN';

/** `zh`, `zh_CN`, `zh-Hans-CN` → zh-CN; anything else → en. */
export function replyLocale(locale: string | null | undefined): ReplyLocale | undefined {
  if (!locale) return undefined;
  return /^zh\b/i.test(locale.replaceAll('_', '-')) ? 'zh-CN' : 'en';
}

const replies: Record<ReplyLocale, Record<SmsCommand, (shop: string) => string> & { us: string }> = {
  en: {
    us: 'us',
    opt_out: (shop) => `You will no longer receive payment reminders from ${shop}. Reply START to resubscribe.`,
    opt_in: (shop) => `You will receive payment reminders from ${shop} again. Reply STOP to unsubscribe.`,
    help: (shop) => `Payment reminders from ${shop}. Reply STOP to unsubscribe, START to resubscribe.`,
  },
  'zh-CN': {
    us: '我们',
    opt_out: (shop) => `您将不再收到${shop}的付款提醒。回复 START 可重新订阅。`,
    opt_in: (shop) => `您将重新收到${shop}的付款提醒。回复 TD 退订。`,
    help: (shop) => `${shop}付款提醒。回复 TD 退订，回复 START 重新订阅。`,
  },
};

/** recoup's answer to a command; short enough for one segment in both languages with a short shop name. */
export function smsReplyText(command: SmsCommand, locale: ReplyLocale, shopName: string | undefined): string {
  const table = replies[locale];
  return table[command](shopName?.trim() || table.us);
}
