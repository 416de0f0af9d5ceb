import { createHmac, timingSafeEqual } from 'node:crypto';
import { RecoupError } from '../platform/errors.js';

const base64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Throws `unauthorized` unless `signature` is the base64 HMAC-SHA256 of the exact body with
 * `secret`: how WooCommerce (`X-WC-Webhook-Signature`) and Shopify (`X-Shopify-Hmac-Sha256`) sign.
 * Only canonical base64 may match (Buffer's decoder skips characters it does not know), and the
 * comparison takes the same time whatever the bytes.
 */
export function verifyBodyHmac(rawBody: Buffer, signature: string, secret: string, what: string): void {
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  const text = signature.trim();
  const given = base64.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new RecoupError('unauthorized', `${what}: the signature does not match the body`);
  }
}
