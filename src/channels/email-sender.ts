import type { SendReceipt } from './sms-sender.js';

/** Port: sends one email. Adapters: OutboxEmailSender (.eml files), SmtpEmailSender (nodemailer pool). */
export interface EmailMessage {
  /** recoup's message id; becomes part of the RFC 5322 Message-ID for correlation. */
  messageId: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  /** One-click unsubscribe target (RFC 8058) and mailto alternative, when known. */
  unsubscribe?: { url: string; mailto?: string };
  /**
   * The message must not be handed over after this moment (its send lease, src/recoveries/send-lease.ts).
   * Adapters that may hold a message before it goes out (a pool's queue) check it when it would.
   */
  notAfter?: Date;
}

export interface EmailSender {
  readonly transport: string;
  /** Sends the message or throws a ProviderError saying what the failure means. */
  send(message: EmailMessage): Promise<SendReceipt>;
  close(): Promise<void>;
}
