import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OutboxEmailSender } from '../../src/channels/outbox-email-sender.js';
import { eraseOutboxFiles } from '../../src/channels/outbox-erasure.js';
import { OutboxSmsSender, type OutboxSmsFile } from '../../src/channels/outbox-sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { email, emailSenderContract } from '../helpers/email-sender.contract.js';
import { sms, smsSenderContract } from '../helpers/sms-sender.contract.js';

// A folder per case that does not exist yet, so the senders' "create the folder" path runs every time.
async function freshDir(): Promise<{ dir: string; dispose(): Promise<void> }> {
  const parent = await mkdtemp(path.join(tmpdir(), 'recoup-outbox-'));
  return { dir: path.join(parent, 'outbox'), dispose: () => rm(parent, { recursive: true, force: true }) };
}

async function readSmsFile(dir: string, messageId: string): Promise<OutboxSmsFile> {
  return JSON.parse(await readFile(path.join(dir, `${messageId}.sms.json`), 'utf8')) as OutboxSmsFile;
}

smsSenderContract('OutboxSmsSender', async () => {
  const { dir, dispose } = await freshDir();
  return {
    sender: new OutboxSmsSender({ dir }),
    received: async (_receipt, message) => {
      const file = await readSmsFile(dir, message.messageId);
      return { to: file.to, body: file.body };
    },
    dispose,
  };
});

emailSenderContract('OutboxEmailSender', async () => {
  const { dir, dispose } = await freshDir();
  return {
    sender: new OutboxEmailSender({ dir, from: 'Shop <noreply@shop.example>' }),
    domain: 'shop.example',
    received: (_receipt, message) => readFile(path.join(dir, `${message.messageId}.eml`)),
    dispose,
  };
});

describe('OutboxSmsSender', () => {
  let dir: string;
  let dispose: () => Promise<void>;
  beforeEach(async () => ({ dir, dispose } = await freshDir()));
  afterEach(() => dispose());

  it('writes the documented file and names the receipt after the message', async () => {
    const clock = new FixedClock('2025-03-09T10:00:00.000Z');
    const sender = new OutboxSmsSender({ dir, clock });
    const message = sms({ statusCallbackUrl: 'https://recoup.example/webhooks/twilio/status' });
    const receipt = await sender.send(message);
    expect(receipt).toEqual({ providerId: `outbox-${message.messageId}`, acceptedAt: clock.now() });
    expect(await readSmsFile(dir, message.messageId)).toEqual({
      to: message.to,
      body: message.body,
      message_id: message.messageId,
      status_callback_url: 'https://recoup.example/webhooks/twilio/status',
      created_at: '2025-03-09T10:00:00.000Z',
    });
  });

  it('records a missing status callback as null', async () => {
    const message = sms();
    await new OutboxSmsSender({ dir }).send(message);
    expect((await readSmsFile(dir, message.messageId)).status_callback_url).toBeNull();
  });

  it('overwrites the same file when a message is sent twice, leaving no temporary files', async () => {
    const sender = new OutboxSmsSender({ dir });
    const message = sms({ body: 'first' });
    await Promise.all([sender.send(message), sender.send({ ...message, body: 'second' })]);
    await sender.send({ ...message, body: 'third' });
    expect(await readdir(dir)).toEqual([`${message.messageId}.sms.json`]);
    expect((await readSmsFile(dir, message.messageId)).body).toBe('third');
  });

  it('refuses message ids that would escape the folder', async () => {
    const sender = new OutboxSmsSender({ dir });
    for (const messageId of ['../escape', 'a/b', '.hidden', '']) {
      await expect(sender.send(sms({ messageId }))).rejects.toMatchObject({
        outcome: 'failed',
        providerCode: 'INVALID_MESSAGE_ID',
      });
    }
  });

  it('reports a folder it cannot create as retryable', async () => {
    const blocker = path.join(path.dirname(dir), 'a-file');
    await writeFile(blocker, 'not a folder');
    const sender = new OutboxSmsSender({ dir: path.join(blocker, 'outbox') });
    await expect(sender.send(sms())).rejects.toMatchObject({ outcome: 'retry' });
  });
});

describe('OutboxEmailSender', () => {
  let dir: string;
  let dispose: () => Promise<void>;
  beforeEach(async () => ({ dir, dispose } = await freshDir()));
  afterEach(() => dispose());

  it('writes a CRLF RFC 5322 message with html and text parts that mailparser reads back', async () => {
    const clock = new FixedClock('2025-03-09T10:00:00.000Z');
    const sender = new OutboxEmailSender({ dir, from: 'Shop <noreply@shop.example>', clock });
    const message = email({ subject: '订单提醒', unsubscribe: { url: 'https://shop.example/u/t' } });
    const receipt = await sender.send(message);
    expect(receipt).toEqual({ providerId: `outbox-${message.messageId}`, acceptedAt: clock.now() });

    const raw = await readFile(path.join(dir, `${message.messageId}.eml`));
    expect(raw.toString('latin1')).not.toMatch(/[^\r]\n/);
    const mail = await simpleParser(raw);
    expect(mail.from?.value).toEqual([{ address: 'noreply@shop.example', name: 'Shop' }]);
    expect(mail.subject).toBe('订单提醒');
    expect(mail.date?.toISOString()).toBe('2025-03-09T10:00:00.000Z');
    expect(mail.text?.trim()).toBe(message.text);
    expect(mail.html).toContain(message.html);
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/alternative' });
  });

  it('uses the configured Message-ID domain', async () => {
    const sender = new OutboxEmailSender({ dir, from: 'noreply@shop.example', domain: 'mail.recoup.example' });
    const message = email();
    await sender.send(message);
    const mail = await simpleParser(await readFile(path.join(dir, `${message.messageId}.eml`)));
    expect(mail.messageId).toBe(`<${message.messageId}@mail.recoup.example>`);
  });

  it('overwrites the same file when a message is sent twice', async () => {
    const sender = new OutboxEmailSender({ dir, from: 'noreply@shop.example' });
    const message = email({ subject: 'first' });
    await sender.send(message);
    await sender.send({ ...message, subject: 'second' });
    expect(await readdir(dir)).toEqual([`${message.messageId}.eml`]);
    const mail = await simpleParser(await readFile(path.join(dir, `${message.messageId}.eml`)));
    expect(mail.subject).toBe('second');
  });
});

describe('eraseOutboxFiles', () => {
  let dir: string;
  let dispose: () => Promise<void>;
  beforeEach(async () => ({ dir, dispose } = await freshDir()));
  afterEach(() => dispose());

  const wang = (channel: 'sms' | 'email', address: string) =>
    channel === 'sms' ? address === '+8613600000001' : address.toLowerCase() === 'wang@example.com';

  it('erases nothing, and does not fail, when there is no outbox folder', async () => {
    expect(await eraseOutboxFiles(dir, { messageIds: new Set(['msg_1']), isAddressee: wang })).toBe(0);
  });

  it("deletes the files of the messages and those addressed to the person, and no one else's", async () => {
    const smsSender = new OutboxSmsSender({ dir });
    const emailSender = new OutboxEmailSender({ dir, from: 'Shop <noreply@shop.example>' });
    const own = sms({ to: '+8613600000001' });
    const named = sms({ to: '+8613900000009' });
    const other = sms({ to: '+8613900000009' });
    await Promise.all([smsSender.send(own), smsSender.send(named), smsSender.send(other)]);
    const otherMail = email({ to: 'li@example.com' });
    await emailSender.send(otherMail);
    // A message as a mail client would write it: display names, the To header folded.
    await writeFile(
      path.join(dir, 'by-hand.eml'),
      'From: shop@example.com\r\nTo: "Li, Mei" <li@example.com>,\r\n "Wang" <WANG@example.com>\r\n\r\nHi\r\n',
    );
    // Writes a crash left behind: one of a named message (cut short), one addressed to Wang, one of somebody else's.
    const leftover = (messageId: string) => path.join(dir, `.${messageId}.sms.json.0123456789ab.tmp`);
    await writeFile(leftover(named.messageId), '{"to": "+86139');
    await writeFile(leftover('msg_crashed'), JSON.stringify({ to: '+8613600000001', body: 'Hello' }));
    await writeFile(leftover(other.messageId), '{"to": "+86139');
    // Not outbox files anyone can be told from: left alone.
    await writeFile(path.join(dir, 'broken.sms.json'), '{"to": "+8613600000001"');
    await writeFile(path.join(dir, 'notes.txt'), 'wang@example.com');

    const erased = await eraseOutboxFiles(dir, { messageIds: new Set([named.messageId]), isAddressee: wang });

    expect(erased).toBe(5);
    expect((await readdir(dir)).sort()).toEqual(
      [
        path.basename(leftover(other.messageId)),
        'broken.sms.json',
        'notes.txt',
        `${other.messageId}.sms.json`,
        `${otherMail.messageId}.eml`,
      ].sort(),
    );
  });

  it("without an addressee test, deletes the named messages' files only", async () => {
    const sender = new OutboxSmsSender({ dir });
    await sender.send(sms({ messageId: 'msg_kept', to: '+8613600000001' }));
    await sender.send(sms({ messageId: 'msg_gone', to: '+8613600000001' }));
    expect(await eraseOutboxFiles(dir, { messageIds: new Set(['msg_gone']) })).toBe(1);
    expect(await readdir(dir)).toEqual(['msg_kept.sms.json']);
  });
});
