import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addressForms,
  addressHash,
  displayEmail,
  emailAddressProblem,
  normaliseAddress,
  storableEmail,
} from '../../src/domain/addresses.js';
import { parseEvent, withoutRefusedPhones } from '../../src/domain/event-schema.js';
import { phoneNumberType, refusedNumberType } from '../../src/domain/phone-numbers.js';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { validateForm } from '../../src/payments/retry-form.js';
import type { RetryView } from '../../src/payments/retry-session.js';

const runs = Number(process.env.PROPERTY_RUNS ?? 1_000);

describe('email addresses', () => {
  it.each([
    ['josé@bücher.de', 'josé@xn--bcher-kva.de'],
    [' JOSÉ@BÜCHER.DE ', 'josé@xn--bcher-kva.de'],
    // é as e + a combining accent: the composed form is stored.
    ['jose\u0301@xn--bcher-kva.de', 'josé@xn--bcher-kva.de'],
    ['用户@例子.广告', '用户@xn--fsqu00a.xn--4rr70v'],
    // The ideographic full stop separates labels as a dot does.
    ['用户@例子。广告', '用户@xn--fsqu00a.xn--4rr70v'],
    ['Δοκιμή@παράδειγμα.δοκιμή', 'δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp'],
    ['x@пример.рф', 'x@xn--e1afmkfd.xn--p1ai'],
    ['Li@Example.COM', 'li@example.com'],
    ["o'brien+tag@example.co.uk", "o'brien+tag@example.co.uk"],
  ])('takes %j, stored as %j', (input, stored) => {
    expect(storableEmail(input)).toBe(stored);
    expect(normaliseAddress('email', input)).toBe(stored);
  });

  it.each([
    ['li.example.com', 'must be an email address such as name@example.com'],
    ['@bücher.de', 'must be an email address such as name@example.com'],
    ['jose@', 'must be an email address such as name@example.com'],
    ['a..b@example.com', 'the part before @ is not a valid mailbox name'],
    ['.a@example.com', 'the part before @ is not a valid mailbox name'],
    ['a b@example.com', 'the part before @ is not a valid mailbox name'],
    ['"a"@example.com', 'the part before @ is not a valid mailbox name'],
    ['a\u200b@example.com', 'the part before @ is not a valid mailbox name'],
    [`${'é'.repeat(33)}@example.com`, 'the part before @ is over 64 bytes'],
    ['jose@bücher', 'the part after @ is not a valid domain name'],
    ['jose@localhost', 'the part after @ is not a valid domain name'],
    ['jose@1.2.3.4', 'the part after @ is not a valid domain name'],
    ['jose@-bücher.de', 'the part after @ is not a valid domain name'],
    ['jose@xn--zz.de', 'the part after @ is not a valid domain name'],
    // The URL host parser would decode these into example.com: they are no domain as written.
    ['jose@ex%41mple.com', 'the part after @ is not a valid domain name'],
    ['jose@bücher%2Ede', 'the part after @ is not a valid domain name'],
    ['jose@bü\u200dcher.de', 'the part after @ is not a valid domain name'],
    [
      `${'j'.repeat(10)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(55)}.de`,
      'at most 254 bytes',
    ],
    [`j@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(60)}.de`, 'not a valid domain name'],
  ])('refuses %j: %s', (input, problem) => {
    expect(storableEmail(input)).toBeUndefined();
    expect(emailAddressProblem(normaliseAddress('email', input))).toContain(problem);
  });

  it('matches one address written in Unicode or in punycode, for suppressions and erasure alike', () => {
    const unicode = 'José@Bücher.de';
    const ascii = 'jose\u0301@XN--BCHER-KVA.DE';
    expect(addressHash('email', unicode)).toBe(addressHash('email', ascii));
    expect(addressForms('email', ascii)).toContain(normaliseAddress('email', unicode));
    expect(addressForms('email', unicode)).toContain('josé@xn--bcher-kva.de');
  });

  it('shows a stored address with its domain in Unicode', () => {
    expect(displayEmail('josé@xn--bcher-kva.de')).toBe('josé@bücher.de');
    expect(displayEmail('用户@xn--fsqu00a.xn--4rr70v')).toBe('用户@例子.广告');
    expect(displayEmail('li@example.com')).toBe('li@example.com');
  });

  /** Text of every kind, around an @ or two: what shops and attackers send. */
  const hostile = fc
    .tuple(
      fc.oneof(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.constantFrom('jose', ' JOSÉ', 'jose\u0301', '用户', 'o.brien+x', 'İ', 'ß', '.a', 'a b'),
      ),
      fc.constantFrom('@', '@@', '＠', ''),
      fc.oneof(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.constantFrom('bücher.de', 'XN--BCHER-KVA.DE', '例子。广告', 'ex%41mple.com', '０x7f.1', 'İstanbul.tr'),
      ),
    )
    .map(([local, at, domain]) => `${local}${at}${domain}`);

  it('normalises any text without throwing, and a normalised form normalises to itself', () => {
    fc.assert(
      fc.property(hostile, (text) => {
        const once = normaliseAddress('email', text);
        expect(normaliseAddress('email', once)).toBe(once);
        expect(addressHash('email', once)).toBe(addressHash('email', text));
      }),
      { numRuns: runs },
    );
  });

  it('stores only addresses it takes back unchanged, within 254 bytes', () => {
    fc.assert(
      fc.property(hostile, (text) => {
        const stored = storableEmail(text);
        if (stored === undefined) return;
        expect(storableEmail(stored)).toBe(stored);
        expect(storableEmail(displayEmail(stored))).toBe(stored);
        expect(Buffer.byteLength(stored, 'utf8')).toBeLessThanOrEqual(254);
        expect(stored).toMatch(/@[a-z0-9.-]+$/);
      }),
      { numRuns: runs },
    );
  });

  /** Letters of a few scripts, as mailbox names and domain labels are written. */
  const letters = fc.constantFrom(...'abcxyz019éüßçøåñłžяжщαβγ用户例子广告मेलحساب'.split(''));
  const word = fc.array(letters, { minLength: 1, maxLength: 12 }).map((chars) => chars.join(''));

  it('takes an address written with its Unicode or its punycode domain as the same one', () => {
    fc.assert(
      fc.property(
        word,
        fc.array(word, { minLength: 1, maxLength: 3 }),
        fc.constantFrom('de', 'com', 'рф', '中国'),
        (local, labels, tld) => {
          const domain = [...labels, tld].join('.');
          const ascii = domainToASCII(domain);
          fc.pre(ascii !== '');
          const unicode = storableEmail(`${local}@${domain}`);
          fc.pre(unicode !== undefined);
          expect(storableEmail(`${local}@${ascii.toUpperCase()}`)).toBe(unicode);
          expect(addressHash('email', `${local}@${ascii}`)).toBe(addressHash('email', `${local}@${domain}`));
        },
      ),
      { numRuns: runs },
    );
  });
});

describe('phone number kinds', () => {
  it.each([
    ['+8613800138000', 'mobile'],
    ['+447400123456', 'mobile'],
    ['+442079460018', 'fixed_line'],
    ['+14155550100', 'fixed_line_or_mobile'],
    ['+19005550123', 'premium_rate'],
    ['+448712345678', 'premium_rate'],
    ['+18005551234', 'toll_free'],
    ['+80812345678', 'shared_cost'],
    ['+8821012345678', 'voip'],
    ['+447012345678', 'personal_number'],
    ['+447640123456', 'pager'],
  ])('%s is a %s number', (number, kind) => {
    expect(phoneNumberType(number)).toBe(kind);
  });

  it('refuses every kind but mobile and fixed-line ones by default, as configured otherwise', () => {
    expect(refusedNumberType('+19005550123')).toBe('premium_rate');
    expect(refusedNumberType('+8821012345678')).toBe('voip');
    expect(refusedNumberType('+447640123456')).toBe('pager');
    expect(refusedNumberType('+8613800138000')).toBeUndefined();
    expect(refusedNumberType('+442079460018')).toBeUndefined();
    expect(refusedNumberType('+14155550100')).toBeUndefined();
    expect(refusedNumberType('+19005550123', ['mobile', 'premium_rate'])).toBeUndefined();
    expect(refusedNumberType('+14155550100', ['mobile'])).toBe('fixed_line_or_mobile');
    // Not placed by libphonenumber: left to the provider to refuse.
    expect(phoneNumberType('+15555550123')).toBeUndefined();
    expect(refusedNumberType('+15555550123')).toBeUndefined();
  });
});

describe('event intake', () => {
  const base = {
    id: 'evt_1',
    type: 'payment.failed',
    occurred_at: '2026-11-25T10:00:00Z',
    order: { id: 'ord_1', amount: 12900, currency: 'CNY', customer: { id: 'cus_1', email: 'li@example.com' } },
  };
  const withCustomer = (customer: Record<string, unknown>) => ({
    ...base,
    order: { ...base.order, customer: { ...base.order.customer, ...customer } },
  });

  it('takes an internationalised email, stored with its domain in ASCII', () => {
    expect(parseEvent(withCustomer({ email: '用户@例子.广告' })).order?.customer.email).toBe(
      '用户@xn--fsqu00a.xn--4rr70v',
    );
  });

  it('refuses an address that is none, naming the field and what is wrong', () => {
    let caught: unknown;
    try {
      parseEvent(withCustomer({ email: 'jose@bücher' }));
    } catch (err) {
      caught = err;
    }
    if (!isRecoupError(caught, 'validation')) throw new Error('expected a validation error');
    expect(caught.issues).toEqual([
      { path: 'order.customer.email', message: expect.stringContaining('not a valid domain name') },
    ]);
  });

  it('applies an event without a phone recoup does not text, and says so', () => {
    const event = parseEvent({
      ...withCustomer({ phone: '+19005550123' }),
      type: 'customer.updated',
      customer: { id: 'cus_1', phone: '+447640123456', email: 'li@example.com' },
    });
    const { event: kept, warnings } = withoutRefusedPhones(event);
    expect(kept.order?.customer.phone).toBeUndefined();
    expect(kept.customer?.phone).toBeUndefined();
    expect(kept.customer?.email).toBe('li@example.com');
    expect(warnings).toEqual([
      { path: 'order.customer.phone', message: expect.stringContaining('premium_rate') },
      { path: 'customer.phone', message: expect.stringContaining('pager') },
    ]);
    // Configured to text premium-rate numbers, it keeps that one.
    expect(withoutRefusedPhones(event, ['mobile', 'premium_rate']).warnings.map((w) => w.path)).toEqual([
      'customer.phone',
    ]);
    const mobile = parseEvent(withCustomer({ phone: '+8613800138000' }));
    expect(withoutRefusedPhones(mobile)).toEqual({ event: mobile, warnings: [] });
  });
});

describe('the retry form', () => {
  const view = {
    locale: 'en',
    methods: ['alipay', 'card'],
    contact: { email: 'li@example.com', phone: '+8613800138000' },
  } as unknown as RetryView;
  const t = pageStrings.en;

  it('refuses a premium-rate number with its own field error', () => {
    expect(validateForm({ phone: '+1 900 555 0123', method: 'alipay' }, view, t)).toEqual({
      ok: false,
      errors: { phone: t.phoneNotTexted },
      method: 'alipay',
    });
    expect(validateForm({ phone: '+1 900 555 0123', method: 'alipay' }, view, t, ['mobile', 'premium_rate'])).toEqual({
      ok: true,
      email: null,
      phone: '+19005550123',
      method: 'alipay',
    });
    // An invalid number is still told apart from a number of the wrong kind.
    expect(validateForm({ phone: '+1 555 555 0123', method: 'alipay' }, view, t)).toMatchObject({
      errors: { phone: t.phoneInvalid },
    });
  });

  it('takes an internationalised email, stored as intake stores it', () => {
    expect(validateForm({ email: 'José@Bücher.de', method: 'card' }, view, t)).toEqual({
      ok: true,
      email: 'josé@xn--bcher-kva.de',
      phone: null,
      method: 'card',
    });
    expect(validateForm({ email: 'jose@bücher', method: 'card' }, view, t)).toMatchObject({
      errors: { email: t.emailInvalid },
    });
  });
});
