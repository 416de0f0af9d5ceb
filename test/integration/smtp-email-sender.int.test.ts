import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import { SmtpEmailSender, type SmtpEmailSenderOptions } from '../../src/channels/smtp-email-sender.js';
import { email, emailSenderContract, headerLines } from '../helpers/email-sender.contract.js';

interface ReceivedMail {
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
  connection: string;
}

interface LocalSmtp {
  url: string;
  received: ReceivedMail[];
  /** Cuts every open connection, as a crashing server would. */
  dropConnections(): void;
  close(): Promise<void>;
}

type Handlers = Pick<SMTPServerOptions, 'onRcptTo'> & {
  /** Replaces the default "accept and record"; gets the whole message. */
  onData?(raw: Buffer, session: SMTPServerSession, callback: (error?: Error | null) => void): void;
};

/** A real SMTP server (nodemailer's smtp-server) on a free local port; plain text, no auth. */
async function startSmtp(handlers: Handlers = {}): Promise<LocalSmtp> {
  const received: ReceivedMail[] = [];
  const sockets = new Set<Socket>();
  const server = new SMTPServer({
    authOptional: true,
    // STARTTLS with smtp-server's self-signed certificate would (rightly) fail verification.
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    closeTimeout: 200,
    ...(handlers.onRcptTo ? { onRcptTo: handlers.onRcptTo } : {}),
    onData(stream: Readable, session, callback) {
      buffer(stream).then((raw) => {
        if (handlers.onData) return handlers.onData(raw, session, callback);
        const { mailFrom, rcptTo } = session.envelope;
        received.push({
          mailFrom: mailFrom ? mailFrom.address : '',
          rcptTo: rcptTo.map((rcpt) => rcpt.address),
          raw,
          connection: session.id,
        });
        callback();
      }, callback);
    },
  });
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    dropConnections: () => sockets.forEach((socket) => socket.destroy()),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function smtpError(responseCode: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode });
}

emailSenderContract('SmtpEmailSender against smtp-server', async () => {
  const smtp = await startSmtp();
  return {
    sender: new SmtpEmailSender({ smtpUrl: smtp.url, from: 'Shop <noreply@shop.example>', timeoutMs: 5000 }),
    domain: 'shop.example',
    received: async (receipt) => {
      const mail = smtp.received.find((entry) => entry.raw.includes(`Message-ID: ${receipt.providerId}`));
      if (!mail) throw new Error(`the SMTP server received no message ${receipt.providerId}`);
      return mail.raw;
    },
    dispose: () => smtp.close(),
  };
});

describe('SmtpEmailSender', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  async function setup(handlers: Handlers = {}, options: Partial<SmtpEmailSenderOptions> = {}) {
    const smtp = await startSmtp(handlers);
    cleanups.push(() => smtp.close());
    const sender = new SmtpEmailSender({
      smtpUrl: smtp.url,
      from: 'Shop <noreply@shop.example>',
      timeoutMs: 5000,
      ...options,
    });
    cleanups.push(() => sender.close());
    return { smtp, sender };
  }
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.fail('expected the send to fail'),
      (error: unknown) => {
        expect(error).toBeInstanceOf(ProviderError);
        return error as ProviderError;
      },
    );

  it('hands the envelope and a complete multipart message to the server; the receipt is the Message-ID', async () => {
    const { smtp, sender } = await setup();
    const message = email({
      to: 'li.lei@example.cn',
      subject: '提醒：您的订单还未付款',
      unsubscribe: { url: 'https://shop.example/u/t1', mailto: 'unsubscribe@shop.example' },
    });
    const receipt = await sender.send(message);
    expect(receipt.providerId).toBe(`<${message.messageId}@shop.example>`);

    expect(smtp.received).toHaveLength(1);
    const [received] = smtp.received;
    expect(received).toMatchObject({ mailFrom: 'noreply@shop.example', rcptTo: ['li.lei@example.cn'] });
    const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(mail.messageId).toBe(receipt.providerId);
    expect(mail.subject).toBe('提醒：您的订单还未付款');
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/alternative' });
    expect(mail.text?.trim()).toBe(message.text);
    expect(mail.html).toContain(message.html);
    expect(headerLines(mail, 'list-unsubscribe')).toEqual([
      'List-Unsubscribe: <https://shop.example/u/t1>, <mailto:unsubscribe@shop.example>',
    ]);
    expect(headerLines(mail, 'list-unsubscribe-post')).toEqual(['List-Unsubscribe-Post: List-Unsubscribe=One-Click']);
  });

  it('takes the Message-ID domain from the domain option when given', async () => {
    const { sender } = await setup({}, { domain: 'mail.recoup.example' });
    const message = email();
    expect((await sender.send(message)).providerId).toBe(`<${message.messageId}@mail.recoup.example>`);
  });

  it('sends concurrent messages over a bounded pool of connections', async () => {
    const { smtp, sender } = await setup({}, { maxConnections: 2 });
    const messages = Array.from({ length: 8 }, (_, i) => email({ to: `customer${i}@example.com` }));
    await Promise.all(messages.map((message) => sender.send(message)));
    expect(smtp.received.map((mail) => mail.rcptTo[0]).sort()).toEqual(messages.map((m) => m.to).sort());
    const connections = new Set(smtp.received.map((mail) => mail.connection));
    expect(connections.size).toBeGreaterThanOrEqual(1);
    expect(connections.size).toBeLessThanOrEqual(2);
  });

  describe('classifies SMTP replies', () => {
    it('550 to RCPT TO (no such user): failed, invalid_address', async () => {
      const { smtp, sender } = await setup({
        onRcptTo: (_address, _session, callback) => callback(smtpError(550, 'No such user here')),
      });
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '550', badAddress: 'invalid_address' });
      expect(smtp.received).toHaveLength(0);
    });

    it('550 5.7.1 to RCPT TO (policy, not the address): failed without blaming the address', async () => {
      const { sender } = await setup({
        onRcptTo: (_address, _session, callback) => callback(smtpError(550, '5.7.1 Relaying denied')),
      });
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '550', badAddress: undefined });
    });

    it('451 to RCPT TO (greylisting): retry', async () => {
      const { sender } = await setup({
        onRcptTo: (_address, _session, callback) => callback(smtpError(451, 'Greylisted, try again later')),
      });
      expect(await failure(sender.send(email()))).toMatchObject({ outcome: 'retry', providerCode: '451' });
    });

    it('554 after the message (content rejected): failed without blaming the address', async () => {
      const { sender } = await setup({
        onData: (_raw, _session, callback) => callback(smtpError(554, 'Message rejected')),
      });
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '554', badAddress: undefined });
    });

    it('451 after the message: retry, the server said it did not take it', async () => {
      const { sender } = await setup({ onData: (_raw, _session, callback) => callback(smtpError(451, 'Local error')) });
      expect(await failure(sender.send(email()))).toMatchObject({ outcome: 'retry', providerCode: '451' });
    });

    it('the session still works after a refused message', async () => {
      let refuse = true;
      const { smtp, sender } = await setup({
        onRcptTo: (_address, _session, callback) => {
          const result = refuse ? smtpError(550, 'No such user') : null;
          refuse = false;
          callback(result);
        },
      });
      await failure(sender.send(email()));
      await sender.send(email());
      expect(smtp.received).toHaveLength(1);
    });
  });

  describe('classifies missing answers', () => {
    it('connection closed by the server after DATA: unknown', async () => {
      const holder: { smtp?: LocalSmtp } = {};
      const { smtp, sender } = await setup({ onData: () => holder.smtp?.dropConnections() });
      holder.smtp = smtp;
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'unknown', providerCode: 'ECONNECTION' });
    });

    it('no answer to the end of the message: unknown, within timeoutMs', async () => {
      const { sender } = await setup({ onData: () => undefined }, { timeoutMs: 300 });
      const started = Date.now();
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'unknown', providerCode: 'ETIMEDOUT' });
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('connection closed during the envelope, before any message byte: retry', async () => {
      const holder: { smtp?: LocalSmtp } = {};
      const { smtp, sender } = await setup({ onRcptTo: () => holder.smtp?.dropConnections() });
      holder.smtp = smtp;
      const error = await failure(sender.send(email()));
      expect(error).toMatchObject({ outcome: 'retry', providerCode: 'ECONNECTION' });
    });

    it('unreachable port: retry', async () => {
      const closed = net.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const { port } = closed.address() as AddressInfo;
      await new Promise((resolve) => closed.close(resolve));
      const sender = new SmtpEmailSender({
        smtpUrl: `smtp://127.0.0.1:${port}`,
        from: 'noreply@shop.example',
        timeoutMs: 2000,
      });
      cleanups.push(() => sender.close());
      expect(await failure(sender.send(email()))).toMatchObject({ outcome: 'retry', providerCode: 'ECONNREFUSED' });
    });

    it('a server that never greets: retry, within timeoutMs', async () => {
      const silent = net.createServer(() => undefined);
      const sockets = new Set<Socket>();
      silent.on('connection', (socket) => sockets.add(socket));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      cleanups.push(async () => {
        sockets.forEach((socket) => socket.destroy());
        await new Promise((resolve) => silent.close(resolve));
      });
      const { port } = silent.address() as AddressInfo;
      const sender = new SmtpEmailSender({
        smtpUrl: `smtp://127.0.0.1:${port}`,
        from: 'noreply@shop.example',
        timeoutMs: 300,
      });
      cleanups.push(() => sender.close());
      const started = Date.now();
      expect(await failure(sender.send(email()))).toMatchObject({ outcome: 'retry', providerCode: 'ETIMEDOUT' });
      expect(Date.now() - started).toBeLessThan(2000);
    });
  });

  it('holds back a message whose hand-over deadline passed while it waited for a connection: nothing is accepted', async () => {
    let release: (() => void) | undefined;
    const { smtp, sender } = await setup(
      {
        onData: (raw, session, callback) => {
          const accept = () => {
            smtp.received.push({ mailFrom: '', rcptTo: [], raw, connection: session.id });
            callback();
          };
          if (smtp.received.length > 0 || release) return accept();
          release = accept;
        },
      },
      { maxConnections: 1 },
    );
    const first = sender.send(email({ to: 'first@example.com' }));
    await expect.poll(() => release).toBeDefined();
    const late = sender.send(email({ to: 'late@example.com', notAfter: new Date(Date.now() + 200) }));
    await new Promise((resolve) => setTimeout(resolve, 400));
    release?.();
    await expect(first).resolves.toMatchObject({ providerId: expect.any(String) });
    expect(await failure(late)).toMatchObject({ outcome: 'retry', providerCode: 'send_lease_lapsed' });

    const onTime = email({ to: 'on-time@example.com', notAfter: new Date(Date.now() + 60_000) });
    await expect(sender.send(onTime)).resolves.toMatchObject({ providerId: expect.any(String) });
    const recipients = await Promise.all(smtp.received.map(async (mail) => (await simpleParser(mail.raw)).to));
    expect(recipients.map((to) => (Array.isArray(to) ? to[0] : to)?.text)).toEqual([
      'first@example.com',
      'on-time@example.com',
    ]);
  });

  it('close() waits for a message on the wire, then refuses new ones', async () => {
    let release: (() => void) | undefined;
    const { smtp, sender } = await setup({
      onData: (raw, session, callback) => {
        release = () => {
          smtp.received.push({ mailFrom: '', rcptTo: [], raw, connection: session.id });
          callback();
        };
      },
    });
    const sending = sender.send(email());
    await expect.poll(() => release).toBeDefined();
    let closed = false;
    const closing = sender.close().then(() => (closed = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closed).toBe(false);
    release?.();
    await expect(sending).resolves.toMatchObject({ providerId: expect.any(String) });
    await closing;
    expect(smtp.received).toHaveLength(1);
  });

  it('close() fails messages still waiting for a connection with retry', async () => {
    let release: (() => void) | undefined;
    const { sender } = await setup(
      {
        onData: (_raw, _session, callback) => {
          release = () => callback();
        },
      },
      { maxConnections: 1 },
    );
    const first = sender.send(email());
    await expect.poll(() => release).toBeDefined();
    const second = sender.send(email());
    const closing = sender.close();
    expect(await failure(second)).toMatchObject({ outcome: 'retry' });
    release?.();
    await expect(first).resolves.toMatchObject({ providerId: expect.any(String) });
    await closing;
  });
});
