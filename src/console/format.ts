import { createHmac } from 'node:crypto';
import { DateTime } from 'luxon';
import { maskAddress } from '../platform/logger.js';
import { formatAmount } from '../platform/format-amount.js';

/** How the console shows things: times in UTC (with the customer's wall clock beside them), masked addresses. */

/** A time on the page: `<time datetime>` value, UTC text, and optionally the wall clock of `timezone`. */
export interface ShownTime {
  iso: string;
  utc: string;
  /** e.g. `2026-11-25 18:00 Asia/Shanghai`; null without a timezone or when it is UTC. */
  local: string | null;
}

export function shownTime(at: Date | null | undefined, timezone?: string | null): ShownTime | null {
  if (!at) return null;
  const zone = timezone && timezone !== 'UTC' ? DateTime.fromJSDate(at, { zone: timezone }) : undefined;
  return {
    iso: at.toISOString(),
    utc: utcText(at),
    local: zone?.isValid ? `${zone.toFormat('yyyy-LL-dd HH:mm')} ${timezone}` : null,
  };
}

/** `2026-11-25 10:00:03 UTC`; empty for no time. */
export function utcText(at: Date | string | null | undefined): string {
  if (!at) return '';
  const t = DateTime.fromJSDate(typeof at === 'string' ? new Date(at) : at, { zone: 'utc' });
  return t.isValid ? `${t.toFormat('yyyy-LL-dd HH:mm:ss')} UTC` : String(at);
}

/** A wall-clock time with weekday and offset, for previews: `Wed 25 Nov 09:00 (UTC+8)`. */
export function wallClock(isoWithOffset: string, timezone: string): string {
  const t = DateTime.fromISO(isoWithOffset, { setZone: true }).setZone(timezone);
  return t.isValid ? `${t.toFormat('ccc d LLL yyyy HH:mm')} (${t.toFormat('ZZZZ')})` : isoWithOffset;
}

/** `¥129.00 CNY`: the code too, since ops compare currencies. */
export function money(amount: number, currency: string): string {
  try {
    return `${formatAmount(amount, currency, 'en')} ${currency}`;
  } catch {
    return `${amount} ${currency} (minor units)`;
  }
}

export function masked(address: string | null | undefined): string | null {
  if (!address) return null;
  // Suppressions of forgotten customers keep only a hash: say so rather than show it.
  if (address.startsWith('sha256:')) return 'erased (forgotten customer)';
  return maskAddress(address);
}

const emailLike = /^[^\s@]+@[^\s@]+$/;
const phoneLike = /^\+?[\d\s().-]{7,}$/;

/** Six hex characters standing for an address: equal for equal addresses, telling nothing of it. */
export type AddressFingerprint = (address: string) => string;

/**
 * Fingerprints keyed with `secret` (RECOUP_SECRET): without the key nobody can test a guessed
 * address against one. Spaces and case do not count (`+86 139…` is `+86139…`).
 */
export function addressFingerprint(secret: string): AddressFingerprint {
  const key = createHmac('sha256', secret).update('recoup console address fingerprint v1').digest();
  return (address) =>
    createHmac('sha256', key).update(address.replace(/\s+/g, '').toLowerCase()).digest('hex').slice(0, 6);
}

/**
 * A compact one-line JSON of an audit entry's before/after, every email- or phone-like string
 * masked (contact confirmations carry addresses). With `fingerprint`, each masked address is
 * followed by its fingerprint (`m***@example.com #3fa91c`): two addresses that mask alike
 * (differing only in the middle) still read as different. Null stays null.
 */
export function maskedJson(value: unknown, fingerprint?: AddressFingerprint): string | null {
  if (value === null || value === undefined) return null;
  const mask = (address: string) => {
    const shown = maskAddress(address) ?? '';
    return fingerprint ? `${shown} #${fingerprint(address)}` : shown;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return emailLike.test(v) || phoneLike.test(v) ? mask(v) : v;
    if (Array.isArray(v)) return v.map(walk);
    if (v instanceof Date) return v.toISOString();
    if (typeof v === 'object' && v !== null) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return JSON.stringify(walk(value));
}
