import { PassThrough, type Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type { NodemailerError, PluginFunction, SendMailOptions, Transporter } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { systemClock, type Clock } from '../platform/clock.js';
import type { EmailMessage, EmailSender } from './email-sender.js';
import { senderClosed } from './outbox-sms-sender.js';
import { ProviderError, sendLeaseLapsed, type BadAddressReason } from './provider-error.js';
import type { SendReceipt } from './sms-sender.js';

export interface SmtpEmailSenderOptions {
  /** SMTP connection URL, e.g. `smtp://user:pass@mail.example.com:587` or `smtps://…:465`. */
  smtpUrl: string;
  /** Sender, e.g. `Shop <noreply@shop.example>`. */
  from: string;
  /** Bounds connecting (DNS included), waiting for the greeting, and any silence from the server mid-session. */
  timeoutMs: number;
  /** Right-hand side of the Message-ID. Default: the domain of `from`. */
  domain?: string;
  /** Parallel SMTP connections. Default 5, a common per-client limit of submission servers. */
  maxConnections?: number;
  /** Source of `acceptedAt`. Default: the system clock. */
  clock?: Clock;
}

/**
 * Sends email through a pooled nodemailer SMTP transport. Failures become ProviderErrors:
 * an SMTP reply decides by its class (5xx `failed`, 4xx `retry`); without a reply, what
 * matters is whether any byte of the message went out after DATA (`unknown`) or not (`retry`).
 */
export class SmtpEmailSender implements EmailSender {
  readonly transport = 'smtp';
  readonly #transporter: Transporter;
  readonly #from: string;
  readonly #domain: string;
  readonly #clock: Clock;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: SmtpEmailSenderOptions) {
    this.#from = options.from;
    this.#domain = options.domain ?? domainOf(options.from);
    this.#clock = options.clock ?? systemClock;
    this.#transporter = nodemailer.createTransport({
      url: options.smtpUrl,
      pool: true,
      maxConnections: options.maxConnections ?? 5,
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
      dnsTimeout: options.timeoutMs,
    });
    // Failures reach us through each sendMail; an 'error' event without a listener would crash the process.
    this.#transporter.on('error', () => undefined);
    this.#transporter.use('stream', trackMessageStream);
  }

  async send(message: EmailMessage): Promise<SendReceipt> {
    if (this.#closed) throw senderClosed();
    const progress: SendProgress = {
      streams: [],
      mayHandOver: message.notAfter ? () => this.#clock.now() < (message.notAfter as Date) : () => true,
    };
    const options = Object.assign(
      buildMailOptions(message, { from: this.#from, domain: this.#domain, date: this.#clock.now() }),
      { [progressKey]: progress },
    );
    const sending = this.#transporter.sendMail(options);
    this.#inFlight.add(sending);
    try {
      await sending;
      return { providerId: messageIdHeader(message.messageId, this.#domain), acceptedAt: this.#clock.now() };
    } catch (error) {
      if (progress.leaseLapsed) throw sendLeaseLapsed();
      throw classifySmtpFailure(
        error,
        progress.streams.some((stream) => stream.readableDidRead),
      );
    } finally {
      this.#inFlight.delete(sending);
    }
  }

  /** Stops taking messages, lets the ones on the wire finish (each is bounded by timeoutMs of silence), closes the pool. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#transporter.close();
    }
    await Promise.allSettled([...this.#inFlight]);
  }
}

/** What recoup puts into every email, whatever the transport: the SMTP and outbox adapters share it. */
export function buildMailOptions(
  message: EmailMessage,
  context: { from: string; domain: string; date: Date },
): SendMailOptions {
  const headers: Record<string, string> = { 'X-Recoup-Message-Id': message.messageId };
  const options: SendMailOptions = {
    from: context.from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    html: message.html,
    date: context.date,
    // Deterministic, so bounces and complaints can be matched to the message. It does not deduplicate.
    messageId: messageIdHeader(message.messageId, context.domain),
    headers,
  };
  if (message.unsubscribe) {
    const { url, mailto } = message.unsubscribe;
    // One inner array = one List-Unsubscribe header holding both targets, as RFC 8058 mail clients expect.
    options.list = { unsubscribe: [mailto ? [url, mailto] : [url]] };
    // RFC 8058 one-click needs an https target; announcing it for an http url would be a promise
    // receivers are told not to act on.
    if (url.startsWith('https://')) headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }
  return options;
}

/** `<messageId@domain>`; characters a msg-id cannot hold become `_`, so the header stays valid. */
export function messageIdHeader(messageId: string, domain: string): string {
  return `<${messageId.replace(/[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]/g, '_')}@${domain}>`;
}

/** Domain part of an address like `Shop <noreply@shop.example>`; `localhost` when there is none. */
export function domainOf(address: string): string {
  const [first] = addressparser(address, { flatten: true });
  const at = first?.address.lastIndexOf('@') ?? -1;
  const domain = at >= 0 ? first?.address.slice(at + 1) : undefined;
  return domain ? domain : 'localhost';
}

/**
 * Decides what a nodemailer failure means for the message.
 * @param dataStarted whether the server said 354 to DATA and the transport began reading the message:
 *   from then on, a silent server or a dropped connection leaves us unable to know if it was accepted.
 */
export function classifySmtpFailure(error: unknown, dataStarted: boolean): ProviderError {
  if (error instanceof ProviderError) return error;
  const failure = (typeof error === 'object' && error !== null ? error : {}) as NodemailerError;
  const text = failure.message ?? String(error);
  const replyCode = failure.responseCode;
  if (replyCode !== undefined && replyCode >= 400) {
    const reply = failure.response ?? text;
    // nodemailer's own judgement: 5xx is permanent except 503 (bad sequence), which a new session may not repeat.
    const permanent = failure.permanent ?? replyCode >= 500;
    if (!permanent) return new ProviderError('retry', String(replyCode), text, { cause: error });
    const badAddress = badAddressOf(replyCode, reply, failure.command);
    return new ProviderError('failed', String(replyCode), text, { badAddress, cause: error });
  }
  const code = failure.code ?? 'ESMTP';
  // Refused before anything was said to a server: the message cannot succeed by waiting.
  if (code === 'EENVELOPE' || code === 'EMESSAGE' || code === 'EAUTH' || code === 'EREQUIRETLS') {
    const badAddress = code === 'EENVELOPE' && /invalid recipient/i.test(text) ? 'invalid_address' : undefined;
    return new ProviderError('failed', code, text, { badAddress, cause: error });
  }
  const providerCode = failure.originalCode ?? code;
  if (dataStarted) return new ProviderError('unknown', providerCode, text, { cause: error });
  // Refused, unresolvable, silent before the greeting, dropped during the envelope: no message was handed over.
  return new ProviderError('retry', providerCode, text, { cause: error });
}

function badAddressOf(replyCode: number, reply: string, command: string | undefined): BadAddressReason | undefined {
  // Enhanced status codes (RFC 3463) say precisely what was wrong, when the server sends them.
  const enhanced = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(reply);
  if (enhanced) {
    const [, , subject, detail] = enhanced;
    if (subject === '1' && ['1', '2', '3', '6', '10'].includes(detail ?? '')) return 'invalid_address';
    if (subject === '2' && detail === '1') return 'unreachable'; // mailbox disabled
    return undefined;
  }
  // Without them, 550/551/553 to RCPT TO mean "no such user" unless the server says it will not relay for us.
  if (command === 'RCPT TO' && [550, 551, 553].includes(replyCode) && !/relay/i.test(reply)) return 'invalid_address';
  return undefined;
}

/** Carried in the mail data from send() to the 'stream' plugin; nodemailer copies mail data keys by reference. */
const progressKey = 'recoupSendProgress';
interface SendProgress {
  /** Every stream the transport made of this message (a requeued message gets a new one per connection). */
  streams: Readable[];
  /** Asked when the server said 354 and the first byte would go out: false stops the message there. */
  mayHandOver: () => boolean;
  /** Set when mayHandOver said no: the server got DATA but no message, so it accepted nothing. */
  leaseLapsed?: boolean;
}

/**
 * The stream nodemailer reads the message from is piped into the socket only after the server
 * answered DATA with 354; until then nothing reads it. `readableDidRead` is therefore the
 * "message bytes went out" signal; nodemailer's pool uses the same test to requeue safely.
 * The same moment is the last chance to hold a message back whose send lease ran out while it
 * waited for a pooled connection: the stream then fails before its first byte and the server,
 * which never sees the end of DATA, accepts nothing.
 * Must stay the last processing step: a DKIM signer added after it would read the message early.
 */
const trackMessageStream: PluginFunction = (mail, done) => {
  const progress = (mail.data as { [progressKey]?: SendProgress })[progressKey];
  if (progress) {
    mail.message.processFunc((stream) => {
      const gated = gateFirstRead(stream, () => {
        if (progress.mayHandOver()) return true;
        progress.leaseLapsed = true;
        return false;
      });
      progress.streams.push(gated);
      return gated;
    });
  }
  done();
};

/** `source` as read by the transport, except that its first read asks `allowed` and fails the stream on a no. */
function gateFirstRead(source: Readable, allowed: () => boolean): Readable {
  let started = false;
  const gated = new PassThrough();
  const read = gated._read.bind(gated);
  gated._read = (size: number) => {
    if (!started) {
      started = true;
      if (!allowed()) {
        source.destroy();
        gated.destroy(new Error('send lease lapsed before the message was handed over'));
        return;
      }
      source.on('error', (err) => gated.destroy(err));
      source.pipe(gated);
    }
    read(size);
  };
  return gated;
}
