import { simpleParser, type ParsedMail } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EmailMessage, EmailSender } from '../../src/channels/email-sender.js';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SendReceipt } from '../../src/channels/sms-sender.js';
import { newId } from '../../src/platform/ids.js';

/** One adapter under test, plus a way to read back the RFC 5322 message that reached the other side. */
export interface EmailSenderHarness {
  sender: EmailSender;
  /** Domain the adapter puts into Message-IDs. */
  domain: string;
  /** The raw message as received (the .eml file, the bytes an SMTP server got after DATA). */
  received(receipt: SendReceipt, message: EmailMessage): Promise<Buffer>;
  /** Releases what the harness started (servers, folders). The contract closes the sender itself. */
  dispose?(): Promise<void>;
}

/** Cases every EmailSender must pass. Call inside a test file; `create` runs before each case. */
export function emailSenderContract(name: string, create: () => Promise<EmailSenderHarness>): void {
  describe(`${name} satisfies the EmailSender contract`, () => {
    let harness: EmailSenderHarness;
    const receive = async (message: EmailMessage) => {
      const receipt = await harness.sender.send(message);
      return { receipt, mail: await simpleParser(await harness.received(receipt, message)) };
    };

    beforeEach(async () => {
      harness = await create();
    });
    afterEach(async () => {
      await harness.sender.close();
      await harness.dispose?.();
    });

    it('names its transport', () => {
      expect(harness.sender.transport).toMatch(/^[a-z][a-z0-9-]*$/);
    });

    it('returns a receipt with the provider id and when it was accepted', async () => {
      const before = Date.now();
      const receipt = await harness.sender.send(email());
      expect(receipt.providerId).toEqual(expect.any(String));
      expect(receipt.providerId.length).toBeGreaterThan(0);
      expect(receipt.acceptedAt).toBeInstanceOf(Date);
      expect(receipt.acceptedAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(receipt.acceptedAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    });

    it('delivers recipient, UTF-8 subject, text and html intact, Chinese and emoji included', async () => {
      const message = email({
        to: 'wang.fang@example.cn',
        subject: '您的订单还未付款 🛒 — 24 小时内有效',
        text: '王芳您好，\n您的订单 #1024 还未付款。点击完成支付：https://shop.example/r/abc 🙏',
        html: '<p>王芳您好，</p><p>您的订单 <b>#1024</b> 还未付款。<a href="https://shop.example/r/abc">完成支付</a> 🙏</p>',
      });
      const { mail } = await receive(message);
      expect(addresses(mail.to)).toEqual([message.to]);
      expect(mail.subject).toBe(message.subject);
      expect(mail.text?.trim()).toBe(message.text);
      expect(mail.html).toContain(message.html);
    });

    it('sets a deterministic Message-ID and the X-Recoup-Message-Id header', async () => {
      const message = email();
      const { mail } = await receive(message);
      expect(mail.messageId).toBe(`<${message.messageId}@${harness.domain}>`);
      expect(mail.headers.get('x-recoup-message-id')).toBe(message.messageId);
    });

    it('offers RFC 8058 one-click unsubscribe with a mailto alternative', async () => {
      const message = email({
        unsubscribe: { url: 'https://shop.example/u/tok123?m=1', mailto: 'unsubscribe+tok123@shop.example' },
      });
      const { mail } = await receive(message);
      expect(headerLines(mail, 'list-unsubscribe')).toEqual([
        'List-Unsubscribe: <https://shop.example/u/tok123?m=1>, <mailto:unsubscribe+tok123@shop.example>',
      ]);
      expect(headerLines(mail, 'list-unsubscribe-post')).toEqual(['List-Unsubscribe-Post: List-Unsubscribe=One-Click']);
    });

    it('announces one-click only for an https unsubscribe url, and nothing without one', async () => {
      const plain = await receive(email({ unsubscribe: { url: 'http://localhost:3000/u/tok' } }));
      expect(headerLines(plain.mail, 'list-unsubscribe')).toEqual(['List-Unsubscribe: <http://localhost:3000/u/tok>']);
      expect(headerLines(plain.mail, 'list-unsubscribe-post')).toEqual([]);
      const none = await receive(email());
      expect(headerLines(none.mail, 'list-unsubscribe')).toEqual([]);
      expect(headerLines(none.mail, 'list-unsubscribe-post')).toEqual([]);
    });

    it('gives different messages different provider ids', async () => {
      const first = await harness.sender.send(email());
      const second = await harness.sender.send(email());
      expect(first.providerId).not.toBe(second.providerId);
    });

    it('closes idempotently and then refuses to send, with a retryable error', async () => {
      await harness.sender.close();
      await harness.sender.close();
      const error = await harness.sender.send(email()).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ProviderError);
      expect(error).toMatchObject({ outcome: 'retry' });
    });
  });
}

export function email(overrides: Partial<EmailMessage> = {}): EmailMessage {
  return {
    messageId: newId('msg'),
    to: 'customer@example.com',
    subject: 'Your order is waiting',
    text: 'Complete your payment: https://shop.example/r/abc',
    html: '<p>Complete your payment: <a href="https://shop.example/r/abc">pay</a></p>',
    ...overrides,
  };
}

/** Raw header lines with this (lower-case) name, unfolded. */
export function headerLines(mail: ParsedMail, key: string): string[] {
  return mail.headerLines.filter((line) => line.key === key).map((line) => line.line.replace(/\r?\n[ \t]+/g, ' '));
}

function addresses(field: ParsedMail['to']): string[] {
  const list = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return list.flatMap((group) => group.value.map((entry) => entry.address ?? ''));
}
