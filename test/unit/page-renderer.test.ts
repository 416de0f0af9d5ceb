import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRecoupError } from '../../src/platform/errors.js';
import { formatAmount } from '../../src/platform/format-amount.js';
import { PageRenderer, pageNames, type PageData, type PageName } from '../../src/http/pages/page-renderer.js';
import {
  fillIn,
  localeFromAcceptLanguage,
  pageLocales,
  pageStrings,
  pageStringsFor,
  resolvePageLocale,
  type PageLocale,
} from '../../src/http/pages/page-strings.js';

const renderer = PageRenderer.load('templates/pages');
const evil = '<script>alert(1)</script>';
const token = 'AbCdEfGhIjKlMnOpQrStUv';
const attempt = 'att_0123456789abcdef01234567';
/** How each locale says thank you, to count the success page's thanks. */
const thanksWords: Record<string, string> = {
  en: 'thank you',
  'zh-CN': '谢谢',
  'zh-TW': '謝謝',
  ja: 'ありがと',
  ko: '감사',
  es: 'gracias',
  fr: 'merci',
  de: 'dank',
};

/** A realistic view of every page, worded in `locale` the way the routes word it. */
function views(locale: PageLocale): { [P in PageName]: PageData[P] } {
  const t = pageStringsFor(locale);
  const amount = formatAmount(13900, 'CNY', locale);
  const poll = {
    statusUrl: `/r/${token}/status/${attempt}`,
    doneUrl: `/r/${token}/done?attempt=${attempt}`,
    failedUrl: `/r/${token}/done?attempt=${attempt}`,
  };
  const shopName = `Example ${evil} Shop`;
  return {
    retry: {
      title: t.failedTitle,
      shopName,
      notice: { tone: 'warn', text: t.unavailable },
      intro: t.failedIntro,
      description: `2 items ${evil}`,
      items: [{ name: `Tea ${evil}`, quantity: 2, amount: formatAmount(9800, 'CNY', locale), imageUrl: null }],
      orderAmount: formatAmount(12900, 'CNY', locale),
      coupon: {
        tone: 'warn',
        text: fillIn(t.couponExpired, { code: 'SAVE10', discount: formatAmount(1000, 'CNY', locale), total: amount }),
      },
      incentive: null,
      total: amount,
      failureReason: t.reasons.account_frozen,
      formAction: `/r/${token}`,
      csrf: 'csrf-token-value',
      clickUrl: `/r/${token}/click`,
      form: { email: `li@example.com"${evil}`, phone: '+8613800138000' },
      phoneHint: fillIn(t.phoneHint, { example: '+86 131 2345 6789' }),
      errors: { email: t.emailInvalid, phone: null, method: null },
      hasErrors: true,
      methods: [
        { code: 'card', title: t.methods.card, checked: false },
        { code: 'alipay', title: t.methods.alipay, checked: true },
        { code: 'wechat_pay', title: t.methods.wechat_pay, checked: false },
      ],
      payLabel: fillIn(t.payButton, { amount }),
    },
    continue: {
      title: t.continueTitle,
      shopName,
      text: fillIn(t.continueText, { shop: shopName }),
      formAction: `/r/${token}/continue`,
      csrf: 'csrf-token-value',
      label: t.continueButton,
      clickUrl: `/r/${token}/click`,
      continueUrl: `/shop/order-pay/1?key=${evil}`,
    },
    message: {
      title: t.expiredTitle,
      shopName,
      tone: 'info',
      paragraphs: [t.expiredText],
      action: {
        formAction: `/r/${token}/fresh-link`,
        csrf: 'csrf-token-value',
        label: t.freshLinkButton,
        hint: t.freshLinkHint,
      },
      link: { href: `/r/${token}`, label: t.backToPayment },
    },
    qr: {
      title: t.qrTitle,
      shopName,
      notice: { tone: 'info', text: t.qrNotYet },
      description: `2 items ${evil}`,
      amount,
      qrImage: 'data:image/svg+xml;base64,PHN2Zy8+',
      qrAlt: fillIn(t.qrAlt, { amount }),
      steps: t.qrSteps.map((s) => fillIn(s, { amount })),
      phoneHint: t.qrPhoneHint,
      poll,
      noScriptHint: fillIn(t.qrNoScript, { button: t.checkPaid }),
      checkUrl: poll.doneUrl,
      simulateUrl: null,
      otherMethodUrl: `/r/${token}`,
    },
    pending: { title: t.pendingTitle, shopName, text: t.pendingText, amount, poll, checkUrl: poll.doneUrl },
    success: {
      title: t.successTitle,
      shopName,
      text: fillIn(t.successText, { amount }),
      reference: `ord_1042${evil}`,
      note: t.successNote,
    },
    card: {
      title: t.cardTitle,
      shopName,
      intro: fillIn(t.cardIntro, { amount }),
      publishableKey: 'pk_test_123',
      clientSecret: 'pi_123_secret_456',
      returnUrl: `https://pay.example-shop.com/r/${token}/return?attempt=${attempt}`,
      otherMethodUrl: `/r/${token}`,
    },
  };
}

describe('PageRenderer', () => {
  for (const locale of pageLocales) {
    describe(locale, () => {
      const all = views(locale);
      const t = pageStringsFor(locale);

      it.each(pageNames)('renders the %s page as a complete, phone-ready, escaped document', (page) => {
        const html = renderer.render(page, locale, all[page] as never);
        expect(html).toMatch(/^<!DOCTYPE html>/);
        expect(html).toContain(`<html lang="${locale}">`);
        expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
        expect(html).toContain('<meta name="referrer" content="no-referrer">');
        expect(html).toMatch(/<link rel="stylesheet" href="\/assets\/recoup\.css\?v&#x3D;[\w-]{16}">/);
        expect(html).toContain(`<h1>${escape(all[page].title)}</h1>`);
        // Every value is escaped: the shop name and description carry markup.
        expect(html).not.toContain(evil);
        expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
        // No unfilled placeholders, no leaked JS values.
        expect(html).not.toMatch(/\{\w+\}|undefined|\[object Object\]/);
        // Nothing from a CDN: the only external origin is Stripe.js, on the card page alone.
        const external = [...html.matchAll(/(?:src|href)="(https?:[^"]+)"/g)].map((m) => m[1]);
        expect(external).toEqual(page === 'card' ? ['https://js.stripe.com/v3/'] : []);
        // No inline script: the CSP is script-src 'self'.
        expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
        expect(/<script src="\/assets\/retry\.js/.test(html)).toBe(
          ['retry', 'continue', 'qr', 'pending', 'card'].includes(page),
        );
      });

      it('renders the form with labelled fields, the chosen method checked, inline errors and the CSRF token', () => {
        const html = renderer.render('retry', locale, all.retry);
        expect(html).toContain(
          '<form method="post" action="/r/AbCdEfGhIjKlMnOpQrStUv" data-click-url="/r/AbCdEfGhIjKlMnOpQrStUv/click" novalidate>',
        );
        expect(html).toContain('<input type="hidden" name="csrf" value="csrf-token-value">');
        expect(html).toContain(`<label for="email">${t.emailLabel}</label>`);
        expect(html).toContain(`<label for="phone">${t.phoneLabel}</label>`);
        expect(html).toMatch(/id="email"[^>]*aria-invalid="true" aria-describedby="email-error"/);
        expect(html).toContain(`<p class="field-error" id="email-error">${escape(t.emailInvalid)}</p>`);
        expect(html).not.toContain('id="phone-error"');
        expect(html).toContain('value="li@example.com&quot;&lt;script&gt;alert(1)&lt;/script&gt;"');
        expect(html).toContain('<input type="radio" name="method" value="alipay" checked>');
        expect(html).toContain('<input type="radio" name="method" value="card">');
        expect(html).toContain(escape(t.reasons.account_frozen));
        expect(html).toContain(escape(all.retry.coupon!.text));
        expect(html).toContain(escape(all.retry.payLabel));
      });

      it('lists the cart lines above the payment choice, a picture only where a line has one', () => {
        const items = [
          {
            name: 'Longjing tea',
            quantity: 2,
            amount: formatAmount(9800, 'CNY', locale),
            imageUrl: 'https://cdn.example.com/tea.jpg?w=96&h=96',
          },
          { name: `Cup ${evil}`, quantity: 1, amount: formatAmount(3100, 'CNY', locale), imageUrl: null },
        ];
        const html = renderer.render('retry', locale, { ...all.retry, items });
        const list = /<ul class="items" aria-label="([^"]+)">([\s\S]*?)<\/ul>/.exec(html);
        expect(list?.[1]).toBe(escape(t.itemsLabel));
        const lines = list?.[2]?.split('</li>').filter((l) => l.includes('<li')) ?? [];
        expect(lines).toHaveLength(2);
        expect(lines[0]).toContain(
          '<img src="https://cdn.example.com/tea.jpg?w&#x3D;96&amp;h&#x3D;96" alt="Longjing tea" width="48" height="48" loading="lazy">',
        );
        expect(lines[0]).toContain('Longjing tea <span class="item-quantity">× 2</span>');
        expect(lines[0]).toContain(`<span class="item-amount">${escape(items[0]!.amount)}</span>`);
        expect(lines[1]).not.toContain('<img');
        expect(lines[1]).toContain('Cup &lt;script&gt;alert(1)&lt;/script&gt; <span class="item-quantity">× 1</span>');
        expect(html.indexOf('class="items"')).toBeLessThan(html.indexOf('<form'));

        expect(renderer.render('retry', locale, { ...all.retry, items: [] })).not.toContain('class="items"');
      });

      it('says so, without a button, when no method is available', () => {
        const html = renderer.render('retry', locale, { ...all.retry, methods: [] });
        expect(html).toContain(escape(t.noMethods));
        expect(html).not.toContain('type="submit"');
      });

      it('renders the QR page with the image, the steps and the polling hooks', () => {
        const html = renderer.render('qr', locale, all.qr);
        expect(html).toContain(`<img src="data:image/svg+xml;base64,PHN2Zy8+" alt="${escape(all.qr.qrAlt)}"`);
        expect(html).toContain(`data-poll-url="/r/${token}/status/${attempt}"`);
        expect(html).toContain(`data-done-url="/r/${token}/done?attempt&#x3D;${attempt}"`);
        for (const step of all.qr.steps) expect(html).toContain(escape(step));
      });

      it('says the QR page moves on by itself only where its script runs, and what to do without it', () => {
        const html = renderer.render('qr', locale, all.qr);
        // Hidden until the polling script shows it; a <noscript> hint names the check button instead.
        expect(html).toMatch(new RegExp(`<p class="poll" [^>]* hidden>${escape(t.qrPending)}</p>`));
        expect(html).toContain(`<noscript><p class="hint">${escape(all.qr.noScriptHint)}</p></noscript>`);
        expect(all.qr.noScriptHint).toContain(t.checkPaid);
        expect(html).not.toContain(escape(t.qrSimulate));
        const sandbox = renderer.render('qr', locale, {
          ...all.qr,
          simulateUrl: 'https://pay.example/sandbox/scan/sbx_1',
        });
        expect(sandbox).toContain(`<a class="button secondary" href="https://pay.example/sandbox/scan/sbx_1">`);
        expect(sandbox).toContain(escape(t.qrSimulate));
      });

      it('thanks once on the success page and gives the order reference', () => {
        const html = renderer.render('success', locale, all.success);
        const main = html.slice(html.indexOf('<main>'));
        const thanks = thanksWords[locale];
        expect(thanks).toBeDefined();
        expect(main.match(new RegExp(thanks ?? '', 'gi'))).toHaveLength(1);
        expect(html).toContain(`${escape(t.orderReference)} <strong>${escape(all.success.reference ?? '')}</strong>`);
      });

      it('reloads the confirming page without JavaScript, and only that page', () => {
        expect(renderer.render('pending', locale, all.pending)).toContain(
          '<noscript><meta http-equiv="refresh" content="5"></noscript>',
        );
        expect(renderer.render('qr', locale, all.qr)).not.toContain('http-equiv="refresh"');
      });

      it('renders the one-button form of a message page', () => {
        const html = renderer.render('message', locale, all.message);
        expect(html).toContain(`<form method="post" action="/r/${token}/fresh-link">`);
        expect(html).toContain(escape(t.freshLinkButton));
        expect(html).toContain(`href="/r/${token}"`);
      });

      it("renders the page leading on to the shop's payment page: a button without JavaScript, the script's targets", () => {
        const html = renderer.render('continue', locale, all.continue);
        expect(html).toContain(
          `<form method="post" action="/r/${token}/continue" data-click-url="/r/${token}/click" ` +
            `data-continue-url="/shop/order-pay/1?key&#x3D;${escape(evil)}">`,
        );
        expect(html).toContain('<input type="hidden" name="csrf" value="csrf-token-value">');
        expect(html).toContain(`<button type="submit" class="primary">${escape(t.continueButton)}</button>`);
      });
    });
  }

  it('throws in strict mode when a page is given data without a field it uses', () => {
    const { title, shopName } = views('en').success;
    expect(() => renderer.render('success', 'en', { title, shopName } as never)).toThrow(/"text" not defined/);
  });

  it('serves its assets with a content-hashed URL and a strong ETag', () => {
    const css = renderer.asset('recoup.css');
    expect(css?.contentType).toBe('text/css; charset=utf-8');
    expect(css?.body.toString()).toContain('font-family: system-ui');
    expect(css?.url).toMatch(/^\/assets\/recoup\.css\?v=[\w-]{16}$/);
    expect(css?.etag).toMatch(/^"[\w-]{16}"$/);
    expect(renderer.asset('retry.js')?.body.toString()).toContain('data-poll-url');
    expect(renderer.asset('../page-renderer.ts')).toBeUndefined();
  });

  it('refuses to load a pages folder with missing or broken pages, listing every problem', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-pages-'));
    try {
      fs.mkdirSync(path.join(dir, 'partials'));
      fs.writeFileSync(path.join(dir, 'retry.hbs'), '{{#> layout}}{{#if}}{{/layout}}');
      let error: unknown;
      try {
        PageRenderer.load(dir);
      } catch (err) {
        error = err;
      }
      expect(isRecoupError(error, 'config')).toBe(true);
      const paths = isRecoupError(error) ? error.issues.map((i) => i.path) : [];
      expect(paths).toEqual(
        expect.arrayContaining(['partials/layout.hbs', 'retry.hbs', 'message.hbs', 'card.hbs', 'assets/retry.js']),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('page strings', () => {
  it('has every string in every locale', () => {
    const shape = (value: unknown): unknown =>
      Array.isArray(value)
        ? value.length
        : typeof value === 'object' && value !== null
          ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape(v)]))
          : typeof value;
    for (const locale of pageLocales) expect(shape(pageStrings[locale])).toEqual(shape(pageStrings.en));
  });

  it('resolves customer locales like the message templates do', () => {
    expect(resolvePageLocale('zh-CN')).toBe('zh-CN');
    expect(resolvePageLocale('zh')).toBe('zh-CN');
    expect(resolvePageLocale('zh-TW')).toBe('zh-TW');
    expect(resolvePageLocale('zh_CN.UTF-8')).toBe('zh-CN');
    expect(resolvePageLocale('en-GB')).toBe('en');
    expect(resolvePageLocale('pt')).toBe('en');
    expect(resolvePageLocale(null)).toBe('en');
  });

  it('picks the browser language for visitors recoup knows nothing about', () => {
    expect(localeFromAcceptLanguage('zh-CN,zh;q=0.9,en;q=0.8')).toBe('zh-CN');
    expect(localeFromAcceptLanguage('pt-BR,pt;q=0.9,zh;q=0.8,en;q=0.7')).toBe('zh-CN');
    expect(localeFromAcceptLanguage('en;q=0.5,zh-TW;q=0.9')).toBe('zh-TW');
    expect(localeFromAcceptLanguage('pt, en-US;q=0.3')).toBe('en');
    expect(localeFromAcceptLanguage('zh;q=0, en')).toBe('en');
    expect(localeFromAcceptLanguage(undefined)).toBe('en');
  });

  it('fills placeholders and leaves unknown ones visible', () => {
    expect(fillIn('Pay {amount} now {x}', { amount: '¥1.00' })).toBe('Pay ¥1.00 now {x}');
  });
});

/** What Handlebars makes of a string in a page. */
function escape(text: string): string {
  const map: Record<string, string> = {
    '&': '&amp;',
    '<': '&lt;',
    '>': '&gt;',
    '"': '&quot;',
    "'": '&#x27;',
    '`': '&#x60;',
    '=': '&#x3D;',
  };
  return text.replace(/[&<>"'`=]/g, (c) => map[c] ?? c);
}
