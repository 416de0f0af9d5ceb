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

/**
 * A compact one-line JSON of an audit entry's before/after, every email- or phone-like string
 * masked (contact confirmations carry addresses). Null stays null.
 */
export function maskedJson(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return emailLike.test(v) || phoneLike.test(v) ? maskAddress(v) : v;
    if (Array.isArray(v)) return v.map(walk);
    if (v instanceof Date) return v.toISOString();
    if (typeof v === 'object' && v !== null) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return JSON.stringify(walk(value));
}
