import { createHmac, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../../payment-gateway.js';

/** The header the sandbox signs its webhooks with: `t=<unix seconds>,v1=<hex HMAC-SHA256>`. */
export const sandboxSignatureHeader = 'Recoup-Sandbox-Signature';

/** How far a webhook's timestamp may be from now, either way, before it is refused as a replay. */
export const sandboxSignatureToleranceSeconds = 300;

/** The signature header value for `body` sent at `at`: HMAC-SHA256 over `${timestamp}.${body}`. */
export function signSandboxPayload(body: string | Buffer, secret: string, at: Date): string {
  const timestamp = Math.floor(at.getTime() / 1000);
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

/**
 * Checks a sandbox signature header against the raw body. Several `v1=` entries are allowed
 * (a sender rotating its secret signs with both). Throws GatewayError('invalid_signature').
 */
export function verifySandboxSignature(
  rawBody: Buffer,
  header: string | undefined,
  secret: string,
  now: Date,
  toleranceSeconds = sandboxSignatureToleranceSeconds,
): void {
  if (!header) throw invalid(`missing ${sandboxSignatureHeader} header`);
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const [key, value, ...rest] = part.trim().split('=');
    if (rest.length > 0 || !value) continue;
    if (key === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) signatures.push(value);
  }
  if (timestamp === undefined || signatures.length === 0) throw invalid('malformed signature header');
  if (Math.abs(now.getTime() / 1000 - timestamp) > toleranceSeconds) {
    throw invalid('signature timestamp outside the tolerance window');
  }
  const expected = Buffer.from(hmac(secret, timestamp, rawBody), 'hex');
  const matches = signatures.some((signature) => timingSafeEqual(Buffer.from(signature, 'hex'), expected));
  if (!matches) throw invalid('signature does not match');
}

function hmac(secret: string, timestamp: number, body: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_signature', `Sandbox webhook rejected: ${message}`);
}
