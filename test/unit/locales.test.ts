import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSmsKeywords, parseSmsReply, replyLocale, smsReplyText } from '../../src/compliance/sms-keywords.js';
import { loadPageStrings, localeFromAcceptLanguage, resolvePageLocale } from '../../src/http/pages/page-strings.js';
import type { MessageContext } from '../../src/messages/message-context.js';
import { loadMessagePhrases } from '../../src/messages/message-phrases.js';
import { countSegments } from '../../src/messages/segments.js';
import { TemplateRenderer, templateParts } from '../../src/messages/template-renderer.js';
import { isRecoupError, type RecoupError } from '../../src/platform/errors.js';
import { bundledLocalesDir, discoverLocales } from '../../src/platform/locale-files.js';

const shipped = discoverLocales(bundledLocalesDir);
const kinds = ['pages', 'sms', 'messages'] as const;
const renderer = TemplateRenderer.load('templates');

function read(locale: string, kind: string): unknown {
  return parse(fs.readFileSync(path.join(bundledLocalesDir, locale, `${kind}.yaml`), 'utf8'));
}

/** `reasons.network` → value, for every leaf string (array items as `qrSteps.0`). */
function leaves(value: unknown, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof value === 'string') out.set(prefix, value);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      for (const [k, v] of leaves(inner, prefix ? `${prefix}.${key}` : key)) out.set(k, v);
    }
  }
  return out;
}

function placeholders(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort();
}

/** The keys whose set of leaves may differ by language: keyword lists and plural forms. */
const variableKeys = /^(keywords\.|moreItems\.)/;

describe('locale files', () => {
  it('ships the customer languages', () => {
    expect(shipped).toEqual(['en', 'de', 'es', 'fr', 'ja', 'ko', 'zh-CN', 'zh-TW']);
  });

  it('every locale has exactly the keys of en, with the same placeholders', () => {
    const problems: string[] = [];
    for (const kind of kinds) {
      const reference = leaves(read('en', kind));
      for (const locale of shipped) {
        const own = leaves(read(locale, kind));
        for (const [key, text] of reference) {
          if (variableKeys.test(key)) continue;
          const translated = own.get(key);
          if (translated === undefined) problems.push(`${locale}/${kind}.yaml: missing ${key}`);
          else if (placeholders(translated).join() !== placeholders(text).join()) {
            problems.push(
              `${locale}/${kind}.yaml: ${key} has {${placeholders(translated)}}, en has {${placeholders(text)}}`,
            );
          }
        }
        for (const key of own.keys()) {
          if (!variableKeys.test(key) && !reference.has(key)) problems.push(`${locale}/${kind}.yaml: unknown ${key}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('every locale has every reminder template, with every part', () => {
    const missing: string[] = [];
    for (const template of renderer.templates()) {
      for (const locale of shipped) {
        if (!renderer.locales(template).includes(locale)) missing.push(`templates/${template}/${locale}`);
      }
    }
    expect(missing).toEqual([]);
    // The loader has already refused a locale folder lacking a part; this names them for a reader.
    expect(templateParts).toEqual(['sms', 'subject', 'html', 'text']);
  });

  it('every template locale has locale files, so its reasons and advice are not in English', () => {
    const orphans = renderer.templates().flatMap((t) =>
      renderer
        .locales(t)
        .filter((l) => !shipped.includes(l))
        .map((l) => `templates/${t}/${l}`),
    );
    expect(orphans).toEqual([]);
  });
});

describe('adding a language is adding files', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-locales-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  function copyLocales(name: string): string {
    const dir = path.join(root, name);
    fs.cpSync(bundledLocalesDir, dir, { recursive: true });
    return dir;
  }

  function failure(load: () => unknown): RecoupError {
    try {
      load();
    } catch (err) {
      if (isRecoupError(err, 'config')) return err;
      throw err;
    }
    throw new Error('expected a config error');
  }

  it('makes a new locale folder available to pages, SMS replies and message phrases', () => {
    const dir = copyLocales('it-added');
    fs.cpSync(path.join(dir, 'en'), path.join(dir, 'it'), { recursive: true });
    const pages = parse(fs.readFileSync(path.join(dir, 'it', 'pages.yaml'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'it', 'pages.yaml'), stringify({ ...pages, orderSummary: 'Il tuo ordine' }));
    const sms = parse(fs.readFileSync(path.join(dir, 'it', 'sms.yaml'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'it', 'sms.yaml'), stringify({ replies: sms.replies }));

    expect(loadPageStrings(dir).get('it')?.orderSummary).toBe('Il tuo ordine');
    expect(loadSmsKeywords(dir).locales).toContain('it');
    expect(loadMessagePhrases(dir).has('it')).toBe(true);
  });

  it('makes a new template locale folder available to the renderer', () => {
    const templates = path.join(root, 'templates');
    fs.cpSync('templates', templates, { recursive: true });
    fs.cpSync(path.join(templates, 'nudge', 'en'), path.join(templates, 'nudge', 'it'), { recursive: true });
    const withItalian = TemplateRenderer.load(templates);
    expect(withItalian.locales('nudge')).toContain('it');
    expect(withItalian.resolveLocale('nudge', 'it-IT')).toBe('it');
  });

  it('refuses a locale missing a key, naming the file and the key', () => {
    const dir = copyLocales('missing-key');
    const file = path.join(dir, 'zh-CN', 'pages.yaml');
    const pages = parse(fs.readFileSync(file, 'utf8')) as { reasons: Record<string, string>; qrTitle?: string };
    delete pages.reasons.network;
    delete pages.qrTitle;
    fs.writeFileSync(file, stringify(pages));
    const err = failure(() => loadPageStrings(dir));
    expect(err.issues).toEqual([
      { path: 'locales/zh-CN/pages.yaml', message: 'missing key reasons.network' },
      { path: 'locales/zh-CN/pages.yaml', message: 'missing key qrTitle' },
    ]);
    expect(err.message).toContain('locales/zh-CN/pages.yaml: missing key qrTitle');
  });

  it('refuses an unknown key, a missing file and a folder that is not a locale', () => {
    const dir = copyLocales('unknown-key');
    const file = path.join(dir, 'zh-CN', 'messages.yaml');
    fs.writeFileSync(file, stringify({ ...(parse(fs.readFileSync(file, 'utf8')) as object), reasonz: {} }));
    fs.rmSync(path.join(dir, 'en', 'sms.yaml'));
    fs.mkdirSync(path.join(dir, 'not a locale'));
    expect(failure(() => loadMessagePhrases(dir)).issues).toEqual([
      { path: 'locales/not a locale', message: '"not a locale" is not a BCP 47 locale such as en or zh-CN' },
      { path: 'locales/zh-CN/messages.yaml', message: 'unknown key reasonz' },
    ]);
    expect(failure(() => loadSmsKeywords(dir)).issues).toContainEqual({
      path: 'locales/en/sms.yaml',
      message: 'missing',
    });
  });

  it('refuses a keyword that means opt-out in one language and opt-in in another', () => {
    const dir = copyLocales('keyword-clash');
    fs.mkdirSync(path.join(dir, 'xx'));
    const en = parse(fs.readFileSync(path.join(dir, 'en', 'sms.yaml'), 'utf8')) as { replies: unknown };
    fs.writeFileSync(
      path.join(dir, 'xx', 'sms.yaml'),
      stringify({ keywords: { opt_in: ['stop'] }, replies: en.replies }),
    );
    expect(failure(() => loadSmsKeywords(dir)).issues).toEqual([
      { path: 'locales/xx/sms.yaml', message: 'keyword STOP is opt_in here but opt_out in locales/en' },
    ]);
  });
});

/** A realistic, long-ish reminder: a long shop name, a five-figure amount, a full retry link. */
function longContext(shop: string, currency: string, amount: number): MessageContext {
  return {
    shop: { name: shop },
    customer: { name: 'Alexandra Richardson' },
    failureCategory: 'insufficient_funds',
    offerMethods: ['alipay', 'wechat_pay', 'card'],
    retryUrl: 'https://pay.example-shop.com/r/Zx8kQ2mNpR4tVb7yWc1dLe',
    unsubscribeUrl: 'https://example-shop.com/u/abc?c=1&t=xyz',
    order: { id: 'ord_1042', description: 'Linen shirt, navy blue, size M', amount, currency },
  };
}

describe('SMS in every language', () => {
  /** A shop's name is usually in its customers' script. */
  const shopFor = (locale: string): string =>
    locale.startsWith('zh') || locale === 'ja'
      ? '山川茶舍景德镇陶瓷旗舰店'
      : locale === 'ko'
        ? '서울 도자기 공방 본점'
        : 'Maison Lumière Tea & Ceramics';
  /** Large amounts in the currencies a shop selling in that language charges most often. */
  const currencies: Record<string, string[]> = {
    'zh-CN': ['CNY'],
    'zh-TW': ['TWD'],
    ja: ['JPY'],
    ko: ['KRW'],
  };
  const amountsFor = (locale: string): [number, string][] =>
    [...(currencies[locale] ?? ['EUR', 'CNY']), 'USD'].map((currency) => [
      currency === 'JPY' ? 1234567 : currency === 'KRW' ? 12345678 : 1234599,
      currency,
    ]);
  const latinScript: ReadonlySet<string> = new Set(['en', 'es', 'fr', 'de']);
  const cases = renderer.templates().flatMap((t) => shipped.map((l) => [t, l] as const));

  it.each(cases)('%s in %s fits in two segments with a long shop name and amount', (template, locale) => {
    const shop = shopFor(locale);
    for (const [amount, currency] of amountsFor(locale))
      for (const failureCategory of ['insufficient_funds', 'abandoned', 'gateway_outage'] as const) {
        const ctx = { ...longContext(shop, currency, amount), failureCategory };
        const { body, segments } = renderer.renderSms(template, locale, ctx);
        expect(body).toContain(ctx.retryUrl);
        expect(segments.segments, body).toBeLessThanOrEqual(2);
        // A letter outside GSM-7 (á, ç, ê…) would make the whole SMS UCS-2: 70 characters a segment, not 160.
        if (latinScript.has(locale)) expect(segments.encoding, body).toBe('GSM-7');
      }
  });

  it.each(shipped)('the %s keyword replies name the shop and fit in two segments', (locale) => {
    for (const command of ['opt_out', 'opt_in', 'help'] as const) {
      const reply = smsReplyText(command, locale, 'Maison Lumière Tea & Ceramics');
      expect(reply).toContain('Maison Lumière Tea & Ceramics');
      expect(countSegments(reply).segments, reply).toBeLessThanOrEqual(2);
    }
  });

  it('accepts the carriers’ English keywords in every language', () => {
    for (const word of ['STOP', 'stop', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT']) {
      expect(parseSmsReply(word)?.command).toBe('opt_out');
    }
    expect(parseSmsReply('START')?.command).toBe('opt_in');
    expect(parseSmsReply('HELP')?.command).toBe('help');
  });

  it('accepts the keywords carriers define in a language, and answers in that language', () => {
    expect(parseSmsReply('baja')).toMatchObject({ command: 'opt_out', keyword: 'BAJA', locale: 'es' });
    expect(parseSmsReply('退订')).toMatchObject({ command: 'opt_out', locale: 'zh-CN' });
    expect(parseSmsReply('arret')).toMatchObject({ command: 'opt_out', keyword: 'ARRET', locale: 'fr' });
    expect(parseSmsReply('STOP')).toMatchObject({ command: 'opt_out', locale: undefined });
  });
});

describe('locale negotiation', () => {
  it.each([
    ['zh-CN', 'zh-CN'],
    ['zh', 'zh-CN'],
    ['zh-Hans', 'zh-CN'],
    ['zh_CN.UTF-8', 'zh-CN'],
    ['zh-TW', 'zh-TW'],
    ['zh-Hant', 'zh-TW'],
    ['zh-HK', 'zh-TW'],
    ['zh_TW.UTF-8', 'zh-TW'],
    ['ja', 'ja'],
    ['ja-JP', 'ja'],
    ['ko-KR', 'ko'],
    ['ko', 'ko'],
    ['es-MX', 'es'],
    ['es', 'es'],
    ['fr-CA', 'fr'],
    ['fr_FR.UTF-8', 'fr'],
    ['de-AT', 'de'],
    ['de', 'de'],
    ['en-GB', 'en'],
    ['pt-BR', 'en'],
    ['xx', 'en'],
  ])('a customer in %s reads %s', (requested, expected) => {
    expect(resolvePageLocale(requested)).toBe(expected);
    expect(replyLocale(requested)).toBe(expected);
    expect(renderer.resolveLocale('nudge', requested)).toBe(expected);
  });

  it.each([
    ['zh-CN,zh;q=0.9,en;q=0.8', 'zh-CN'],
    ['pt-BR, en;q=0.5', 'en'],
    ['ja-JP,ja;q=0.9,en;q=0.8', 'ja'],
    ['zh-Hant-TW, zh;q=0.8', 'zh-TW'],
    ['pt-BR, ja;q=0.5, en;q=0.4', 'ja'],
    ['pt-BR', 'en'],
    [undefined, 'en'],
  ])('a browser asking for %s reads %s', (header, expected) => {
    expect(localeFromAcceptLanguage(header)).toBe(expected);
  });
});
