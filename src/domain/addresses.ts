import { createHash } from 'node:crypto';
import { domainToASCII, domainToUnicode } from 'node:url';
import type { Channel } from './vocabulary.js';

/**
 * The forms a customer's address is stored and compared in: normalised (trimmed, emails
 * lower-cased with an internationalised domain in its ASCII form, phone separators removed)
 * and, for a forgotten customer's suppressions, hashed.
 */
export const hashPrefix = 'sha256:';

/**
 * The form an address is stored and compared in. Total: any text has one, address or not.
 *
 * An email's domain is kept in its ASCII (punycode) form, `bücher.de` as `xn--bcher-kva.de`: it is
 * the form every mail server takes, the one a bounce or an ops search may carry, and the form
 * addresses were stored in before internationalised ones were accepted, so one address written
 * either way is one customer address for suppressions, caps and erasure. The local part stays
 * UTF-8 (RFC 6531), in Unicode's composed form (NFC), so that `é` typed either way compares equal.
 * Postgres's recoup_normalise_address (migrations/0007_caps_by_address.sql) only trims and
 * lower-cases: it is applied to addresses already stored in this form.
 */
export function normaliseAddress(channel: Channel, address: string): string {
  const trimmed = address.trim();
  if (channel !== 'email') return trimmed.replace(/[\s().-]/g, '');
  const lowered = trimmed.toLowerCase();
  const at = lowered.lastIndexOf('@');
  if (at < 0) return lowered.normalize('NFC');
  const domain = lowered.slice(at + 1);
  return `${lowered.slice(0, at).normalize('NFC')}@${asciiDomain(domain) ?? domain}`;
}

/**
 * An internationalised domain's ASCII form (UTS #46, as browsers map hosts), or undefined for an
 * ASCII domain (kept as written) and for one that has none. ASCII punctuation other than `.` and
 * `-` is never converted: the URL host parser would percent-decode it (`ex%41mple.com`).
 */
function asciiDomain(domain: string): string | undefined {
  if (!/\P{ASCII}/u.test(domain) || /(?=\p{ASCII})[^a-z0-9.-]/u.test(domain)) return undefined;
  return domainToASCII(domain) || undefined;
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

/** What the 400 says of a text that is no email address at all. */
export const emailExpected = 'must be an email address such as name@example.com';

/**
 * A local part as a dot-atom: ASCII letters, digits and `_ ' + -` (what recoup always took), and,
 * as RFC 6531 allows, letters, marks and digits of any script (`josé`, `用户`). Quoted local parts,
 * spaces, controls and symbols are refused: no shop sends them, and a provider may not take them.
 */
const localPart = /^[\p{L}\p{M}\p{N}_'+-]+(?:\.[\p{L}\p{M}\p{N}_'+-]+)*$/u;
/** A DNS host name in ASCII: at least two labels, a top-level domain of letters or an IDN one. */
const hostName = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;

/**
 * What is wrong with an address in its normalised form (normaliseAddress), or undefined when
 * recoup can send to it. Lengths are RFC 5321's, in octets of UTF-8.
 */
export function emailAddressProblem(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return emailExpected;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (!localPart.test(local)) return `${emailExpected}: the part before @ is not a valid mailbox name`;
  if (Buffer.byteLength(local, 'utf8') > 64) return `${emailExpected}: the part before @ is over 64 bytes`;
  if (!isDomainName(domain)) return `${emailExpected}: the part after @ is not a valid domain name`;
  if (Buffer.byteLength(address, 'utf8') > 254) return 'must be at most 254 bytes';
  return undefined;
}

/**
 * Whether an ASCII domain is a host name mail can go to. A punycode label must decode to a label
 * a host name may have: `xn--zz` decodes to nothing, and `xn---bcher-4ya` to `-bücher`.
 */
function isDomainName(domain: string): boolean {
  if (!hostName.test(domain) || domain.length > 253) return false;
  if (!domain.includes('xn--')) return true;
  if (domainToASCII(domain) !== domain) return false;
  return domainToUnicode(domain)
    .split('.')
    .every((label) => label !== '' && !label.startsWith('-') && !label.endsWith('-'));
}

/** The stored form of an email address recoup can send to, or undefined when it is not one. */
export function storableEmail(input: string): string | undefined {
  const address = normaliseAddress('email', input);
  return emailAddressProblem(address) === undefined ? address : undefined;
}

/** A stored email address as its owner writes it: an internationalised domain in Unicode. */
export function displayEmail(address: string): string {
  const at = address.lastIndexOf('@');
  const domain = address.slice(at + 1);
  if (at < 0 || !domain.includes('xn--')) return address;
  const unicode = domainToUnicode(domain);
  return unicode ? `${address.slice(0, at)}@${unicode}` : address;
}
