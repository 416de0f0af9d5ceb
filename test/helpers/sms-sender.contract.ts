import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SendReceipt, SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { newId } from '../../src/platform/ids.js';

/** One adapter under test, plus a way to see what reached the other side. */
export interface SmsSenderHarness {
  sender: SmsSender;
  /** What the provider side holds for this send (the outbox file, the fake server's record, …). */
  received(receipt: SendReceipt, message: SmsMessage): Promise<{ to: string; body: string }>;
  /** Releases what the harness started (servers, folders). The contract closes the sender itself. */
  dispose?(): Promise<void>;
}

/** Cases every SmsSender must pass. Call inside a test file; `create` runs before each case. */
export function smsSenderContract(name: string, create: () => Promise<SmsSenderHarness>): void {
  describe(`${name} satisfies the SmsSender contract`, () => {
    let harness: SmsSenderHarness;

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
      const receipt = await harness.sender.send(sms({ body: 'Your order is waiting' }));
      expect(receipt.providerId).toEqual(expect.any(String));
      expect(receipt.providerId.length).toBeGreaterThan(0);
      expect(receipt.acceptedAt).toBeInstanceOf(Date);
      expect(receipt.acceptedAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(receipt.acceptedAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    });

    it('delivers recipient and body intact, Chinese text, emoji and line breaks included', async () => {
      const message = sms({
        to: '+8613812345678',
        body: '您好！您的订单 #1024 还未付款 🛒💳\n点击完成支付：https://shop.example/r/abc?x=1&y=2 — 谢谢 🙏',
      });
      const receipt = await harness.sender.send(message);
      expect(await harness.received(receipt, message)).toEqual({ to: message.to, body: message.body });
    });

    it('keeps a long multi-segment body whole', async () => {
      const message = sms({ body: `${'Payment reminder. '.repeat(40)}😀 end` });
      const receipt = await harness.sender.send(message);
      expect((await harness.received(receipt, message)).body).toBe(message.body);
    });

    it('gives different messages different provider ids', async () => {
      const first = await harness.sender.send(sms({ body: 'one' }));
      const second = await harness.sender.send(sms({ body: 'two' }));
      expect(first.providerId).not.toBe(second.providerId);
    });

    it('closes idempotently and then refuses to send, with a retryable error', async () => {
      await harness.sender.close();
      await harness.sender.close();
      const error = await harness.sender.send(sms({ body: 'too late' })).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ProviderError);
      expect(error).toMatchObject({ outcome: 'retry' });
    });
  });
}

export function sms(overrides: Partial<SmsMessage> = {}): SmsMessage {
  return { messageId: newId('msg'), to: '+14155550100', body: 'Hello', ...overrides };
}
