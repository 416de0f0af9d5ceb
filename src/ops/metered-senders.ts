import { performance } from 'node:perf_hooks';
import type { EmailMessage, EmailSender } from '../channels/email-sender.js';
import { ProviderError } from '../channels/provider-error.js';
import type { SendReceipt, SmsLookup, SmsLookupResult, SmsMessage, SmsSender } from '../channels/sms-sender.js';
import type { Channel } from '../domain/vocabulary.js';
import type { OpsMetrics, ProviderCallOutcome } from './metrics.js';

/** Monotonic milliseconds; injected by tests. Default `performance.now`. */
export type Stopwatch = () => number;

/**
 * Times every provider call and counts its failures, then answers exactly as the wrapped sender
 * did (same receipt, same error). Wraps any adapter, so latency is measured the same way for
 * Twilio, SMTP and the outbox.
 */
export class MeteredSmsSender implements SmsSender {
  /** The inner sender's lookup, untimed (it sends nothing); absent when the inner sender has none. */
  readonly lookup: ((query: SmsLookup) => Promise<SmsLookupResult>) | undefined;

  constructor(
    private readonly inner: SmsSender,
    private readonly metrics: OpsMetrics,
    private readonly stopwatch: Stopwatch = () => performance.now(),
  ) {
    this.lookup = inner.lookup?.bind(inner);
  }

  get transport(): string {
    return this.inner.transport;
  }

  send(message: SmsMessage): Promise<SendReceipt> {
    return timed(this.metrics, this.stopwatch, 'sms', this.inner.transport, () => this.inner.send(message));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The email counterpart of MeteredSmsSender. */
export class MeteredEmailSender implements EmailSender {
  constructor(
    private readonly inner: EmailSender,
    private readonly metrics: OpsMetrics,
    private readonly stopwatch: Stopwatch = () => performance.now(),
  ) {}

  get transport(): string {
    return this.inner.transport;
  }

  send(message: EmailMessage): Promise<SendReceipt> {
    return timed(this.metrics, this.stopwatch, 'email', this.inner.transport, () => this.inner.send(message));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

async function timed(
  metrics: OpsMetrics,
  stopwatch: Stopwatch,
  channel: Channel,
  transport: string,
  call: () => Promise<SendReceipt>,
): Promise<SendReceipt> {
  const started = stopwatch();
  const seconds = () => Math.max(0, stopwatch() - started) / 1000;
  try {
    const receipt = await call();
    metrics.observeProviderCall({ channel, transport, outcome: 'ok', seconds: seconds() });
    return receipt;
  } catch (err) {
    // Anything but a ProviderError is a bug in the adapter; dispatch treats it as outcome unknown.
    const outcome: ProviderCallOutcome = err instanceof ProviderError ? err.outcome : 'unknown';
    const code = err instanceof ProviderError ? err.providerCode : 'unexpected_error';
    metrics.observeProviderCall({ channel, transport, outcome, code, seconds: seconds() });
    throw err;
  }
}
