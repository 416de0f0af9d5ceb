/** Port: sends one SMS. Adapters: OutboxSmsSender (files), TwilioSmsSender. */
export interface SmsMessage {
  /** recoup's message id; adapters use it for file names, callbacks and logs. */
  messageId: string;
  /** E.164 number. */
  to: string;
  body: string;
  /** Where the provider should report delivery status, if it supports that. Default: the adapter's own. */
  statusCallbackUrl?: string;
  /**
   * The message must not be handed over after this moment (its send lease, src/recoveries/send-lease.ts).
   * Adapters check it immediately before the request leaves, and refuse with `sendLeaseLapsed()` past it.
   */
  notAfter?: Date;
}

export interface SendReceipt {
  /** Provider's id for the message (Twilio SID, SMTP Message-ID, outbox file name). */
  providerId: string;
  acceptedAt: Date;
}

/** What a provider charged for a message, exactly: millionths of `currency`'s major unit. */
export interface ProviderPrice {
  micros: number;
  currency: string;
}

export interface SmsSender {
  readonly transport: string;
  /** Sends the message or throws a ProviderError saying what the failure means. */
  send(message: SmsMessage): Promise<SendReceipt>;
  close(): Promise<void>;
}
