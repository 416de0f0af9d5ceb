import { parsePhoneNumberFromString, type PhoneNumberType as LibraryType } from 'libphonenumber-js/max';

/**
 * Kinds of phone number, as libphonenumber tells them apart (its full `max` metadata: the smaller
 * builds know whether a number is valid, not what kind it is), spelled as settings spell them.
 */
export const phoneNumberTypes = [
  'mobile',
  'fixed_line',
  'fixed_line_or_mobile',
  'toll_free',
  'premium_rate',
  'shared_cost',
  'voip',
  'personal_number',
  'pager',
  'uan',
  'voicemail',
] as const;
export type PhoneNumberType = (typeof phoneNumberTypes)[number];

/**
 * The kinds recoup texts unless configured otherwise: numbers a person answers. Premium-rate and
 * shared-cost numbers, UAN, personal (follow-me) numbers, pagers, VoIP and voicemail ranges are
 * where a reminder is charged to the sender, lost, or read by nobody.
 */
export const defaultTextableTypes: readonly PhoneNumberType[] = ['mobile', 'fixed_line', 'fixed_line_or_mobile'];

const typeOf: Record<LibraryType, PhoneNumberType> = {
  MOBILE: 'mobile',
  FIXED_LINE: 'fixed_line',
  FIXED_LINE_OR_MOBILE: 'fixed_line_or_mobile',
  TOLL_FREE: 'toll_free',
  PREMIUM_RATE: 'premium_rate',
  SHARED_COST: 'shared_cost',
  VOIP: 'voip',
  PERSONAL_NUMBER: 'personal_number',
  PAGER: 'pager',
  UAN: 'uan',
  VOICEMAIL: 'voicemail',
};

/** The kind of an E.164 number; undefined when libphonenumber cannot place it (no valid number it knows). */
export function phoneNumberType(e164: string): PhoneNumberType | undefined {
  // E.164 is at most 16 characters: anything longer is no number, and is not worth parsing.
  if (e164.length > 16) return undefined;
  const type = parsePhoneNumberFromString(e164)?.getType();
  return type === undefined ? undefined : typeOf[type];
}

/**
 * The kind of number that keeps recoup from texting this one, or undefined when it may. A number
 * libphonenumber cannot place is not refused here: its metadata can lag behind new ranges, and a
 * provider's refusal marks a number that is really bad.
 */
export function refusedNumberType(
  e164: string,
  textable: readonly PhoneNumberType[] = defaultTextableTypes,
): PhoneNumberType | undefined {
  const type = phoneNumberType(e164);
  return type !== undefined && !textable.includes(type) ? type : undefined;
}
