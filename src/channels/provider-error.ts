/**
 * What a provider's failure means for the message, decided by the adapter that
 * knows the provider:
 * - `retry`: the provider certainly did not accept it (connection refused, 429, SMTP 4xx). Try again later.
 * - `failed`: permanent (invalid number, recipient unsubscribed, SMTP 5xx). Never retry this message.
 * - `unknown`: the request may have been accepted (timeout after sending, connection dropped mid-answer,
 *   an HTTP 5xx that may have come after the provider stored the message).
 *   SMS has no idempotency key, so it is not re-sent blindly.
 */
export type ProviderOutcome = 'retry' | 'failed' | 'unknown';

/** Why a permanently failed address should not be used again. */
export type BadAddressReason = 'invalid_address' | 'unsubscribed' | 'unreachable';

export class ProviderError extends Error {
  readonly outcome: ProviderOutcome;
  /** Provider's own code, e.g. Twilio `21211`, SMTP `550`, or `ETIMEDOUT`. */
  readonly providerCode: string;
  /** Set when the address itself is bad, so later steps switch channel. */
  readonly badAddress: BadAddressReason | undefined;

  constructor(
    outcome: ProviderOutcome,
    providerCode: string,
    message: string,
    options: { badAddress?: BadAddressReason; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.outcome = outcome;
    this.providerCode = providerCode;
    this.badAddress = options.badAddress;
  }
}

/** The message's send lease ran out before it was handed over (src/recoveries/send-lease.ts): nothing went out. */
export function sendLeaseLapsed(): ProviderError {
  return new ProviderError('retry', 'send_lease_lapsed', 'the send lease ran out before the message was handed over');
}
