import { buffer } from 'node:stream/consumers';
import nodemailer from 'nodemailer';
import { systemClock, type Clock } from '../platform/clock.js';
import type { EmailMessage, EmailSender } from './email-sender.js';
import { senderClosed, writeOutboxFile } from './outbox-sms-sender.js';
import { ProviderError } from './provider-error.js';
import type { SendReceipt } from './sms-sender.js';
import { buildMailOptions, domainOf } from './smtp-email-sender.js';

export interface OutboxEmailSenderOptions {
  /** Folder the `<messageId>.eml` files go to; created on first send. */
  dir: string;
  /** Sender, e.g. `Shop <noreply@shop.example>`; its domain ends the Message-ID. */
  from: string;
  /** Right-hand side of the Message-ID. Default: the domain of `from`. */
  domain?: string;
  /** Source of the Date header and `acceptedAt`. Default: the system clock. */
  clock?: Clock;
}

/**
 * The "local" email transport: every message becomes `<dir>/<messageId>.eml`, the exact
 * RFC 5322 message the SMTP adapter would send (same builder, same headers), so it opens
 * in any mail client. Sending the same message id again replaces its file.
 */
export class OutboxEmailSender implements EmailSender {
  readonly transport = 'outbox';
  readonly #dir: string;
  readonly #from: string;
  readonly #domain: string;
  readonly #clock: Clock;
  // Builds the message in memory; CRLF line ends as on the wire.
  readonly #composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  #closed = false;

  constructor(options: OutboxEmailSenderOptions) {
    this.#dir = options.dir;
    this.#from = options.from;
    this.#domain = options.domain ?? domainOf(options.from);
    this.#clock = options.clock ?? systemClock;
  }

  async send(message: EmailMessage): Promise<SendReceipt> {
    if (this.#closed) throw senderClosed();
    const acceptedAt = this.#clock.now();
    let raw: Buffer;
    try {
      const info = await this.#composer.sendMail(
        buildMailOptions(message, { from: this.#from, domain: this.#domain, date: acceptedAt }),
      );
      raw = Buffer.isBuffer(info.message) ? info.message : await buffer(info.message);
    } catch (error) {
      // Composing fails only on bad input (an unparsable address, say); the same input fails again.
      throw new ProviderError('failed', 'EMESSAGE', `could not build the email: ${String(error)}`, { cause: error });
    }
    await writeOutboxFile(this.#dir, message.messageId, '.eml', raw);
    return { providerId: `outbox-${message.messageId}`, acceptedAt };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#composer.close();
  }
}
