import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import twilio from 'twilio';

/**
 * A local stand-in for Twilio's Messages API, for integration, end-to-end and fault tests.
 *
 * Implements `POST /2010-04-01/Accounts/:sid/Messages.json` (form-encoded, Basic auth) with
 * Twilio-shaped JSON answers, records every message it accepts, and can be told to fail:
 * - `failNext(n, fault)`: the next n message requests get that fault (an error answer, `hang`,
 *   `drop`, an error answer after creating the message, or a creation that comes late);
 * - `setFaults(rates, seed)`: random faults from a seeded RNG, so a failing run can be replayed;
 * - `invalidNumbers`: recipients answered with 400 / 21211.
 *
 * Checks run in Twilio's order: route, auth (401 / 20003), parameters (400), programmed
 * faults, random faults, invalid numbers, then accept (201).
 *
 * `hang` and `drop` model the case a sender cannot see through: the message IS accepted and
 * recorded (`answered: false`), but no answer arrives: the request is held until the client
 * gives up or `close()`, or the connection is destroyed. Tests of "no blind re-send" count
 * `messages` for a recipient.
 *
 * `GET` on the same path lists the accepted messages, newest first, filtered by `To`, `From`
 * and `DateSent>` / `DateSent<` (inclusive, as Twilio reads them), paged by `PageSize` / `Page`.
 */
export interface FakeTwilio {
  /** Base URL to give the sender as `apiUrl`, e.g. `http://127.0.0.1:43125`. */
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  /** Accepted messages, oldest first. */
  readonly messages: readonly FakeTwilioMessage[];
  /** Every request that reached the server, answered or not. */
  readonly requests: readonly FakeTwilioRequest[];
  /** Connections that have ended, oldest first, and which side closed each: the client's FIN came first, or not. */
  readonly closedConnections: ReadonlyArray<{ closedBy: 'client' | 'server' }>;
  /** Recipients (E.164) answered with 400 / 21211. */
  readonly invalidNumbers: Set<string>;
  /**
   * The next `count` message requests get `fault` instead of the normal handling (after the auth check);
   * with `to`, only requests to that number do (other tests' sends in the same server go through).
   */
  failNext(count: number, fault: FakeTwilioFault, options?: { to?: string }): void;
  /** Random faults per request, drawn in this order; rates are 0..1 and their sum at most 1. `seed` restarts the RNG. */
  setFaults(rates: FakeTwilioFaultRates, seed?: number): void;
  /** The accepted message with this SID. */
  message(sid: string): FakeTwilioMessage | undefined;
  /**
   * POSTs a status callback for an accepted message to its statusCallback URL, signed with
   * X-Twilio-Signature like Twilio does. Returns the HTTP status the receiver answered.
   */
  sendStatusCallback(
    sid: string,
    status: TwilioMessageStatus,
    options?: { errorCode?: number; /** e.g. `-0.00750`, in USD */ price?: string },
  ): Promise<number>;
  /**
   * Where `sendInboundSms` posts: the number's "A message comes in" webhook, e.g.
   * `${PUBLIC_URL}/webhooks/twilio/inbound`. Set it once the receiver's URL is known.
   */
  inboundUrl: string | undefined;
  /**
   * POSTs an incoming message from `from` to `inboundUrl`, form-encoded and signed with
   * X-Twilio-Signature like Twilio does (`signWith` signs with another token: a forgery).
   * Returns the receiver's answer (TwiML for a reply).
   */
  sendInboundSms(from: string, body: string, options?: FakeInboundSmsOptions): Promise<FakeInboundAnswer>;
  /** Forgets messages, requests, programmed faults and rates (invalid numbers too). */
  reset(): void;
  /** Stops the server, cutting held requests. Safe to call twice. */
  close(): Promise<void>;
}

export interface FakeTwilioMessage {
  sid: string;
  to: string;
  body: string;
  from: string | undefined;
  messagingServiceSid: string | undefined;
  statusCallback: string | undefined;
  /** Twilio's `date_created`. */
  acceptedAt: Date;
  /** Twilio's `date_sent`: the fake hands every message to the carrier at once. */
  dateSent: Date | undefined;
  /** The last status reported (by a callback, or set by a test); `queued` or `accepted` at first. */
  status: TwilioMessageStatus;
  /** What Twilio charged, e.g. `-0.00750` (USD), once known. Tests may set it. */
  price: string | undefined;
  /** Why it failed (30003…), once it has. */
  errorCode: number | undefined;
  /** False when the client was not told of it: a fault swallowed or replaced the answer, or it came too late. */
  answered: boolean;
}

export interface FakeTwilioRequest {
  method: string;
  path: string;
  /** Basic auth matched the account. */
  authorized: boolean;
  /** Status answered; undefined when the request was held or dropped. */
  status: number | undefined;
  /** Decoded form fields. */
  params: Record<string, string>;
}

export interface FakeInboundSmsOptions {
  /** The Twilio number written to. Default +15005550006. */
  to?: string;
  /** Twilio's OptOutType (STOP / START / HELP), as sent with Advanced Opt-Out. */
  optOutType?: string;
  /** Sign with this auth token instead of the account's. */
  signWith?: string;
}

export interface FakeInboundAnswer {
  status: number;
  contentType: string | null;
  body: string;
  /** The signed request as posted, for a test to replay it verbatim (as an attacker who captured it would). */
  sent: { url: string; headers: Record<string, string>; body: string };
}

/** An error answer in Twilio's shape (`{ code, message, more_info, status }`). */
export interface FakeTwilioError {
  status: number;
  code?: number;
  message?: string;
  /** The message is created before the error is answered: an edge that fails after Twilio's backend accepted it. */
  created?: boolean;
}

/** The request is held; the message is created this long after it arrived, then answered if the client still waits. */
export interface FakeTwilioLateCreation {
  createAfterMs: number;
}

export type FakeTwilioFault = FakeTwilioError | FakeTwilioLateCreation | 'hang' | 'drop';

export interface FakeTwilioFaultRates {
  /** 500 / 20500, message not accepted. */
  error500Rate?: number;
  /** 429 / 20429, message not accepted. */
  error429Rate?: number;
  /** Accepted, never answered (held until the client gives up or close()). */
  timeoutRate?: number;
  /** Accepted, then the connection is destroyed without an answer. */
  dropRate?: number;
}

export type TwilioMessageStatus = 'queued' | 'accepted' | 'sending' | 'sent' | 'delivered' | 'undelivered' | 'failed';

export interface FakeTwilioOptions {
  /** Default: a random `AC…` SID. */
  accountSid?: string;
  /** Default: random. */
  authToken?: string;
  /** Seed of the fault RNG. Default 1. */
  seed?: number;
  /** How long an idle keep-alive connection is kept (announced as `Keep-Alive: timeout=…`). Default Node's 5 s. */
  keepAliveTimeoutMs?: number;
}

const messagesPath = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/;

export async function startFakeTwilio(options: FakeTwilioOptions = {}): Promise<FakeTwilio> {
  const accountSid = options.accountSid ?? `AC${randomBytes(16).toString('hex')}`;
  const authToken = options.authToken ?? randomBytes(16).toString('hex');
  const expectedAuth = Buffer.from(`Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`);
  const messages: FakeTwilioMessage[] = [];
  const requests: FakeTwilioRequest[] = [];
  const invalidNumbers = new Set<string>();
  const programmed: Array<{ fault: FakeTwilioFault; to: string | undefined }> = [];
  let rates: Required<FakeTwilioFaultRates> = { error500Rate: 0, error429Rate: 0, timeoutRate: 0, dropRate: 0 };
  let random = mulberry32(options.seed ?? 1);
  const sockets = new Set<Socket>();
  const closedConnections: Array<{ closedBy: 'client' | 'server' }> = [];
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { code: 20500, message: String(error), status: 500 });
    });
  });
  if (options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = options.keepAliveTimeoutMs;
  server.on('connection', (socket) => {
    sockets.add(socket);
    let clientEnded = false;
    socket.once('end', () => (clientEnded = true));
    socket.once('close', () => {
      sockets.delete(socket);
      closedConnections.push({ closedBy: clientEnded ? 'client' : 'server' });
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    const auth = Buffer.from(req.headers.authorization ?? '');
    const authorized = auth.length === expectedAuth.length && timingSafeEqual(auth, expectedAuth);
    const params = Object.fromEntries(req.method === 'GET' ? url.searchParams : new URLSearchParams(raw));
    const record: FakeTwilioRequest = { method: req.method ?? '', path, authorized, status: undefined, params };
    requests.push(record);
    const answer = (status: number, body: object) => {
      record.status = status;
      sendJson(res, status, body);
    };
    const error = (status: number, code: number, message: string) =>
      answer(status, { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });

    const route = messagesPath.exec(path);
    if (!route || (req.method !== 'POST' && req.method !== 'GET')) {
      return error(404, 20404, 'The requested resource was not found');
    }
    if (!authorized) return error(401, 20003, 'Authenticate');
    if (route[1] !== accountSid) return error(404, 20404, `The requested resource ${path} was not found`);
    if (req.method === 'GET') return answer(200, listPage(path, params));
    const { To: to, Body: body, From: from, MessagingServiceSid: messagingServiceSid } = params;
    if (!to) return error(400, 21604, "A 'To' phone number is required.");
    if (!body) return error(400, 21602, 'Message body is required.');
    if (!from && !messagingServiceSid)
      return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.");

    const next = programmed.findIndex((p) => p.to === undefined || p.to === to);
    const fault = next >= 0 ? programmed.splice(next, 1)[0]?.fault : randomFault();
    if (typeof fault === 'object' && 'status' in fault && !fault.created) {
      return error(fault.status, fault.code ?? fault.status, fault.message ?? `Programmed failure ${fault.status}`);
    }
    if (invalidNumbers.has(to)) return error(400, 21211, `The 'To' number ${to} is not a valid phone number.`);

    if (typeof fault === 'object' && 'createAfterMs' in fault) await later(fault.createAfterMs);
    const acceptedAt = new Date();
    const message: FakeTwilioMessage = {
      sid: `SM${randomBytes(16).toString('hex')}`,
      to,
      body,
      from,
      messagingServiceSid,
      statusCallback: params.StatusCallback,
      acceptedAt,
      dateSent: acceptedAt,
      status: messagingServiceSid ? 'accepted' : 'queued',
      price: undefined,
      errorCode: undefined,
      answered: fault === undefined || (typeof fault === 'object' && 'createAfterMs' in fault && !req.socket.destroyed),
    };
    messages.push(message);
    if (fault === 'hang') return; // held: the socket stays open with no answer
    if (fault === 'drop') {
      req.socket.destroy();
      return;
    }
    if (req.socket.destroyed) return; // a late creation whose client gave up
    if (typeof fault === 'object' && 'status' in fault) {
      return error(fault.status, fault.code ?? fault.status, fault.message ?? `Programmed failure ${fault.status}`);
    }
    answer(201, messageResource(accountSid, message));
  }

  /** One page of the message list, newest first (Twilio sorts by DateSent). */
  function listPage(path: string, params: Record<string, string>): object {
    const from = params['DateSent>'] === undefined ? undefined : Date.parse(params['DateSent>']);
    const until = params['DateSent<'] === undefined ? undefined : Date.parse(params['DateSent<']);
    const matching = messages
      .filter((m) => params.To === undefined || m.to === params.To)
      .filter((m) => params.From === undefined || m.from === params.From)
      .filter((m) => from === undefined || (m.dateSent !== undefined && m.dateSent.getTime() >= from))
      .filter((m) => until === undefined || (m.dateSent !== undefined && m.dateSent.getTime() <= until))
      .sort((a, b) => (b.dateSent?.getTime() ?? Infinity) - (a.dateSent?.getTime() ?? Infinity));
    const pageSize = Math.min(1000, Math.max(1, Number(params.PageSize ?? 50) || 50));
    const page = Math.max(0, Number(params.Page ?? 0) || 0);
    const slice = matching.slice(page * pageSize, (page + 1) * pageSize);
    const uriOf = (n: number) => {
      const query = new URLSearchParams({ ...params, PageSize: String(pageSize), Page: String(n) });
      return `${path}?${query.toString()}`;
    };
    return {
      messages: slice.map((m) => messageResource(accountSid, m)),
      page,
      page_size: pageSize,
      start: page * pageSize,
      end: page * pageSize + Math.max(0, slice.length - 1),
      uri: uriOf(page),
      first_page_uri: uriOf(0),
      previous_page_uri: page > 0 ? uriOf(page - 1) : null,
      next_page_uri: (page + 1) * pageSize < matching.length ? uriOf(page + 1) : null,
    };
  }

  // One draw per request, even with all rates at zero, so a seed replays the same sequence.
  function randomFault(): FakeTwilioFault | undefined {
    const draw = random();
    const table: [number, FakeTwilioFault][] = [
      [rates.error500Rate, { status: 500, code: 20500, message: 'Internal Server Error' }],
      [rates.error429Rate, { status: 429, code: 20429, message: 'Too Many Requests' }],
      [rates.timeoutRate, 'hang'],
      [rates.dropRate, 'drop'],
    ];
    let edge = 0;
    for (const [rate, fault] of table) {
      edge += rate;
      if (draw < edge) return fault;
    }
    return undefined;
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;

  const fake: FakeTwilio = {
    url: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    messages,
    requests,
    closedConnections,
    invalidNumbers,
    failNext(count, fault, failOptions = {}) {
      for (let i = 0; i < count; i++) programmed.push({ fault, to: failOptions.to });
    },
    setFaults(next, seed) {
      rates = { error500Rate: 0, error429Rate: 0, timeoutRate: 0, dropRate: 0, ...next };
      const total = Object.values(rates).reduce((sum, rate) => sum + rate, 0);
      if (Object.values(rates).some((rate) => rate < 0) || total > 1) {
        throw new Error(`fault rates must be >= 0 and sum to at most 1, got ${JSON.stringify(rates)}`);
      }
      if (seed !== undefined) random = mulberry32(seed);
    },
    message(sid) {
      return messages.find((message) => message.sid === sid);
    },
    async sendStatusCallback(sid, status, callbackOptions = {}) {
      const message = fake.message(sid);
      if (!message?.statusCallback) throw new Error(`no accepted message ${sid} with a statusCallback`);
      message.status = status;
      if (callbackOptions.price !== undefined) message.price = callbackOptions.price;
      if (callbackOptions.errorCode !== undefined) message.errorCode = callbackOptions.errorCode;
      const params: Record<string, string> = {
        AccountSid: accountSid,
        MessageSid: sid,
        SmsSid: sid,
        MessageStatus: status,
        SmsStatus: status,
        To: message.to,
        ApiVersion: '2010-04-01',
        ...(message.from ? { From: message.from } : {}),
        ...(message.messagingServiceSid ? { MessagingServiceSid: message.messagingServiceSid } : {}),
        ...(callbackOptions.errorCode === undefined ? {} : { ErrorCode: String(callbackOptions.errorCode) }),
        ...(callbackOptions.price === undefined ? {} : { Price: callbackOptions.price, PriceUnit: 'USD' }),
      };
      const response = await fetch(message.statusCallback, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-twilio-signature': twilio.getExpectedTwilioSignature(authToken, message.statusCallback, params),
        },
        body: new URLSearchParams(params).toString(),
      });
      await response.arrayBuffer();
      return response.status;
    },
    inboundUrl: undefined,
    async sendInboundSms(from, body, inboundOptions = {}) {
      const url = fake.inboundUrl;
      if (!url) throw new Error('set inboundUrl before sendInboundSms');
      const params: Record<string, string> = {
        AccountSid: accountSid,
        MessageSid: `SM${randomBytes(16).toString('hex')}`,
        SmsSid: '',
        From: from,
        To: inboundOptions.to ?? '+15005550006',
        Body: body,
        NumMedia: '0',
        NumSegments: '1',
        ApiVersion: '2010-04-01',
        ...(inboundOptions.optOutType ? { OptOutType: inboundOptions.optOutType } : {}),
      };
      params.SmsSid = params.MessageSid ?? '';
      const sent = {
        url,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-twilio-signature': twilio.getExpectedTwilioSignature(inboundOptions.signWith ?? authToken, url, params),
        },
        body: new URLSearchParams(params).toString(),
      };
      const response = await fetch(url, { method: 'POST', headers: sent.headers, body: sent.body });
      return {
        status: response.status,
        contentType: response.headers.get('content-type'),
        body: await response.text(),
        sent,
      };
    },
    reset() {
      messages.length = 0;
      requests.length = 0;
      programmed.length = 0;
      invalidNumbers.clear();
      rates = { error500Rate: 0, error429Rate: 0, timeoutRate: 0, dropRate: 0 };
      random = mulberry32(options.seed ?? 1);
    },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
  return fake;
}

/** The Message resource as Twilio's create and list calls return it (the fields the SDK maps). */
function messageResource(accountSid: string, message: FakeTwilioMessage): object {
  const rfc2822 = (date: Date) => date.toUTCString().replace('GMT', '+0000');
  const created = rfc2822(message.acceptedAt);
  return {
    sid: message.sid,
    account_sid: accountSid,
    messaging_service_sid: message.messagingServiceSid ?? null,
    from: message.from ?? null,
    to: message.to,
    body: message.body,
    status: message.status,
    direction: 'outbound-api',
    api_version: '2010-04-01',
    num_segments: '1',
    num_media: '0',
    price: message.price ?? null,
    price_unit: 'USD',
    error_code: message.errorCode ?? null,
    error_message: null,
    date_created: created,
    date_updated: created,
    date_sent: message.dateSent ? rfc2822(message.dateSent) : null,
    uri: `/2010-04-01/Accounts/${accountSid}/Messages/${message.sid}.json`,
    subresource_uris: { media: `/2010-04-01/Accounts/${accountSid}/Messages/${message.sid}/Media.json` },
  };
}

function sendJson(res: http.ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Small, fast, seedable PRNG (Mulberry32): the same seed gives the same fault sequence. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
