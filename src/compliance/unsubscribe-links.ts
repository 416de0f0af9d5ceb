import { createHmac, timingSafeEqual } from 'node:crypto';
import { domainOf } from '../channels/smtp-email-sender.js';

export interface UnsubscribeLinksOptions {
  /** PUBLIC_URL: links are `${publicUrl}/u/<token>`. */
  publicUrl: string;
  /** RECOUP_SECRET. Every process that sends email or serves `/u/` must share it. */
  secret: string;
  /** EMAIL_FROM; the default mailto mailbox is `unsubscribe@<its domain>`. */
  from: string;
  /** Mailbox of the `mailto:` alternative. Default `unsubscribe@<domain of from>`. */
  mailbox?: string | undefined;
}

export interface UnsubscribeTargets {
  /** https one-click target (RFC 8058) and the footer link. */
  url: string;
  /** `mailto:` alternative (RFC 2369) with the token in the subject. */
  mailto: string;
}

const tokenPattern = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{22})$/;

/**
 * Stateless unsubscribe tokens: `<messageId>.<base64url HMAC-SHA256, first 16 bytes>`.
 *
 * Not the retry-link token: that one expires with the link and lets its holder pay and change
 * contact details, while an unsubscribe link must keep working for as long as the email exists
 * and can do one thing only. Nothing is stored; the key is derived from RECOUP_SECRET for this
 * purpose alone, so a token is useless anywhere else, and rotating the secret voids old links.
 */
export class UnsubscribeLinks {
  readonly #key: Buffer;
  readonly #publicUrl: string;
  readonly #mailbox: string;

  constructor(options: UnsubscribeLinksOptions) {
    this.#key = createHmac('sha256', options.secret).update('recoup/unsubscribe-token/v1').digest();
    this.#publicUrl = options.publicUrl.replace(/\/+$/, '');
    this.#mailbox = options.mailbox ?? `unsubscribe@${domainOf(options.from)}`;
  }

  token(messageId: string): string {
    return `${messageId}.${this.#mac(messageId)}`;
  }

  /** The message id a genuine token names, else undefined. */
  verify(token: string): string | undefined {
    const match = tokenPattern.exec(token);
    if (!match?.[1] || !match[2]) return undefined;
    const expected = Buffer.from(this.#mac(match[1]));
    const given = Buffer.from(match[2]);
    return given.length === expected.length && timingSafeEqual(given, expected) ? match[1] : undefined;
  }

  forMessage(messageId: string): UnsubscribeTargets {
    const token = this.token(messageId);
    return {
      url: `${this.#publicUrl}/u/${token}`,
      mailto: `mailto:${this.#mailbox}?subject=${encodeURIComponent(`unsubscribe ${token}`)}`,
    };
  }

  #mac(messageId: string): string {
    return createHmac('sha256', this.#key).update(messageId).digest().subarray(0, 16).toString('base64url');
  }
}
