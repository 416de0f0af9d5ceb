import type { BadAddressReason } from './provider-error.js';

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

/** A message whose send outcome is unknown, to be looked for at the provider. */
export interface SmsLookup {
  messageId: string;
  to: string;
  /** When the message was claimed: the provider cannot have created it earlier. */
  claimedAt: Date;
  /** Text only this message's body holds (its retry link's token): tells it from other messages to `to`. */
  bodyMarker: string;
}

export type SmsLookupResult =
  /** The provider holds it; `providerStatus` is its current status in the provider's words, as in its callbacks. */
  | {
      kind: 'found';
      providerId: string;
      acceptedAt: Date;
      providerStatus: string;
      errorCode?: string;
      badAddress?: BadAddressReason;
      price?: ProviderPrice;
    }
  /** The provider holds nothing it could be, and would by now if it had ever taken it: it was never sent. */
  | { kind: 'not_sent' }
  /** Nothing certain yet: nothing found, or only messages that cannot be told apart from it. Ask again later. */
  | { kind: 'not_found' };

export interface SmsSender {
  readonly transport: string;
  /** Sends the message or throws a ProviderError saying what the failure means. */
  send(message: SmsMessage): Promise<SendReceipt>;
  /**
   * Looks for a message whose send outcome is unknown at the provider (src/messages/unknown-sms.ts).
   * Transports that cannot be asked leave it out; their unknown messages stay unknown.
   */
  lookup?(query: SmsLookup): Promise<SmsLookupResult>;
  close(): Promise<void>;
}
