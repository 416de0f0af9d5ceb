import { createHash } from 'node:crypto';
import type { Channel } from './vocabulary.js';

/**
 * The forms a customer's address is stored and compared in: normalised (trimmed, emails
 * lower-cased, phone separators removed) and, for a forgotten customer's suppressions, hashed.
 */
export const hashPrefix = 'sha256:';

/** The form an address is stored and compared in. */
export function normaliseAddress(channel: Channel, address: string): string {
  const trimmed = address.trim();
  return channel === 'email' ? trimmed.toLowerCase() : trimmed.replace(/[\s().-]/g, '');
}

/** `sha256:<hex>` of the normalised address: what a forgotten customer's suppressions keep. */
export function addressHash(channel: Channel, address: string): string {
  return `${hashPrefix}${createHash('sha256').update(normaliseAddress(channel, address), 'utf8').digest('hex')}`;
}

export function isHashedAddress(address: string): boolean {
  return address.startsWith(hashPrefix);
}

/** Every stored form that means this address: as given, normalised, hashed. */
export function addressForms(channel: Channel, address: string): string[] {
  return [...new Set([address, normaliseAddress(channel, address), addressHash(channel, address)])];
}
