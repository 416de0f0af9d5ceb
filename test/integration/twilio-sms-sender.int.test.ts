import http from 'node:http';
import type { AddressInfo } from 'node:net';
import twilio from 'twilio';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import { TwilioSmsSender, type TwilioSmsSenderOptions } from '../../src/channels/twilio-sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { startFakeTwilio, type FakeTwilio, type FakeTwilioFault } from '../helpers/fake-twilio.js';
import { sms, smsSenderContract } from '../helpers/sms-sender.contract.js';

smsSenderContract('TwilioSmsSender against the fake Twilio', async () => {
  const fake = await startFakeTwilio();
  return {
    sender: new TwilioSmsSender({ ...credentials(fake), from: '+15005550006', timeoutMs: 5000 }),
    received: async (receipt) => {
      const message = fake.message(receipt.providerId);
      if (!message) throw new Error(`the fake has no message ${receipt.providerId}`);
      return { to: message.to, body: message.body };
    },
    dispose: () => fake.close(),
  };
});

function credentials(fake: FakeTwilio) {
  return { accountSid: fake.accountSid, authToken: fake.authToken, apiUrl: fake.url };
}

describe('TwilioSmsSender', () => {
  let fake: FakeTwilio;
  const senders: TwilioSmsSender[] = [];
  const sender = (options: Partial<TwilioSmsSenderOptions> = {}) => {
    const created = new TwilioSmsSender({ ...credentials(fake), from: '+15005550006', timeoutMs: 5000, ...options });
    senders.push(created);
    return created;
  };
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.fail('expected the send to fail'),
      (error: unknown) => {
        expect(error).toBeInstanceOf(ProviderError);
        return error as ProviderError;
      },
    );

  beforeAll(async () => {
    fake = await startFakeTwilio();
  });
  afterAll(() => fake.close());
  beforeEach(() => fake.reset());
  afterEach(async () => {
    await Promise.all(senders.splice(0).map((created) => created.close()));
  });

  describe('requests', () => {
    it('authenticates with the account SID and auth token and returns the message SID', async () => {
      const receipt = await sender().send(sms());
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]).toMatchObject({
        method: 'POST',
        path: `/2010-04-01/Accounts/${fake.accountSid}/Messages.json`,
        authorized: true,
        status: 201,
      });
      expect(receipt.providerId).toMatch(/^SM[0-9a-f]{32}$/);
      expect(receipt.providerId).toBe(fake.messages[0]?.sid);
    });

    it('sends From when no Messaging Service is configured', async () => {
      await sender({ from: '+15005550006' }).send(sms());
      expect(fake.messages[0]).toMatchObject({ from: '+15005550006', messagingServiceSid: undefined });
    });

    it('sends MessagingServiceSid instead of From when both are configured', async () => {
      const serviceSid = `MG${'a'.repeat(32)}`;
      await sender({ messagingServiceSid: serviceSid, from: '+15005550006' }).send(sms());
      expect(fake.messages[0]).toMatchObject({ messagingServiceSid: serviceSid, from: undefined });
      expect(fake.requests[0]?.params).not.toHaveProperty('From');
    });

    it("passes the message's status callback URL", async () => {
      const url = 'https://recoup.example/webhooks/twilio/status?m=1';
      await sender({ statusCallbackBase: 'https://other.example/cb' }).send(sms({ statusCallbackUrl: url }));
      expect(fake.messages[0]?.statusCallback).toBe(url);
    });

    it('builds the status callback from statusCallbackBase when the message has none', async () => {
      const message = sms();
      await sender({ statusCallbackBase: 'https://recoup.example/webhooks/twilio/status/' }).send(message);
      expect(fake.messages[0]?.statusCallback).toBe(
        `https://recoup.example/webhooks/twilio/status/${message.messageId}`,
      );
    });

    it('asks for no status callback when it has none', async () => {
      await sender().send(sms());
      expect(fake.requests[0]?.params).not.toHaveProperty('StatusCallback');
    });

    it('fails for good, without blaming the address, on wrong credentials', async () => {
      const error = await failure(sender({ authToken: 'wrong' }).send(sms()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '20003', badAddress: undefined });
      expect(fake.requests[0]?.authorized).toBe(false);
      expect(fake.messages).toHaveLength(0);
    });
  });

  describe('connections', () => {
    // A request written on an idle keep-alive connection just as the server closes it is reset
    // after it left: its outcome is unknown and the reminder is never re-sent. The client must
    // let go of idle connections before the server does (Node's agent does so a second before
    // the server's announced `Keep-Alive: timeout`, but only when the agent has a timeout).
    it('closes an idle connection itself, before the server announced it would', async () => {
      const server = await startFakeTwilio({ keepAliveTimeoutMs: 2_000 });
      try {
        const client = sender({ apiUrl: server.url, accountSid: server.accountSid, authToken: server.authToken });
        await client.send(sms());
        const closed = await new Promise<{ closedBy: string }>((resolve) => {
          const poll = setInterval(() => {
            const first = server.closedConnections[0];
            if (first) {
              clearInterval(poll);
              resolve(first);
            }
          }, 20);
        });
        expect(closed).toEqual({ closedBy: 'client' });
      } finally {
        await server.close();
      }
    });
  });

  describe('classifies Twilio answers', () => {
    it('21211 for an invalid number: failed, invalid_address', async () => {
      fake.invalidNumbers.add('+15005550001');
      const error = await failure(sender().send(sms({ to: '+15005550001' })));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '21211', badAddress: 'invalid_address' });
      expect(fake.messages).toHaveLength(0);
    });

    it.each([
      [21610, 'unsubscribed'],
      [21614, 'invalid_address'],
      [21612, 'unreachable'],
      [21635, 'unreachable'],
      [21408, 'unreachable'],
    ] as const)('%i: failed, %s', async (code, badAddress) => {
      fake.failNext(1, { status: 400, code });
      const error = await failure(sender().send(sms()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: String(code), badAddress });
    });

    it.each<[string, FakeTwilioFault, string]>([
      ['429 / 20429', { status: 429, code: 20429, message: 'Too Many Requests' }, '20429'],
      ['429 without a Twilio code', { status: 429 }, '429'],
    ])('%s: retry', async (_name, fault, providerCode) => {
      fake.failNext(1, fault);
      const error = await failure(sender().send(sms()));
      expect(error).toMatchObject({ outcome: 'retry', providerCode, badAddress: undefined });
    });

    it.each<[string, FakeTwilioFault, string]>([
      ['500', { status: 500, code: 20500 }, '20500'],
      ['502', { status: 502 }, '502'],
      ['503', { status: 503 }, '503'],
      ['504', { status: 504 }, '504'],
    ])('%s: unknown, the message may exist behind the error', async (_name, fault, providerCode) => {
      fake.failNext(1, fault);
      const error = await failure(sender().send(sms()));
      expect(error).toMatchObject({ outcome: 'unknown', providerCode, badAddress: undefined });
    });

    it('a 502 after Twilio created the message: unknown, and the message exists once', async () => {
      fake.failNext(1, { status: 502, created: true });
      expect(await failure(sender().send(sms()))).toMatchObject({ outcome: 'unknown', providerCode: '502' });
      expect(fake.messages).toMatchObject([{ answered: false }]);
    });

    it('another 4xx: failed without blaming the address', async () => {
      fake.failNext(1, {
        status: 400,
        code: 21606,
        message: "The 'From' number is not a valid message-capable number",
      });
      const error = await failure(sender().send(sms()));
      expect(error).toMatchObject({ outcome: 'failed', providerCode: '21606', badAddress: undefined });
      expect(error.message).toContain('21606');
    });
  });

  describe('hand-over deadline', () => {
    const now = new Date('2030-05-01T10:00:00Z');

    it('makes no request for a message whose notAfter has passed', async () => {
      const late = sender({ clock: new FixedClock(now) }).send(sms({ notAfter: new Date(now.getTime() - 1) }));
      expect(await failure(late)).toMatchObject({ outcome: 'retry', providerCode: 'send_lease_lapsed' });
      expect(fake.requests).toHaveLength(0);
      expect(fake.messages).toHaveLength(0);
    });

    it('sends a message whose notAfter is still ahead', async () => {
      const receipt = await sender({ clock: new FixedClock(now) }).send(
        sms({ notAfter: new Date(now.getTime() + 1_000) }),
      );
      expect(receipt.providerId).toBe(fake.messages[0]?.sid);
    });

    it('holds for an injected httpClient too', async () => {
      const requests: string[] = [];
      class RecordingClient extends twilio.RequestClient {
        override request(options: { uri: string }): Promise<never> {
          requests.push(options.uri);
          return Promise.reject(Object.assign(new Error('refused'), { isAxiosError: true, code: 'ECONNREFUSED' }));
        }
      }
      const injected = sender({ clock: new FixedClock(now), httpClient: new RecordingClient() });
      const late = await failure(injected.send(sms({ notAfter: now })));
      expect(late).toMatchObject({ outcome: 'retry', providerCode: 'send_lease_lapsed' });
      expect(requests).toEqual([]);
      await failure(injected.send(sms({ notAfter: new Date(now.getTime() + 1_000) })));
      expect(requests).toHaveLength(1);
    });
  });

  describe('lookup', () => {
    const to = '+14155550142';
    const marker = 'Tok3nOfThisMessage_xyz';
    const body = `Your order is waiting: https://pay.example/r/${marker} Reply STOP to opt out.`;

    it('finds a message Twilio created behind an error answer, by recipient and body', async () => {
      const claimedAt = new Date();
      const twilioSender = sender();
      await twilioSender.send(sms({ to, body: 'an earlier reminder to the same number' }));
      fake.failNext(1, { status: 502, created: true });
      const message = sms({ to, body });
      await failure(twilioSender.send(message));
      await twilioSender.send(sms({ to: '+14155550143', body }));
      const created = fake.messages[1];
      if (!created) throw new Error('the fake holds no second message');
      Object.assign(created, { status: 'delivered', price: '-0.00790' });

      const result = await twilioSender.lookup({ messageId: message.messageId, to, claimedAt, bodyMarker: marker });
      expect(result).toEqual({
        kind: 'found',
        providerId: created.sid,
        acceptedAt: new Date(Math.floor(created.acceptedAt.getTime() / 1000) * 1000),
        providerStatus: 'delivered',
        price: { micros: 7_900, currency: 'USD' },
      });
      const listing = fake.requests.at(-1);
      expect(listing).toMatchObject({ method: 'GET', authorized: true, status: 200 });
      expect(listing?.params).toMatchObject({ To: to, 'DateSent>': expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    });

    it('reports the error code and bad address of a message that failed', async () => {
      const twilioSender = sender();
      await twilioSender.send(sms({ to, body }));
      const created = fake.messages[0];
      if (!created) throw new Error('the fake holds no message');
      Object.assign(created, { status: 'undelivered', errorCode: 30003 });
      const result = await twilioSender.lookup({ messageId: 'msg_x', to, claimedAt: new Date(), bodyMarker: marker });
      expect(result).toMatchObject({
        kind: 'found',
        providerStatus: 'undelivered',
        errorCode: '30003',
        badAddress: 'unreachable',
      });
    });

    it('proves nothing while the claim is younger than the longest Twilio may queue a message', async () => {
      const claimedAt = new Date();
      const result = await sender({ clock: new FixedClock(new Date(claimedAt.getTime() + 3_600_000)) }).lookup({
        messageId: 'msg_x',
        to,
        claimedAt,
        bodyMarker: marker,
      });
      expect(result).toEqual({ kind: 'not_found' });
    });

    it('proves a message never sent once that age has passed and nothing went to the number', async () => {
      const claimedAt = new Date();
      const later = new FixedClock(new Date(claimedAt.getTime() + 12 * 3_600_000));
      const query = { messageId: 'msg_x', to, claimedAt, bodyMarker: marker };
      expect(await sender({ clock: later }).lookup(query)).toEqual({ kind: 'not_sent' });
      // A message to the number without the marker may be this one with its link rewritten: no proof.
      await sender().send(sms({ to, body: 'Your order is waiting: https://twil.io/short' }));
      expect(await sender({ clock: later }).lookup(query)).toEqual({ kind: 'not_found' });
    });

    it('fails with a ProviderError when Twilio does not answer the listing', async () => {
      const error = await failure(
        sender({ authToken: 'wrong' }).lookup({ messageId: 'msg_x', to, claimedAt: new Date(), bodyMarker: marker }),
      );
      expect(error).toMatchObject({ providerCode: '20003' });
    });
  });

  describe('classifies missing answers', () => {
    it('a server that never answers: unknown, within timeoutMs', async () => {
      fake.failNext(1, 'hang');
      const started = Date.now();
      const error = await failure(sender({ timeoutMs: 300 }).send(sms()));
      const elapsed = Date.now() - started;
      expect(error).toMatchObject({ outcome: 'unknown', providerCode: 'ETIMEDOUT' });
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1500);
      // The case "unknown" exists for: the fake did accept it.
      expect(fake.messages).toMatchObject([{ answered: false }]);
    });

    it('a connection dropped after the request: unknown', async () => {
      fake.failNext(1, 'drop');
      expect(await failure(sender().send(sms()))).toMatchObject({ outcome: 'unknown', providerCode: 'ECONNRESET' });
    });

    it('connection refused: retry', async () => {
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const { port } = closed.address() as AddressInfo;
      await new Promise((resolve) => closed.close(resolve));
      const error = await failure(sender({ apiUrl: `http://127.0.0.1:${port}` }).send(sms()));
      expect(error).toMatchObject({ outcome: 'retry', providerCode: 'ECONNREFUSED' });
    });

    it('sends normally again after a fault', async () => {
      fake.failNext(1, 'drop');
      const twilioSender = sender();
      await failure(twilioSender.send(sms()));
      await expect(twilioSender.send(sms())).resolves.toMatchObject({ providerId: expect.stringMatching(/^SM/) });
    });
  });
});

describe('fake Twilio', () => {
  let fake: FakeTwilio;
  beforeAll(async () => {
    fake = await startFakeTwilio({ seed: 7 });
  });
  afterAll(() => fake.close());
  beforeEach(() => fake.reset());

  async function statuses(seed: number, count: number): Promise<number[]> {
    fake.reset();
    fake.setFaults({ error500Rate: 0.3, error429Rate: 0.3 }, seed);
    const sender = new TwilioSmsSender({ ...credentials(fake), from: '+15005550006', timeoutMs: 5000 });
    for (let i = 0; i < count; i++) await sender.send(sms()).catch(() => undefined);
    await sender.close();
    return fake.requests.map((request) => request.status ?? 0);
  }

  it('replays the same random faults for the same seed', async () => {
    const first = await statuses(42, 30);
    expect(new Set(first)).toEqual(new Set([201, 429, 500]));
    expect(await statuses(42, 30)).toEqual(first);
    expect(await statuses(43, 30)).not.toEqual(first);
  });

  it('rejects fault rates that cannot be probabilities', () => {
    expect(() => fake.setFaults({ error500Rate: 0.8, dropRate: 0.3 })).toThrow(/at most 1/);
  });

  it('posts status callbacks signed like Twilio', async () => {
    const received: { valid: boolean; params: Record<string, string> }[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
        const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}${req.url ?? ''}`;
        const signature = String(req.headers['x-twilio-signature'] ?? '');
        received.push({ valid: twilio.validateRequest(fake.authToken, signature, url, params), params });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/twilio/status`;
      const sender = new TwilioSmsSender({ ...credentials(fake), from: '+15005550006', timeoutMs: 5000 });
      const receipt = await sender.send(sms({ statusCallbackUrl: `${base}?m=1` }));
      await sender.close();
      expect(await fake.sendStatusCallback(receipt.providerId, 'undelivered', { errorCode: 30003 })).toBe(204);
      expect(received).toEqual([
        {
          valid: true,
          params: expect.objectContaining({
            MessageSid: receipt.providerId,
            MessageStatus: 'undelivered',
            ErrorCode: '30003',
          }),
        },
      ]);
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
