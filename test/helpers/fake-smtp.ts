import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { SMTPServer } from 'smtp-server';

/**
 * A local SMTP server (nodemailer's smtp-server) for the fault harness and rate-limit tests:
 * records every message it accepts and, from a seeded RNG, answers a share of messages with a
 * temporary (451) or permanent (550) failure instead. Plain text, no auth, no STARTTLS.
 */
export interface FakeSmtp {
  /** `smtp://127.0.0.1:<port>` */
  readonly url: string;
  /** Accepted messages, oldest first. */
  readonly messages: readonly FakeSmtpMessage[];
  /** Messages refused with a programmed fault. */
  readonly refused: number;
  /** Random faults per message; rates 0..1, their sum at most 1. `seed` restarts the RNG. */
  setFaults(rates: FakeSmtpFaultRates, seed?: number): void;
  close(): Promise<void>;
}

export interface FakeSmtpFaultRates {
  /** 451 4.3.0: the sender should try again later. */
  tempFailRate?: number;
  /** 550 5.1.1: the sender must not retry. */
  permFailRate?: number;
}

export interface FakeSmtpMessage {
  /** The envelope's recipients, as smtp-server reports them (a punycode domain shown in Unicode). */
  rcptTo: string[];
  /** Whether the sender asked for SMTPUTF8 (RFC 6531): it does when an envelope address is not ASCII. */
  smtpUtf8: boolean;
  /** The To header as written. */
  to: string | undefined;
  /** recoup's own message id (the X-Recoup-Message-Id header). */
  recoupMessageId: string | undefined;
  subject: string | undefined;
  /** The https target of the List-Unsubscribe header (the one-click unsubscribe of RFC 8058). */
  listUnsubscribeUrl: string | undefined;
  acceptedAt: Date;
}

export async function startFakeSmtp(options: { seed?: number } = {}): Promise<FakeSmtp> {
  const messages: FakeSmtpMessage[] = [];
  const sockets = new Set<Socket>();
  let rates: Required<FakeSmtpFaultRates> = { tempFailRate: 0, permFailRate: 0 };
  let random = mulberry32(options.seed ?? 1);
  let refused = 0;

  const server = new SMTPServer({
    authOptional: true,
    // STARTTLS with smtp-server's self-signed certificate would (rightly) fail verification.
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    closeTimeout: 200,
    // Thousands of messages from a few pooled senders.
    maxClients: 500,
    onData(stream: Readable, session, callback) {
      buffer(stream).then((raw) => {
        const draw = random();
        if (draw < rates.tempFailRate) {
          refused += 1;
          return callback(smtpError(451, '4.3.0 Temporary failure, try again later'));
        }
        if (draw < rates.tempFailRate + rates.permFailRate) {
          refused += 1;
          return callback(smtpError(550, '5.1.1 Mailbox unavailable'));
        }
        // Unfolded: long headers (List-Unsubscribe) continue on indented lines.
        const head = raw
          .subarray(0, Math.max(0, raw.indexOf('\r\n\r\n')))
          .toString('utf8')
          .replace(/\r\n[ \t]+/g, ' ');
        messages.push({
          rcptTo: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          smtpUtf8: session.envelope.smtpUtf8 === true,
          to: /^To:\s*(.+)$/im.exec(head)?.[1]?.trim(),
          recoupMessageId: /^X-Recoup-Message-Id:\s*(.+)$/im.exec(head)?.[1]?.trim(),
          subject: /^Subject:\s*(.+)$/im.exec(head)?.[1]?.trim(),
          listUnsubscribeUrl: /^List-Unsubscribe:.*?<(https?:\/\/[^>]+)>/im.exec(head)?.[1],
          acceptedAt: new Date(),
        });
        callback();
      }, callback);
    },
  });
  // A sender killed mid-conversation resets its connection: that is the senders' fault to bear, not ours.
  server.on('error', () => undefined);
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    get refused() {
      return refused;
    },
    setFaults(next, seed) {
      rates = { tempFailRate: 0, permFailRate: 0, ...next };
      if (rates.tempFailRate < 0 || rates.permFailRate < 0 || rates.tempFailRate + rates.permFailRate > 1) {
        throw new Error(`fault rates must be >= 0 and sum to at most 1, got ${JSON.stringify(rates)}`);
      }
      if (seed !== undefined) random = mulberry32(seed);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

function smtpError(responseCode: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode });
}

/** Small seedable PRNG (Mulberry32), as in fake-twilio: a seed replays the same fault sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
