import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import type { MessageInstance, MessageListInstanceCreateOptions } from 'twilio/lib/rest/api/v2010/account/message.js';
import { systemClock, type Clock } from '../platform/clock.js';
import { senderClosed } from './outbox-sms-sender.js';
import { ProviderError, sendLeaseLapsed, type BadAddressReason } from './provider-error.js';
import type { ProviderPrice, SendReceipt, SmsLookup, SmsLookupResult, SmsMessage, SmsSender } from './sms-sender.js';

export interface TwilioSmsSenderOptions {
  accountSid: string;
  authToken: string;
  /** Send through this Messaging Service (its sender pool, its settings). Takes precedence over `from`. */
  messagingServiceSid?: string;
  /** Sending number or alphanumeric id, when no Messaging Service is used. */
  from?: string;
  /**
   * Status callback for messages that carry no `statusCallbackUrl`: `<base>/<messageId>`.
   * Unset: such messages get no callback (or the Messaging Service's own).
   */
  statusCallbackBase?: string;
  /** Whole-request deadline, connecting included. */
  timeoutMs: number;
  /** Base URL standing in for `https://api.twilio.com`, e.g. a local fake. Default: Twilio's own. */
  apiUrl?: string;
  /** The SDK's HTTP client to use as is (then `apiUrl` and `timeoutMs` are its business). */
  httpClient?: RequestClient;
  /** Source of `acceptedAt`, and the time hand-over deadlines and lookups are judged by. Default: the system clock. */
  clock?: Clock;
}

/** Messages to one number listed per lookup; more than this since the claim makes a lookup inconclusive. */
const lookupLimit = 100;
/** Twilio's clock and ours may differ: a lookup reads messages sent from this long before the claim. */
const clockSkewMs = 5 * 60_000;
/**
 * The longest a message can wait in Twilio's queue (the largest `ValidityPeriod`, 36,000 s, also its
 * default) before Twilio sends it or gives it up, plus an hour's margin. A queued message has no
 * `date_sent` and so no place in a list filtered by it: only past this age does finding nothing
 * prove that nothing was sent.
 */
const queueLifetimeMs = 11 * 3_600_000;

/**
 * Sends SMS with the official Twilio SDK. Twilio has no idempotency key, so the failure
 * classification below errs towards `unknown` whenever the request may have reached Twilio;
 * `lookup` finds such messages afterwards in Twilio's message list.
 */
export class TwilioSmsSender implements SmsSender {
  readonly transport = 'twilio';
  readonly #client: twilio.Twilio;
  readonly #ownHttpClient: RecoupRequestClient | undefined;
  readonly #sender: Pick<MessageListInstanceCreateOptions, 'messagingServiceSid' | 'from'>;
  readonly #statusCallbackBase: string | undefined;
  readonly #clock: Clock;
  /** The hand-over deadline of the send whose request is being made, if it has one. */
  readonly #handOver = new AsyncLocalStorage<{ notAfter: Date | undefined }>();
  #closed = false;

  constructor(options: TwilioSmsSenderOptions) {
    if (options.messagingServiceSid) this.#sender = { messagingServiceSid: options.messagingServiceSid };
    else if (options.from) this.#sender = { from: options.from };
    else throw new Error('TwilioSmsSender needs messagingServiceSid or from');
    this.#statusCallbackBase = options.statusCallbackBase?.replace(/\/+$/, '');
    this.#clock = options.clock ?? systemClock;
    this.#ownHttpClient = options.httpClient
      ? undefined
      : new RecoupRequestClient({ timeout: options.timeoutMs, apiUrl: options.apiUrl });
    const httpClient = options.httpClient ?? this.#ownHttpClient;
    this.#client = twilio(options.accountSid, options.authToken, {
      httpClient: httpClient && gated(httpClient, () => this.#checkHandOver()),
      // Pinned so TWILIO_EDGE / TWILIO_REGION in the environment cannot re-route requests: config.ts
      // is the only reader of process.env.
      edge: '',
      region: '',
    });
  }

  async send(message: SmsMessage): Promise<SendReceipt> {
    if (this.#closed) throw senderClosed();
    const statusCallback =
      message.statusCallbackUrl ??
      (this.#statusCallbackBase ? `${this.#statusCallbackBase}/${encodeURIComponent(message.messageId)}` : undefined);
    try {
      const created = await this.#handOver.run({ notAfter: message.notAfter }, () =>
        this.#client.messages.create({
          to: message.to,
          body: message.body,
          ...this.#sender,
          ...(statusCallback ? { statusCallback } : {}),
        }),
      );
      return { providerId: created.sid, acceptedAt: this.#clock.now() };
    } catch (error) {
      throw classifyTwilioFailure(error);
    }
  }

  /**
   * Lists the messages sent to the number since shortly before the claim and picks the one whose
   * body holds the marker. Finding none proves nothing sent only once the claim is older than
   * Twilio's queue can hold a message, and only if no message to the number could be it (a Messaging
   * Service that shortens links rewrites the body, so another message to the number may be this one).
   * Failures are thrown as ProviderErrors.
   */
  async lookup(query: SmsLookup): Promise<SmsLookupResult> {
    if (this.#closed) throw senderClosed();
    const since = new Date(query.claimedAt.getTime() - clockSkewMs);
    let listed: MessageInstance[];
    try {
      listed = await this.#client.messages.list({
        to: query.to,
        dateSentAfter: since,
        pageSize: lookupLimit,
        limit: lookupLimit,
      });
    } catch (error) {
      throw classifyTwilioFailure(error);
    }
    const candidates = listed
      .filter((m) => m.direction !== 'inbound' && m.dateCreated.getTime() >= since.getTime())
      .sort((a, b) => a.dateCreated.getTime() - b.dateCreated.getTime());
    const match = candidates.find((m) => typeof m.body === 'string' && m.body.includes(query.bodyMarker));
    if (match) {
      const code = match.errorCode ? match.errorCode : undefined;
      const badAddress = code === undefined ? undefined : twilioBadAddress(code);
      const price = parseTwilioPrice(match.price ?? undefined, match.priceUnit ?? undefined);
      return {
        kind: 'found',
        providerId: match.sid,
        acceptedAt: match.dateCreated,
        providerStatus: match.status,
        ...(code === undefined ? {} : { errorCode: String(code) }),
        ...(badAddress ? { badAddress } : {}),
        ...(price ? { price } : {}),
      };
    }
    const complete = listed.length < lookupLimit;
    const settled = this.#clock.now().getTime() - query.claimedAt.getTime() >= queueLifetimeMs;
    return complete && settled && candidates.length === 0 ? { kind: 'not_sent' } : { kind: 'not_found' };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#ownHttpClient?.destroy();
  }

  /** Called as a request is handed to the HTTP client: refuses a send whose hand-over deadline has passed. */
  #checkHandOver(): void {
    const notAfter = this.#handOver.getStore()?.notAfter;
    if (notAfter && this.#clock.now() >= notAfter) throw sendLeaseLapsed();
  }
}

/**
 * `client` with `check` run as each request is handed to it, with nothing asynchronous left between
 * the check and axios writing the request. A throwing check stops the request before it exists.
 */
function gated(client: RequestClient, check: () => void): RequestClient {
  const wrapper = Object.create(client) as RequestClient;
  wrapper.request = <TData>(options: RequestClient.RequestOptions<TData>) => {
    check();
    return client.request(options);
  };
  return wrapper;
}

/**
 * The SDK's own RequestClient (auth header, form encoding, status handling untouched), with
 * two additions: requests to Twilio's API can be sent to another base URL, and its sockets can
 * be released on close.
 */
class RecoupRequestClient extends twilio.RequestClient {
  readonly #apiUrl: URL | undefined;
  readonly #httpAgent: http.Agent;

  constructor(options: { timeout: number; apiUrl: string | undefined }) {
    super({ timeout: options.timeout, keepAlive: true });
    this.#apiUrl = options.apiUrl ? new URL(options.apiUrl) : undefined;
    // The SDK configures only an https agent; a plain-http base URL (a local fake) gets one we can
    // destroy, with the SDK's timeout too: an agent without one ignores the server's announced
    // `Keep-Alive: timeout` and reuses idle connections until the server closes them, when a
    // request written as the server closes is reset after it left (an unknown outcome).
    this.#httpAgent = new http.Agent({ keepAlive: true, timeout: options.timeout });
    this.axios.defaults.httpAgent = this.#httpAgent;
  }

  override request<TData>(options: RequestClient.RequestOptions<TData>) {
    return super.request({ ...options, uri: this.#rewrite(options.uri) });
  }

  destroy(): void {
    this.#httpAgent.destroy();
    const httpsAgent: unknown = this.axios.defaults.httpsAgent;
    if (httpsAgent instanceof http.Agent) httpsAgent.destroy();
  }

  #rewrite(uri: string): string {
    if (!this.#apiUrl) return uri;
    const url = new URL(uri);
    if (url.protocol !== 'https:' || !/(^|\.)twilio\.com$/.test(url.hostname)) return uri;
    const basePath = this.#apiUrl.pathname.replace(/\/+$/, '');
    return `${this.#apiUrl.origin}${basePath}${url.pathname}${url.search}`;
  }
}

/**
 * Twilio error codes that fail a message for good because of its recipient.
 * The 300xx codes come with undelivered/failed status callbacks rather than from the create call;
 * they are here so callback handling can reuse `twilioBadAddress`.
 */
const badAddressCodes: ReadonlyMap<number, BadAddressReason> = new Map([
  [21211, 'invalid_address'], // invalid 'To' number
  [21614, 'invalid_address'], // 'To' is not a valid mobile number
  [30005, 'invalid_address'], // unknown destination handset
  [21610, 'unsubscribed'], // recipient replied STOP to this sender
  [21612, 'unreachable'], // 'To' not currently reachable via SMS
  [21635, 'unreachable'], // 'To' is a landline
  [21408, 'unreachable'], // sending to the number's region is not enabled
  [30003, 'unreachable'], // unreachable destination handset
  [30006, 'unreachable'], // landline or unreachable carrier
]);

/** Why a Twilio error code means the address should not be used again, if it does. */
export function twilioBadAddress(code: number): BadAddressReason | undefined {
  return badAddressCodes.get(code);
}

/** Twilio reports what a message cost as a negative decimal (`-0.00750`, `USD`): kept exactly, in micros. */
export function parseTwilioPrice(price: string | undefined, unit: string | undefined): ProviderPrice | undefined {
  if (!price || !unit || !/^-?\d+(\.\d+)?$/.test(price) || !/^[A-Za-z]{3}$/.test(unit)) return undefined;
  const [whole = '0', fraction = ''] = price.replace(/^-/, '').split('.');
  return {
    micros: Number(whole) * 1_000_000 + Number(fraction.slice(0, 6).padEnd(6, '0')),
    currency: unit.toUpperCase(),
  };
}

/** Connection failures that happen before a request exists on the wire. */
const neverSentCodes = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
]);

/** Decides what an error thrown by a call to Twilio (`messages.create`, `messages.list`) means for the message. */
export function classifyTwilioFailure(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const failure = (typeof error === 'object' && error !== null ? error : {}) as {
    status?: unknown;
    code?: unknown;
    message?: unknown;
    isAxiosError?: unknown;
    request?: { writableFinished?: unknown };
  };
  const text = typeof failure.message === 'string' ? failure.message : String(error);

  // Twilio answered (RestException, or TwilioServiceException for RFC 9457 bodies).
  if (failure.isAxiosError !== true && typeof failure.status === 'number') {
    const status = failure.status;
    const code = typeof failure.code === 'number' ? failure.code : undefined;
    const providerCode = String(code ?? status);
    const message = `Twilio ${status}${code === undefined ? '' : ` (${code})`}: ${text}`;
    const badAddress = code === undefined ? undefined : twilioBadAddress(code);
    if (badAddress) return new ProviderError('failed', providerCode, message, { badAddress, cause: error });
    if (status === 429 || code === 20429) return new ProviderError('retry', providerCode, message, { cause: error });
    // A 5xx can come from an edge (502, 503, 504) after Twilio's backend created the message, or from a
    // backend that failed after storing it: it proves nothing either way. `lookup` settles it later.
    if (status >= 500) return new ProviderError('unknown', providerCode, message, { cause: error });
    return new ProviderError('failed', providerCode, message, { cause: error });
  }

  // No answer. axios reports its timeout as ECONNABORTED; call it what it is.
  if (failure.isAxiosError === true && typeof failure.code === 'string') {
    const providerCode = failure.code === 'ECONNABORTED' ? 'ETIMEDOUT' : failure.code;
    if (neverSentCodes.has(failure.code)) return new ProviderError('retry', providerCode, text, { cause: error });
    // `writableFinished` turns true once the whole request was handed to the OS. Before that (TLS handshake
    // failed, timed out while connecting, reset mid-upload) Twilio cannot hold a complete request: retry.
    // After it, a reset or a timeout may follow Twilio creating the message (ECONNRESET on a reused
    // keep-alive socket included: the server may have read the request before closing): unknown.
    if (failure.request?.writableFinished !== true) {
      return new ProviderError('retry', providerCode, text, { cause: error });
    }
    return new ProviderError('unknown', providerCode, text, { cause: error });
  }

  // Anything else came after the request left (an unparsable 2xx body, say) or from a foreign httpClient.
  return new ProviderError('unknown', 'UNKNOWN', text, { cause: error });
}
