import type { EmailMessage, EmailSender } from '../src/channels/email-sender.js';
import type { SendReceipt, SmsMessage, SmsSender } from '../src/channels/sms-sender.js';

/**
 * In-process providers that accept every message after `latencyMs` (default 0, so the benchmark
 * measures recoup and its engines, not a network). The accept time becomes the message's
 * `sent_at`, which is what lateness is measured against.
 */
abstract class FakeSender<M extends { messageId: string }> {
  readonly transport = 'bench';
  sent = 0;

  constructor(private readonly latencyMs = 0) {}

  async send(message: M): Promise<SendReceipt> {
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    this.sent += 1;
    return { providerId: `bench-${message.messageId}`, acceptedAt: new Date() };
  }

  async close(): Promise<void> {}
}

export class FakeSmsSender extends FakeSender<SmsMessage> implements SmsSender {}
export class FakeEmailSender extends FakeSender<EmailMessage> implements EmailSender {}
