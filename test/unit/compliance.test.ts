import { describe, expect, it } from 'vitest';
import type { Cadence } from '../../src/cadences/cadence.js';
import { scrubError, scrubPersonalData } from '../../src/platform/log-scrub.js';
import { normaliseKeyword, parseSmsReply, replyLocale, smsReplyText } from '../../src/compliance/sms-keywords.js';
import { addressForms, addressHash, normaliseAddress } from '../../src/compliance/suppressions.js';
import { UnsubscribeLinks } from '../../src/compliance/unsubscribe-links.js';
import { scrubPayload } from '../../src/compliance/forget-customer.js';
import { parseMultipart } from '../../src/compliance/unsubscribe.routes.js';
import { chooseContact } from '../../src/cadences/step-rules.js';

describe('SMS keywords', () => {
  it.each([
    ['STOP', 'opt_out', 'STOP'],
    ['stop', 'opt_out', 'STOP'],
    ['  Stop.  ', 'opt_out', 'STOP'],
    ['ＳＴＯＰ', 'opt_out', 'STOP'],
    ['stop all', 'opt_out', 'STOPALL'],
    ['Unsubscribe', 'opt_out', 'UNSUBSCRIBE'],
    ['cancel', 'opt_out', 'CANCEL'],
    ['END', 'opt_out', 'END'],
    ['quit!', 'opt_out', 'QUIT'],
    ['退订', 'opt_out', '退订'],
    [' 退订。', 'opt_out', '退订'],
    ['td', 'opt_out', 'TD'],
    ['START', 'opt_in', 'START'],
    ['unstop', 'opt_in', 'UNSTOP'],
    ['Yes', 'opt_in', 'YES'],
    ['help', 'help', 'HELP'],
    ['INFO?', 'help', 'INFO'],
  ])('%j → %s', (body, command, keyword) => {
    expect(parseSmsReply(body)).toMatchObject({ command, keyword });
  });

  it.each(['stop sending me this', 'please cancel', 'thanks', '', 'STOPP', 'yes please'])(
    '%j is no keyword',
    (body) => {
      expect(parseSmsReply(body)).toBeUndefined();
    },
  );

  it("trusts Twilio's OptOutType for keywords configured at Twilio", () => {
    expect(parseSmsReply('ARRET', 'STOP')).toMatchObject({ command: 'opt_out', keyword: 'ARRET' });
    expect(parseSmsReply('ok', 'START')).toMatchObject({ command: 'opt_in' });
    expect(parseSmsReply('hello', 'SOMETHING')).toBeUndefined();
  });

  it('marks Chinese keywords so the answer can be in Chinese', () => {
    expect(parseSmsReply('退订')?.chinese).toBe(true);
    expect(parseSmsReply('TD')?.chinese).toBe(true);
    expect(parseSmsReply('STOP')?.chinese).toBe(false);
    expect(normaliseKeyword('“Stop”')).toBe('STOP');
  });

  it('answers in the customer language, naming the shop', () => {
    expect(smsReplyText('opt_out', 'en', 'Acme')).toBe(
      'You will no longer receive payment reminders from Acme. Reply START to resubscribe.',
    );
    expect(smsReplyText('opt_out', 'zh-CN', '小店')).toBe('您将不再收到小店的付款提醒。回复 START 可重新订阅。');
    expect(smsReplyText('help', 'en', undefined)).toContain('from us');
    expect(replyLocale('zh_CN')).toBe('zh-CN');
    expect(replyLocale('zh-Hans-CN')).toBe('zh-CN');
    expect(replyLocale('en-GB')).toBe('en');
    expect(replyLocale(null)).toBeUndefined();
  });
});

describe('suppression addresses', () => {
  it('normalises and hashes so lookups match every stored form', () => {
    expect(normaliseAddress('email', ' Li@Example.COM ')).toBe('li@example.com');
    expect(normaliseAddress('sms', '+86 138-0013-8000')).toBe('+8613800138000');
    expect(addressHash('email', 'Li@Example.com')).toBe(addressHash('email', 'li@example.com'));
    expect(addressHash('sms', '+8613800138000')).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(addressForms('email', 'Li@Example.com')).toEqual([
      'Li@Example.com',
      'li@example.com',
      addressHash('email', 'li@example.com'),
    ]);
  });
});

describe('UnsubscribeLinks', () => {
  const links = new UnsubscribeLinks({
    publicUrl: 'https://pay.example-shop.com/',
    secret: 'test-secret',
    from: 'Example Shop <noreply@mail.example-shop.com>',
  });

  it('makes a token of the message id that only this secret verifies', () => {
    const token = links.token('msg_0123456789abcdef01234567');
    expect(token).toMatch(/^msg_0123456789abcdef01234567\.[A-Za-z0-9_-]{22}$/);
    expect(links.verify(token)).toBe('msg_0123456789abcdef01234567');
    const other = new UnsubscribeLinks({ publicUrl: 'https://x', secret: 'other', from: 'a@b.c' });
    expect(other.verify(token)).toBeUndefined();
    // Another message id with this MAC, a truncated MAC, garbage.
    expect(links.verify(token.replace('msg_0', 'msg_1'))).toBeUndefined();
    expect(links.verify(token.slice(0, -1))).toBeUndefined();
    expect(links.verify('../../etc')).toBeUndefined();
  });

  it('gives an https URL and a mailto to unsubscribe@<EMAIL_FROM domain> with the token in the subject', () => {
    const { url, mailto } = links.forMessage('msg_abc');
    const token = links.token('msg_abc');
    expect(url).toBe(`https://pay.example-shop.com/u/${token}`);
    expect(mailto).toBe(`mailto:unsubscribe@mail.example-shop.com?subject=unsubscribe%20${token}`);
    const custom = new UnsubscribeLinks({ publicUrl: 'https://x', secret: 's', from: 'a@b.c', mailbox: 'optout@b.c' });
    expect(custom.forMessage('m').mailto).toMatch(/^mailto:optout@b\.c\?subject=/);
  });
});

describe('chooseContact with suppressions', () => {
  const cadence = (switchChannelOnFailure: boolean) => ({ switchChannelOnFailure }) as unknown as Cadence;
  const step = { channel: 'sms', template: 'nudge', afterMs: 0, offerMethods: [] } as never;
  const customer = { email: 'li@example.com', phone: '+8613800138000', email_bad_reason: null, phone_bad_reason: null };

  it('switches a suppressed number to email when the cadence allows it', () => {
    expect(chooseContact(step, cadence(true), customer, new Map([['sms', 'stop_reply']]))).toEqual({
      ok: true,
      channel: 'email',
      to: 'li@example.com',
    });
  });

  it('records the step suppressed when it may not switch, or the other address is suppressed too', () => {
    const suppressed = {
      ok: false,
      reason: 'suppressed',
      channel: 'sms',
      to: '+8613800138000',
      suppression: 'stop_reply',
    };
    expect(chooseContact(step, cadence(false), customer, new Map([['sms', 'stop_reply']]))).toEqual(suppressed);
    expect(
      chooseContact(
        step,
        cadence(true),
        customer,
        new Map([
          ['sms', 'stop_reply'],
          ['email', 'email_unsubscribe'],
        ]),
      ),
    ).toEqual(suppressed);
  });

  it('is unchanged without suppressions', () => {
    expect(chooseContact(step, cadence(true), customer)).toEqual({ ok: true, channel: 'sms', to: '+8613800138000' });
  });
});

describe('log scrubbing', () => {
  it('masks emails and phone numbers in nested strings and errors', () => {
    const err = Object.assign(new Error("The 'To' number +8613800138000 is not valid"), {
      rejected: ['li@example.com'],
      cause: new Error('550 <li@example.com> rejected'),
    });
    const out = JSON.stringify([
      scrubPersonalData({ a: { b: ['call +1 (555) 010-0000', 'mail Li.Lei@example.com'] }, n: 1700000000000 }),
      scrubError(err),
    ]);
    expect(out).not.toMatch(/8613800138000|li@example\.com|555\) 010-0000|Li\.Lei@/);
    expect(out).toContain('+86*******8000');
    expect(out).toContain('l***@example.com');
    expect(out).toContain('1700000000000');
    expect(out).toContain('"type":"Error"');
  });
});

describe('forget: payload scrubbing', () => {
  it('nulls the customer fields and erases addresses in text, keeping ids, amounts and currencies', () => {
    const payload = {
      id: 'evt_1',
      occurred_at: '2026-01-01T00:00:00Z',
      order: {
        id: 'ord_1',
        amount: 12900,
        currency: 'CNY',
        customer: { id: 'cus_1', name: 'Li Lei', email: 'li@example.com', phone: '+8613800138000', locale: 'zh-CN' },
      },
      payment: { failure_message: 'Declined for LI@example.com' },
    };
    expect(scrubPayload(payload, [{ channel: 'email', address: 'li@example.com' }])).toEqual({
      id: 'evt_1',
      occurred_at: '2026-01-01T00:00:00Z',
      order: {
        id: 'ord_1',
        amount: 12900,
        currency: 'CNY',
        customer: { id: 'cus_1', name: null, email: null, phone: null, locale: null },
      },
      payment: { failure_message: 'Declined for [erased]' },
    });
  });
});

describe('multipart one-click bodies', () => {
  it('reads the List-Unsubscribe field', () => {
    const body = '--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--XyZ--\r\n';
    expect(parseMultipart(body, 'multipart/form-data; boundary=XyZ')).toEqual({ 'List-Unsubscribe': 'One-Click' });
    expect(parseMultipart(body, 'multipart/form-data')).toEqual({});
  });
});
