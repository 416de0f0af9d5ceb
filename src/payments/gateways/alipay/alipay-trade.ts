import { createHash } from 'node:crypto';
import { currentRefundKeyVersion, type RefundKeyVersion } from '../../payment-gateway.js';

/**
 * How recoup names and prices Alipay trades. Alipay amounts are yuan strings with exactly
 * two decimals; recoup's are integer fen. Both conversions are exact (no floating point).
 */

/** 12345 → `123.45`. */
export function toYuan(fen: number): string {
  if (!Number.isSafeInteger(fen) || fen < 0) throw new RangeError(`not an amount in fen: ${fen}`);
  return `${Math.trunc(fen / 100)}.${String(fen % 100).padStart(2, '0')}`;
}

/** `123.45`, `123.4` or `123` → 12345; undefined for anything else. */
export function fromYuan(yuan: string | undefined): number | undefined {
  const match = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(yuan ?? '');
  if (!match) return undefined;
  return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
}

/**
 * `out_trade_no` of an attempt: its idempotency key (order + attempt number) and the amount
 * asked, `<key>_A<fen>`. Alipay allows 64 letters, digits and underscores. Carrying the amount
 * lets a notify be checked against the attempt without a database, and tells the amount of a
 * page-pay trade the customer has not opened yet (Alipay only creates it then).
 *
 * Two keys never share a trade number: Alipay keeps one trade per number, so a shared one
 * would let one order's payment answer the other order's poll. The amount suffix stays
 * readable because the amount has no underscore: the last `_A` starts it.
 */
export function outTradeNo(idempotencyKey: string, amount: number): string {
  const suffix = `_A${amount}`;
  const key = tradeKey(idempotencyKey);
  return key.length + suffix.length <= 64 ? `${key}${suffix}` : digest(idempotencyKey) + suffix;
}

/**
 * A key in Alipay's alphabet, one per key (but for a SHA-256 collision with `digest`):
 * - letters and digits joined by single dashes: dashes become underscores (`2026-0001-1` →
 *   `2026_0001_1`). Such a form never starts with, ends with or doubles an underscore;
 * - other keys of letters, digits, `-` and `_`: a leading underscore, then `_` as `__` and `-`
 *   as `_d` (`2026_0001-1` → `_2026__0001_d1`), so `_` followed by `_` or `d` is the only
 *   escape and the form reads back one way;
 * - anything else: its hash.
 */
function tradeKey(key: string): string {
  if (/^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$/.test(key)) return key.replace(/-/g, '_');
  if (/^[A-Za-z0-9_-]+$/.test(key)) return `_${key.replace(/[_-]/g, (c) => (c === '_' ? '__' : '_d'))}`;
  return digest(key);
}

/** The amount an `out_trade_no` made by `outTradeNo` was opened for; undefined for another's. */
export function amountOfTradeNo(tradeNo: string): number | undefined {
  const match = /^[A-Za-z0-9_]+_A(\d{1,12})$/.exec(tradeNo);
  return match && tradeNo.length <= 64 ? Number(match[1]) : undefined;
}

/**
 * `out_request_no` of a refund: Alipay answers a repeated number with the refund first made
 * under it, so two refund keys never share one (`tradeKey`, or the hash beyond 64 characters).
 *
 * Refunds first requested with `keyVersion` 1 keep the number they were sent under then, which
 * turned every `-` into `_`: a repeat after an upgrade must reach the same refund, not make a
 * second one.
 */
export function outRequestNo(refundKey: string, keyVersion: RefundKeyVersion = currentRefundKeyVersion): string {
  if (keyVersion === 1) {
    const plain = refundKey.replace(/[^A-Za-z0-9_]/g, '_');
    return plain.length <= 64 && plain === refundKey.replace(/-/g, '_') ? plain : digest(refundKey);
  }
  const key = tradeKey(refundKey);
  return key.length <= 64 ? key : digest(refundKey);
}

function digest(text: string): string {
  return `H${createHash('sha256').update(text).digest('hex').slice(0, 40)}`;
}

/** Alipay's time format, Beijing time (no daylight saving): `2026-03-08 09:30:00`. */
export function beijingTime(at: Date): string {
  return new Date(at.getTime() + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');
}

/** `2026-03-08 09:30:00` (Beijing time) → the instant; undefined when unreadable. */
export function fromBeijingTime(text: string | undefined): Date | undefined {
  if (!text || !/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)) return undefined;
  return new Date(`${text.replace(' ', 'T')}+08:00`);
}

/** Alipay forbids `/`, `=`, `&` and the like in a subject; 256 characters at most. */
export function subjectOf(description: string): string {
  const clean = description
    .replace(/[/=&%+#?\\]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return (clean || 'Order').slice(0, 256);
}
