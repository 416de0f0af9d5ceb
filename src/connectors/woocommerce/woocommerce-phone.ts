/**
 * WooCommerce's billing phone is whatever the customer typed. It becomes E.164 only where that
 * is certain: an international number (`+…`, or `00…`, the international prefix of most of the
 * world), or a national number of a country in the table below, whose calling code, trunk prefix
 * and number lengths are simple and stable. Anything else is dropped rather than guessed: a
 * reminder to a wrong number is worse than none, and the order keeps its email.
 */
interface NumberingPlan {
  callingCode: string;
  /** Dialled before a national number inside the country and dropped in E.164 (`0` in most). */
  trunk: '0' | '1' | null;
  /** Digits of the national number without the trunk prefix. */
  lengths: readonly [min: number, max: number];
}

const plans: Readonly<Record<string, NumberingPlan>> = {
  US: { callingCode: '1', trunk: '1', lengths: [10, 10] },
  CA: { callingCode: '1', trunk: '1', lengths: [10, 10] },
  GB: { callingCode: '44', trunk: '0', lengths: [9, 10] },
  DE: { callingCode: '49', trunk: '0', lengths: [6, 13] },
  FR: { callingCode: '33', trunk: '0', lengths: [9, 9] },
  NL: { callingCode: '31', trunk: '0', lengths: [9, 9] },
  ES: { callingCode: '34', trunk: null, lengths: [9, 9] },
  AU: { callingCode: '61', trunk: '0', lengths: [9, 9] },
  NZ: { callingCode: '64', trunk: '0', lengths: [8, 10] },
  IN: { callingCode: '91', trunk: '0', lengths: [10, 10] },
  CN: { callingCode: '86', trunk: '0', lengths: [9, 11] },
  JP: { callingCode: '81', trunk: '0', lengths: [9, 10] },
  SG: { callingCode: '65', trunk: null, lengths: [8, 8] },
  HK: { callingCode: '852', trunk: null, lengths: [8, 8] },
};

const e164 = /^\+[1-9]\d{6,14}$/;

/** `+44 (0)20 7946 0018`, `020 7946 0018` with country GB → `+442079460018`; undefined when unsure. */
export function toE164(phone: string | null | undefined, country: string | null | undefined): string | undefined {
  if (!phone) return undefined;
  // "(0)" marks a trunk prefix dropped when dialling from abroad, common in British and German numbers.
  const compact = phone.replace(/\(0\)/g, '').replace(/[\s().\-/]/g, '');
  if (compact.startsWith('+')) return e164.test(compact) ? compact : undefined;
  if (!/^\d+$/.test(compact)) return undefined;
  if (compact.startsWith('00')) {
    const international = `+${compact.slice(2)}`;
    return e164.test(international) ? international : undefined;
  }
  const plan = country ? plans[country.trim().toUpperCase()] : undefined;
  if (!plan) return undefined;
  const national = plan.trunk && compact.startsWith(plan.trunk) ? compact.slice(plan.trunk.length) : compact;
  const [min, max] = plan.lengths;
  // No national number starts with 0 or with its trunk digit (North American area codes never with 1).
  const badStart = national.startsWith('0') || (plan.trunk !== null && national.startsWith(plan.trunk));
  if (national.length < min || national.length > max || badStart) return undefined;
  const number = `+${plan.callingCode}${national}`;
  return e164.test(number) ? number : undefined;
}
