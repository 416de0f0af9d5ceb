import { createHash } from 'node:crypto';

/**
 * Whether an order belongs to the control group at `percent` %. Deterministic by order id
 * (the same order always lands in the same group, in every process and on every replay),
 * and uniform: the first 32 bits of SHA-256 over the id, scaled to [0, 100).
 */
export function inHoldout(orderId: string, percent: number): boolean {
  if (!(percent > 0)) return false;
  const digest = createHash('sha256').update(`recoup-holdout:${orderId}`).digest();
  return (digest.readUInt32BE(0) / 2 ** 32) * 100 < percent;
}
