import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import { afterAll, describe, expect, it } from 'vitest';
import { failureCategories, type FailureCategory, type PaymentMethod } from '../../src/domain/vocabulary.js';
import { RecoupError, isRecoupError } from '../../src/platform/errors.js';
import type { MessageContext } from '../../src/messages/message-context.js';
import { TemplateRenderer, maxItemsShown, templateParts } from '../../src/messages/template-renderer.js';

const templatesDir = fileURLToPath(new URL('../../templates', import.meta.url));
const renderer = TemplateRenderer.load(templatesDir);

const token = 'Zx8kQ2mNpR4tVb7yWc1dLe'; // 22 characters, like a real retry token
const retryUrl = `https://pay.example-shop.com/r/${token}`;
const unsubscribeUrl = 'https://example-shop.com/u/abc?c=1&t=xyz';

type ContextOverrides = Partial<Omit<MessageContext, 'order'>> & { order?: Partial<MessageContext['order']> };

function context(overrides: ContextOverrides = {}): MessageContext {
  const { order, ...rest } = overrides;
  return {
    shop: { name: 'Example Shop' },
    customer: { name: 'Alexandra Richardson' },
    failureCategory: 'insufficient_funds',
    offerMethods: ['alipay', 'wechat_pay', 'card'],
    retryUrl,
    unsubscribeUrl,
    ...rest,
    order: {
      id: 'ord_1042',
      description: 'Linen shirt, navy blue, size M',
      amount: 12900,
      currency: 'CNY',
      ...order,
    },
  };
}

const cjk = /[\u4e00-\u9fff]/;

/** Temp template folders; `files` maps a path under the folder to its content. */
const tempDirs: string[] = [];
function templateDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'recoup-templates-'));
  tempDirs.push(dir);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  return dir;
}
function completeLocale(prefix: string, parts: Partial<Record<(typeof templateParts)[number], string>> = {}) {
  return Object.fromEntries(
    templateParts.map((part) => [`${prefix}/${part}.hbs`, parts[part] ?? `${part} for {{shop.name}}`]),
  );
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function catchError(fn: () => unknown): RecoupError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RecoupError) return err;
    throw err;
  }
  throw new Error('expected a RecoupError');
}

describe('TemplateRenderer.load with the shipped templates', () => {
  it('finds every reminder template in en and zh-CN', () => {
    expect(renderer.templates()).toEqual(
      expect.arrayContaining(['alternative-methods', 'gateway-restored', 'last-call', 'nudge']),
    );
    expect(renderer.templates()).not.toContain('partials');
    for (const template of renderer.templates()) {
      expect(renderer.has(template)).toBe(true);
      expect(renderer.locales(template)).toEqual(expect.arrayContaining(['en', 'zh-CN']));
    }
    expect(renderer.has('nope')).toBe(false);
    expect(renderer.locales('nope')).toEqual([]);
  });
});

describe.each(['alternative-methods', 'gateway-restored', 'last-call', 'nudge'])('template %s', (template) => {
  it('renders in en with the shop, amount and retry link, and no Chinese', () => {
    const sms = renderer.renderSms(template, 'en', context());
    expect(sms.locale).toBe('en');
    expect(sms.body).toContain('Example Shop');
    expect(sms.body).toContain('CN¥129.00');
    expect(sms.body).toContain(retryUrl);
    expect(sms.body).not.toMatch(cjk);

    const email = renderer.renderEmail(template, 'en', context());
    expect(email.locale).toBe('en');
    expect(email.subject).toContain('Example Shop');
    expect(email.subject).not.toMatch(/\n/);
    for (const part of [email.html, email.text]) {
      expect(part).toContain('Example Shop');
      expect(part).toContain('CN¥129.00');
      expect(part).toContain(retryUrl);
      expect(part).toContain('Linen shirt, navy blue, size M');
      expect(part).toContain('Alexandra Richardson');
      expect(part).not.toMatch(cjk);
    }
    expect(email.html).toContain(`href="${retryUrl}"`);
    expect(email.html).toMatch(/^<!DOCTYPE html>\n<html lang="en">/);
    expect(email.html).toContain('name="viewport"');
  });

  it('renders in zh-CN in Chinese with the shop, amount and retry link', () => {
    const ctx = context({ customer: { name: '欧阳娜娜' }, order: { description: '真丝围巾 · 藏青色 · 礼盒装' } });
    const sms = renderer.renderSms(template, 'zh-CN', ctx);
    expect(sms.locale).toBe('zh-CN');
    expect(sms.body).toContain('【Example Shop】');
    expect(sms.body).toContain('¥129.00');
    expect(sms.body).not.toContain('CN¥');
    expect(sms.body).toContain(retryUrl);
    expect(sms.body).toMatch(cjk);

    const email = renderer.renderEmail(template, 'zh-CN', ctx);
    expect(email.subject).toContain('Example Shop');
    expect(email.subject).toMatch(cjk);
    for (const part of [email.html, email.text]) {
      expect(part).toContain('¥129.00');
      expect(part).toContain(retryUrl);
      expect(part).toContain('欧阳娜娜');
      expect(part).toContain('真丝围巾 · 藏青色 · 礼盒装');
      expect(part).toContain('应付金额');
    }
    expect(email.html).toContain('<html lang="zh-CN">');
  });

  it('puts the unsubscribe link in the email footer only when there is one', () => {
    const withLink = renderer.renderEmail(template, 'en', context());
    expect(withLink.html).toContain('href="https://example-shop.com/u/abc?c&#x3D;1&amp;t&#x3D;xyz"');
    expect(withLink.text).toContain(unsubscribeUrl);

    const without = renderer.renderEmail(template, 'zh-CN', context({ unsubscribeUrl: undefined }));
    expect(without.html).not.toContain('https://example-shop.com/u/');
    expect(without.text).not.toContain('https://example-shop.com/u/');
    expect(without.html).not.toContain('不再接收付款提醒');
  });

  it('renders for every failure category, with and without methods, names and descriptions', () => {
    for (const failureCategory of failureCategories) {
      for (const offerMethods of [[], ['card']] as PaymentMethod[][]) {
        for (const locale of renderer.locales(template)) {
          const ctx = context({ failureCategory, offerMethods, customer: { name: '' }, order: { description: '' } });
          const email = renderer.renderEmail(template, locale, ctx);
          expect(email.text).not.toMatch(/Hi ,|，您好/);
          expect(email.text).not.toMatch(/\{\{|undefined|null/);
          expect(email.html).not.toMatch(/\{\{|undefined|null/);
          expect(renderer.renderSms(template, locale, ctx).body).not.toMatch(/\{\{|undefined|null/);
        }
      }
    }
  });
});

describe('SMS length', () => {
  // Realistic worst cases: names and descriptions in both scripts, amounts in currencies with 0, 2
  // and 3 decimals; every template found on disk is checked, so a new one is covered automatically.
  const names = ['Alexandra Richardson', '欧阳娜娜', 'José Núñez-Álvarez'];
  const descriptions = ['Linen shirt, navy blue, size M', '真丝围巾 · 藏青色 · 礼盒装 · 限量款 x2'];
  const amounts: Array<[number, string]> = [
    [12900, 'CNY'],
    [4999, 'USD'],
    [1234567, 'JPY'],
    [1234567, 'KWD'],
    [123456, 'INR'],
  ];
  const methodSets: PaymentMethod[][] = [['alipay', 'wechat_pay', 'card'], []];
  const categories: FailureCategory[] = ['insufficient_funds', 'gateway_outage', 'abandoned'];

  it.each(renderer.templates().flatMap((t) => renderer.locales(t).map((l) => [t, l] as const)))(
    '%s in %s fits in 2 segments and names the shop',
    (template, locale) => {
      let worst = 0;
      for (const name of names)
        for (const description of descriptions)
          for (const [amount, currency] of amounts)
            for (const offerMethods of methodSets)
              for (const failureCategory of categories) {
                const ctx = context({
                  customer: { name },
                  order: { description, amount, currency },
                  offerMethods,
                  failureCategory,
                });
                const { body, segments } = renderer.renderSms(template, locale, ctx);
                expect(body).toContain('Example Shop');
                expect(body).toContain(retryUrl);
                expect(segments.segments, body).toBeLessThanOrEqual(2);
                if (locale === 'en') expect(segments.encoding, body).toBe('GSM-7');
                worst = Math.max(worst, segments.segments);
              }
      expect(worst).toBeGreaterThanOrEqual(1);
    },
  );

  it('keeps the nudge, the most common SMS, to one GSM-7 segment for a typical order', () => {
    const sms = renderer.renderSms('nudge', 'en', context({ order: { amount: 4999, currency: 'USD' } }));
    expect(sms.segments).toEqual({ encoding: 'GSM-7', units: sms.body.length, segments: 1 });
  });

  it('writes amounts whose symbol is not GSM-7 with the ISO code in SMS, but with the symbol in email', () => {
    const ctx = context({ order: { amount: 123456, currency: 'INR' } });
    const sms = renderer.renderSms('nudge', 'en', ctx);
    expect(sms.body).toContain('INR 1,234.56');
    expect(sms.segments.encoding).toBe('GSM-7');
    expect(renderer.renderEmail('nudge', 'en', ctx).text).toContain('₹1,234.56');
  });

  it('replaces the no-break space Intl puts in amounts so the SMS stays GSM-7', () => {
    const sms = renderer.renderSms('nudge', 'en', context({ order: { amount: 1234, currency: 'KWD' } }));
    expect(sms.body).toContain('KWD 1.234');
    expect(sms.body).not.toContain('\u00a0');
    expect(sms.segments.encoding).toBe('GSM-7');
  });
});

describe('localised view model', () => {
  it('names the offered methods in the customer language', () => {
    const ctx = context({ offerMethods: ['alipay', 'wechat_pay', 'card'] });
    expect(renderer.renderSms('alternative-methods', 'en', ctx).body).toContain('Alipay, WeChat Pay, or card');
    expect(renderer.renderSms('alternative-methods', 'zh-CN', ctx).body).toContain('支付宝、微信支付或银行卡');
    const html = renderer.renderEmail('alternative-methods', 'zh-CN', ctx).html;
    expect(html).toContain('<li style="margin:0 0 4px;">微信支付</li>');
  });

  it('explains the failure kindly and suggests another method where that helps', () => {
    const insufficient = renderer.renderEmail('alternative-methods', 'en', context()).text;
    expect(insufficient).toContain("Your bank or wallet didn't approve the payment.");
    expect(insufficient).toContain('choose another payment method now');
    const unsupported = renderer.renderEmail(
      'alternative-methods',
      'zh-CN',
      context({ failureCategory: 'method_unsupported' }),
    ).text;
    expect(unsupported).toContain('您选择的支付方式暂不适用于此订单。');
    expect(unsupported).toContain('请选择其他支付方式完成付款。');
  });

  it('names the coupon that could not be applied', () => {
    const ctx = context({ failureCategory: 'coupon_invalid', order: { couponCode: 'SPRING10' } });
    expect(renderer.renderEmail('nudge', 'en', ctx).text).toContain("The coupon SPRING10 couldn't be applied");
    expect(renderer.renderEmail('nudge', 'zh-CN', ctx).text).toContain('优惠券“SPRING10”未能用于您的订单');
  });

  it('does not claim a failed payment for an abandoned checkout', () => {
    const ctx = context({ failureCategory: 'abandoned' });
    expect(renderer.renderSms('nudge', 'en', ctx).body).toContain('is waiting for payment');
    expect(renderer.renderSms('nudge', 'en', ctx).body).not.toContain("didn't go through");
    expect(renderer.renderSms('nudge', 'zh-CN', ctx).body).toContain('尚未完成付款');
  });
});

describe('cart lines', () => {
  const items = [
    { name: 'Longjing tea gift box', quantity: 2, amount: 9800, image_url: 'https://cdn.example-shop.com/tea.jpg' },
    { name: 'Celadon cup', quantity: 1, amount: 3100, sku: 'CUP-1' },
  ];
  const lines = (count: number) =>
    Array.from({ length: count }, (_, i) => ({ name: `Line ${i + 1}`, quantity: 1, amount: 100 * (i + 1) }));
  const imgTags = (html: string) => html.match(/<img\b[^>]*>/g) ?? [];

  it.each(['alternative-methods', 'gateway-restored', 'last-call', 'nudge'])(
    '%s lists each line with its quantity and amount in html and text, in en and zh-CN',
    (template) => {
      const en = renderer.renderEmail(template, 'en', context({ order: { items } }));
      expect(en.html).toContain('Longjing tea gift box <span style="color:#6b7280;white-space:nowrap;">× 2</span>');
      expect(en.html).toContain('CN¥98.00');
      expect(en.html).toContain('Celadon cup <span style="color:#6b7280;white-space:nowrap;">× 1</span>');
      expect(en.html).toContain('CN¥31.00');
      expect(en.text).toContain('Longjing tea gift box × 2  CN¥98.00\nCeladon cup × 1  CN¥31.00\n');

      const zh = renderer.renderEmail(template, 'zh-CN', context({ order: { items } }));
      expect(zh.text).toContain('Longjing tea gift box × 2  ¥98.00\nCeladon cup × 1  ¥31.00\n');
      expect(zh.html).toContain('¥31.00');
    },
  );

  it('shows a thumbnail only for a line with an https image, sized, with the name as its text', () => {
    const { html } = renderer.renderEmail('nudge', 'en', context({ order: { items } }));
    expect(imgTags(html)).toEqual([
      expect.stringMatching(
        /^<img src="https:\/\/cdn\.example-shop\.com\/tea\.jpg" width="48" height="48" alt="Longjing tea gift box" /,
      ),
    ]);
    const plain = renderer.renderEmail(
      'nudge',
      'en',
      context({ order: { items: [{ ...items[0]!, image_url: null }] } }),
    );
    expect(imgTags(plain.html)).toEqual([]);
    // Not through the event schema (an older row, say): shown without its picture rather than failing.
    const http = renderer.renderEmail(
      'nudge',
      'en',
      context({ order: { items: [{ ...items[0]!, image_url: 'http://cdn.example-shop.com/tea.jpg' }] } }),
    );
    expect(imgTags(http.html)).toEqual([]);
    expect(http.html).toContain('Longjing tea gift box');
  });

  it('escapes line names in the html part (text and alt) and keeps them literal in the text part', () => {
    const hostile = {
      name: '<script>alert(1)</script> "tea"',
      quantity: 1,
      amount: 100,
      image_url: 'https://cdn.example-shop.com/x.jpg?a=1&b="2"',
    };
    const email = renderer.renderEmail('nudge', 'en', context({ order: { items: [hostile] } }));
    expect(email.html).not.toContain('<script>');
    expect(email.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &quot;tea&quot; <span');
    expect(email.html).toContain('alt="&lt;script&gt;alert(1)&lt;/script&gt; &quot;tea&quot;"');
    expect(email.html).toContain('src="https://cdn.example-shop.com/x.jpg?a&#x3D;1&amp;b&#x3D;&quot;2&quot;"');
    expect(email.text).toContain('<script>alert(1)</script> "tea" × 1');
  });

  it('lists at most five lines, then says how many more there are', () => {
    expect(maxItemsShown).toBe(5);
    const five = renderer.renderEmail('nudge', 'en', context({ order: { items: lines(5) } }));
    expect(five.text).toContain('Line 5 × 1');
    expect(five.text).not.toMatch(/more item/);

    const six = renderer.renderEmail('nudge', 'en', context({ order: { items: lines(6) } }));
    expect(six.text).toContain('Line 5 × 1  CN¥5.00\nand 1 more item\nAmount due:');
    expect(six.text).not.toContain('Line 6');
    expect(six.html).toContain('>and 1 more item</td>');
    expect(six.html).not.toContain('Line 6');

    const nine = renderer.renderEmail('nudge', 'en', context({ order: { items: lines(9) } }));
    expect(nine.text).toContain('and 4 more items');
    expect(nine.html).toContain('>and 4 more items</td>');
  });

  it('says "and N more" in Chinese for a Chinese customer', () => {
    const email = renderer.renderEmail('last-call', 'zh-CN', context({ order: { items: lines(8) } }));
    expect(email.text).toContain('Line 5 × 1  ¥5.00\n另有 3 件商品\n应付金额：');
    expect(email.html).toContain('>另有 3 件商品</td>');
    expect(email.html).not.toMatch(/more item/);
  });

  it('formats line amounts with the currency exponent and the customer locale', () => {
    const jpy = renderer.renderEmail(
      'nudge',
      'en',
      context({ order: { currency: 'JPY', amount: 3000, items: [{ name: 'Sencha', quantity: 3, amount: 3000 }] } }),
    );
    expect(jpy.text).toContain('Sencha × 3  ¥3,000\n');
  });

  it('shows no list when the shop sent no lines, and leaves the SMS as it was', () => {
    for (const none of [undefined, null, []]) {
      const email = renderer.renderEmail('nudge', 'en', context({ order: { items: none } }));
      expect(email.text).not.toContain(' × ');
      expect(email.html).not.toContain('× ');
      expect(email).toEqual(renderer.renderEmail('nudge', 'en', context()));
    }
    for (const locale of ['en', 'zh-CN']) {
      expect(renderer.renderSms('nudge', locale, context({ order: { items } }))).toEqual(
        renderer.renderSms('nudge', locale, context()),
      );
    }
  });
});

describe('escaping', () => {
  const hostile = context({
    shop: { name: "Tom & Jerry's <Shop>" },
    customer: { name: '<script>alert(1)</script>' },
    order: { description: '<img src=x onerror=alert(2)> "quoted"' },
  });

  it('escapes customer and shop text in the html part', () => {
    const { html } = renderer.renderEmail('nudge', 'en', hostile);
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src&#x3D;x onerror&#x3D;alert(2)&gt; &quot;quoted&quot;');
    expect(html).toContain('Tom &amp; Jerry&#x27;s &lt;Shop&gt;');
  });

  it('keeps the same text literal in sms, subject and text parts', () => {
    const email = renderer.renderEmail('nudge', 'en', hostile);
    expect(email.text).toContain('<script>alert(1)</script>');
    expect(email.text).toContain('<img src=x onerror=alert(2)> "quoted"');
    expect(email.text).not.toContain('&lt;');
    expect(email.subject).toContain("Tom & Jerry's <Shop>");
    const sms = renderer.renderSms('nudge', 'en', hostile);
    expect(sms.body).toMatch(/^Tom & Jerry's <Shop>: /);
    expect(sms.body).not.toContain('&amp;');
  });

  it('keeps customer text on one line in the subject', () => {
    const ctx = context({ shop: { name: 'Example\r\nBcc: someone@example.com' } });
    expect(renderer.renderEmail('nudge', 'en', ctx).subject).not.toMatch(/[\r\n]/);
  });

  it('is not affected by helpers or partials registered on the global Handlebars', () => {
    Handlebars.registerPartial('layout', 'HIJACKED');
    try {
      expect(renderer.renderEmail('nudge', 'en', context()).html).not.toContain('HIJACKED');
    } finally {
      Handlebars.unregisterPartial('layout');
    }
  });
});

describe('strict mode', () => {
  const dir = templateDir({
    ...completeLocale('typo/en', {
      sms: '{{shop.name}}: hello {{customer.nmae}}',
      text: 'Hi {{customer.name}} {{order.total}}',
    }),
    ...completeLocale('nested/en', { sms: '{{order.shipping.city}}' }),
  });
  const strict = TemplateRenderer.load(dir);

  it('throws a validation error naming template, locale and part for a missing variable in sms', () => {
    const err = catchError(() => strict.renderSms('typo', 'en', context()));
    expect(err.code).toBe('validation');
    expect(err.issues).toEqual([{ path: 'typo/en/sms', message: expect.stringContaining('nmae') }]);
  });

  it('is strict in the unescaped text part too', () => {
    const err = catchError(() => strict.renderEmail('typo', 'en', context()));
    expect(err.code).toBe('validation');
    expect(err.issues[0]?.path).toBe('typo/en/text');
    expect(err.issues[0]?.message).toContain('total');
  });

  it('throws for a missing intermediate object', () => {
    expect(catchError(() => strict.renderSms('nested', 'en', context())).issues[0]?.path).toBe('nested/en/sms');
  });

  it('rejects a context that would render a message without the shop or with an unsafe link', () => {
    expect(catchError(() => renderer.renderSms('nudge', 'en', context({ shop: { name: '  ' } }))).issues).toEqual([
      expect.objectContaining({ path: 'shop.name' }),
    ]);
    expect(catchError(() => renderer.renderSms('nudge', 'en', context({ retryUrl: 'javascript:alert(1)' }))).code).toBe(
      'validation',
    );
    expect(catchError(() => renderer.renderSms('nudge', 'en', context({ order: { currency: 'XX' } }))).issues).toEqual([
      expect.objectContaining({ path: 'order.currency' }),
    ]);
  });

  it('reports an unknown template as not_found', () => {
    expect(catchError(() => renderer.renderSms('nope', 'en', context())).code).toBe('not_found');
    expect(catchError(() => renderer.resolveLocale('nope', 'en')).code).toBe('not_found');
  });
});

describe('TemplateRenderer.load problems', () => {
  it('reports every missing part in a locale the template has, at once', () => {
    const dir = templateDir({
      ...completeLocale('reminder/en'),
      'reminder/zh-CN/sms.hbs': '【{{shop.name}}】',
      'reminder/zh-CN/subject.hbs': '{{shop.name}}',
      'reminder/zh-CN/text.hbs': '{{shop.name}}',
    });
    const err = catchError(() => TemplateRenderer.load(dir));
    expect(err.code).toBe('config');
    expect(err.issues).toEqual([expect.objectContaining({ path: 'reminder/zh-CN/html.hbs' })]);
    expect(err.message).toContain('reminder/zh-CN/html.hbs');
  });

  it('reports syntax errors, unknown parts, unknown partials and bad locale folders together', () => {
    const dir = templateDir({
      ...completeLocale('a/en', { html: '{{#if shop.name}}unclosed' }),
      'a/en/subjet.hbs': 'typo',
      ...completeLocale('b/en', { html: '{{#> missing-layout}}x{{/missing-layout}}' }),
      ...completeLocale('c/not a locale'),
      'partials/ok.hbs': '<b>{{shop.name}}</b>',
    });
    const err = catchError(() => TemplateRenderer.load(dir));
    expect(err.code).toBe('config');
    expect(err.issues.map((i) => i.path).sort()).toEqual([
      'a/en/html.hbs',
      'a/en/subjet.hbs',
      'b/en/html.hbs',
      'c/not a locale',
    ]);
  });

  it('skips the partials and pages folders when looking for templates', () => {
    const r = TemplateRenderer.load(
      templateDir({ ...completeLocale('t/en'), 'partials/x.hbs': 'x', 'pages/retry/en.hbs': '<p>{{whatever}}</p>' }),
    );
    expect(r.templates()).toEqual(['t']);
  });

  it('fails when the folder does not exist', () => {
    expect(catchError(() => TemplateRenderer.load(path.join(tmpdir(), 'recoup-no-such-dir'))).code).toBe('config');
  });

  it('uses partials, escaping them for html and not for plain-text parts', () => {
    const dir = templateDir({
      ...completeLocale('p/en', {
        html: '{{#> frame}}<i>{{customer.name}}</i>{{/frame}}',
        text: '{{> sign}}',
        subject: 'Hi',
      }),
      'partials/frame.hbs': '<div>{{shop.name}}|{{> @partial-block}}</div>',
      'partials/sign.hbs': '-- {{shop.name}}',
    });
    const r = TemplateRenderer.load(dir);
    const email = r.renderEmail('p', 'en', context({ shop: { name: 'A&B' }, customer: { name: '<x>' } }));
    expect(email.html).toBe('<div>A&amp;B|<i>&lt;x&gt;</i></div>\n');
    expect(email.text).toBe('-- A&B\n');
  });
});

describe('resolveLocale', () => {
  it.each([
    ['zh-CN', 'zh-CN'],
    ['zh-cn', 'zh-CN'],
    ['ZH_CN', 'zh-CN'],
    ['zh_CN', 'zh-CN'],
    ['zh_CN.UTF-8', 'zh-CN'],
    ['zh-Hans-CN', 'zh-CN'],
    ['zh-Hans', 'zh-CN'],
    ['zh', 'zh-CN'],
    ['zh-SG', 'zh-CN'],
    ['zh-TW', 'zh-TW'],
    ['en', 'en'],
    ['EN', 'en'],
    ['en-GB', 'en'],
    ['en-US', 'en'],
    ['en_AU', 'en'],
    ['pt-BR', 'en'],
    ['', 'en'],
    ['!!', 'en'],
    [undefined, 'en'],
    [null, 'en'],
  ])('%s → %s', (requested, expected) => {
    expect(renderer.resolveLocale('nudge', requested)).toBe(expected);
  });

  it('uses the fallback when nothing matches, and the first locale when the fallback is missing too', () => {
    expect(renderer.resolveLocale('nudge', 'pt', 'zh-CN')).toBe('zh-CN');
    expect(renderer.resolveLocale('nudge', 'pt', 'zh')).toBe('zh-CN');
    const onlyChinese = TemplateRenderer.load(templateDir(completeLocale('t/zh-CN')));
    expect(onlyChinese.resolveLocale('t', 'de')).toBe('zh-CN');
  });

  it('prefers the same script over the same language when a template has both Chinese scripts', () => {
    const both = TemplateRenderer.load(
      templateDir({ ...completeLocale('t/en'), ...completeLocale('t/zh-CN'), ...completeLocale('t/zh-TW') }),
    );
    expect(both.resolveLocale('t', 'zh-HK')).toBe('zh-TW');
    expect(both.resolveLocale('t', 'zh-Hant')).toBe('zh-TW');
    expect(both.resolveLocale('t', 'zh')).toBe('zh-CN');
    expect(both.resolveLocale('t', 'zh-SG')).toBe('zh-CN');
  });

  it('is applied by the render methods', () => {
    expect(renderer.renderSms('nudge', 'zh_CN', context()).locale).toBe('zh-CN');
    expect(renderer.renderEmail('nudge', 'en-GB', context()).locale).toBe('en');
  });
});

it('wraps every failure as a RecoupError', () => {
  expect(isRecoupError(catchError(() => renderer.renderSms('nudge', 'en', context({ order: { amount: 1.5 } }))))).toBe(
    true,
  );
});
