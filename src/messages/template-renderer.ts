import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import type { FailureCategory } from '../domain/vocabulary.js';
import { RecoupError, isRecoupError, type Issue } from '../platform/errors.js';
import { formatAmount } from '../platform/format-amount.js';
import { negotiateLocale } from '../platform/locale-files.js';
import type { MessageContext } from './message-context.js';
import { phrasesFor, type Phrases } from './message-phrases.js';
import { countSegments, type SegmentInfo } from './segments.js';

/**
 * Reminder templates: `<dir>/<template>/<locale>/{sms,subject,html,text}.hbs`, plus shared
 * partials in `<dir>/partials/*.hbs` (e.g. `layout.hbs`, used as `{{#> layout …}}…{{/layout}}`).
 * `<dir>/pages/` and `<dir>/console/` belong to the HTTP pages and are skipped.
 *
 * Everything is read and compiled once, at start; a broken template stops the process (`config`)
 * instead of failing the first customer's message. Templates run in Handlebars strict mode against a
 * view model built from the MessageContext, so a misspelt variable throws (`validation`) rather
 * than sending "Hi ,". Only the html part is HTML-escaped; sms, subject and text are plain text.
 *
 * View model (what a template may refer to):
 * - `locale`: the resolved template locale, e.g. for `<html lang>`.
 * - `shop.name`, `customer.name` (may be empty: use `{{#if customer.name}}`), `order.id`,
 *   `order.description` (may be empty), `order.amount` and `amount` (what the link charges,
 *   formatted, e.g. `¥129.00`),
 *   `order.currency`, `order.couponCode` (or null).
 * - `order.items`: the first few cart lines (`maxItemsShown`), `[{ name, quantity, amount, imageUrl }]`
 *   with `amount` formatted and `imageUrl` an https URL or null; empty when the shop sent none.
 *   `order.moreItems`: the localised "and 3 more items" for the lines left out, or null.
 * - `retryUrl`; `unsubscribeUrl` (or null; emails only in practice).
 * - `failure.category`, `failure.attempted` (false for `abandoned`), `failure.reason` and
 *   `failure.advice` (one short localised sentence each, from
 *   `locales/<tag>/messages.yaml`; an expired card is named as such), `failure.suggestOtherMethod`.
 * - `offerMethods`: `[{ code, name, title }]` localised (`name` for mid-sentence, `title` standalone);
 *   `methods`: the names as one localised "A, B or C" string ('' when none).
 * - html and text parts only: `subject`, the rendered subject line.
 */

export const templateParts = ['sms', 'subject', 'html', 'text'] as const;
export type TemplatePart = (typeof templateParts)[number];

/** Partials folder inside the templates folder. */
const partialsFolder = 'partials';
/** Folders that are not reminder templates: shared partials, and the HTTP pages (`templates/pages/`, `templates/console/`). */
const reservedFolders: ReadonlySet<string> = new Set([partialsFolder, 'pages', 'console']);

type Compiled = Handlebars.TemplateDelegate;
type LocaleTemplates = Record<TemplatePart, Compiled>;
type Partials = Record<string, Compiled>;
/** A partial compiled twice: for html callers (escaping) and for plain-text callers (no escaping). */
interface PartialSets {
  html: Partials;
  plain: Partials;
}

export interface RenderedSms {
  locale: string;
  body: string;
  segments: SegmentInfo;
}

export interface RenderedEmail {
  locale: string;
  subject: string;
  html: string;
  text: string;
}

export class TemplateRenderer {
  private readonly templatesByName: Map<string, Map<string, LocaleTemplates>>;
  private readonly partials: PartialSets;

  private constructor(templatesByName: Map<string, Map<string, LocaleTemplates>>, partials: PartialSets) {
    this.templatesByName = templatesByName;
    this.partials = partials;
  }

  /**
   * Reads and compiles every template under `dir`. Throws RecoupError('config') listing every
   * problem at once: a locale missing a part, an unknown part file, a syntax error, a reference to
   * a partial that does not exist.
   */
  static load(dir: string): TemplateRenderer {
    // An isolated environment: helpers or partials registered elsewhere on the global Handlebars
    // cannot leak into customer messages.
    const env = Handlebars.create();
    const issues: Issue[] = [];

    const entries = listDir(dir);
    if (!entries) {
      throw new RecoupError('config', `Templates folder ${dir} cannot be read`, {
        issues: [{ path: dir, message: 'folder not found or not readable' }],
      });
    }

    const partialSources = new Map<string, { file: string; ast: hbs.AST.Program }>();
    const partialDir = path.join(dir, partialsFolder);
    for (const file of listDir(partialDir)?.filter((e) => e.isFile() && e.name.endsWith('.hbs')) ?? []) {
      const rel = `${partialsFolder}/${file.name}`;
      const ast = parse(env, readFileSync(path.join(partialDir, file.name), 'utf8'), rel, issues);
      if (ast) partialSources.set(file.name.slice(0, -'.hbs'.length), { file: rel, ast });
    }
    const knownPartials = new Set(partialSources.keys());
    const partials: PartialSets = { html: {}, plain: {} };
    for (const [name, { file, ast }] of partialSources) {
      checkPartialRefs(ast, knownPartials, file, issues);
      const html = compile(env, ast, false, file, issues);
      const plain = compile(env, ast, true, file, issues);
      if (html && plain) {
        partials.html[name] = html;
        partials.plain[name] = plain;
      }
    }

    const templatesByName = new Map<string, Map<string, LocaleTemplates>>();
    for (const templateDir of entries.filter((e) => e.isDirectory() && !reservedFolders.has(e.name))) {
      const template = templateDir.name;
      if (template.startsWith('.')) continue;
      const locales = new Map<string, LocaleTemplates>();
      const localeDirs = (listDir(path.join(dir, template)) ?? []).filter(
        (e) => e.isDirectory() && !e.name.startsWith('.'),
      );
      if (localeDirs.length === 0) issues.push({ path: template, message: 'has no locale folders' });
      for (const localeDir of localeDirs) {
        const locale = localeDir.name;
        const where = `${template}/${locale}`;
        if (!isLocale(locale)) {
          issues.push({ path: where, message: `"${locale}" is not a BCP 47 locale such as en or zh-CN` });
          continue;
        }
        const files = (listDir(path.join(dir, template, locale)) ?? []).filter((e) => e.isFile()).map((e) => e.name);
        for (const file of files) {
          if (file.endsWith('.hbs') && !(templateParts as readonly string[]).includes(file.slice(0, -4))) {
            issues.push({ path: `${where}/${file}`, message: `unknown part; expected ${templateParts.join(', ')}` });
          }
        }
        const compiled: Partial<LocaleTemplates> = {};
        for (const part of templateParts) {
          const file = `${part}.hbs`;
          if (!files.includes(file)) {
            issues.push({
              path: `${where}/${file}`,
              message: `missing: every locale needs ${templateParts.join(', ')}`,
            });
            continue;
          }
          const rel = `${where}/${file}`;
          const ast = parse(env, readFileSync(path.join(dir, template, locale, file), 'utf8'), rel, issues);
          if (!ast) continue;
          checkPartialRefs(ast, knownPartials, rel, issues);
          const fn = compile(env, ast, part !== 'html', rel, issues);
          if (fn) compiled[part] = fn;
        }
        if (templateParts.every((part) => compiled[part])) locales.set(locale, compiled as LocaleTemplates);
      }
      templatesByName.set(template, locales);
    }

    if (issues.length > 0) {
      throw new RecoupError(
        'config',
        `Templates in ${dir} are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        { issues },
      );
    }
    return new TemplateRenderer(templatesByName, partials);
  }

  /** Template names found at load, sorted. */
  templates(): string[] {
    return [...this.templatesByName.keys()].sort();
  }

  has(template: string): boolean {
    return this.templatesByName.has(template);
  }

  /** Locales the template has, sorted; empty for an unknown template. */
  locales(template: string): string[] {
    return [...(this.templatesByName.get(template)?.keys() ?? [])].sort();
  }

  /**
   * Best locale the template has for the requested one: exact (zh-CN), then case-insensitive and
   * `_`/`-` variants (zh_cn), then the closest by language, script and region after likely-subtags
   * expansion (zh → zh-Hans-CN → zh-CN; en-GB → en; zh-TW → a zh-Hant locale if the template has
   * one, else zh-CN, as CLDR allows Traditional → Simplified), then `fallback` resolved the same
   * way, then the template's first locale.
   */
  resolveLocale(template: string, requested: string | undefined | null, fallback = 'en'): string {
    const available = this.locales(template);
    const first = available[0];
    if (first === undefined) throw unknownTemplate(template);
    return negotiateLocale(available, requested) ?? negotiateLocale(available, fallback) ?? first;
  }

  /** Renders the SMS part; `locale` is resolved as by resolveLocale. The body is trimmed. */
  renderSms(template: string, locale: string, context: MessageContext): RenderedSms {
    const resolved = this.resolveLocale(template, locale);
    const view = buildView(context, resolved, 'sms');
    // Intl puts no-break spaces in some amounts ("KWD 1.234"); they are not in GSM-7 and would
    // turn the whole SMS into UCS-2, more than halving what fits in a segment.
    const body = this.run(template, resolved, 'sms', view)
      .replace(/[\u00a0\u2007\u202f]/g, ' ')
      .trim();
    return { locale: resolved, body, segments: countSegments(body) };
  }

  /** Renders subject, html and text; `locale` is resolved as by resolveLocale. */
  renderEmail(template: string, locale: string, context: MessageContext): RenderedEmail {
    const resolved = this.resolveLocale(template, locale);
    const view = buildView(context, resolved, 'email');
    // One line: a subject is a header, and customer text must not be able to start a new one.
    const subject = this.run(template, resolved, 'subject', view).replace(/\s+/g, ' ').trim();
    const withSubject = { ...view, subject };
    const html = `${this.run(template, resolved, 'html', withSubject).trim()}\n`;
    const text = `${this.run(template, resolved, 'text', withSubject).trim()}\n`;
    return { locale: resolved, subject, html, text };
  }

  private run(template: string, locale: string, part: TemplatePart, view: object): string {
    const fn = this.templatesByName.get(template)?.get(locale)?.[part];
    if (!fn) throw unknownTemplate(template);
    try {
      return fn(view, { partials: part === 'html' ? this.partials.html : this.partials.plain });
    } catch (err) {
      const where = `${template}/${locale}/${part}`;
      const message = err instanceof Error ? err.message : String(err);
      throw new RecoupError('validation', `Template ${where} failed to render: ${message}`, {
        issues: [{ path: where, message }],
        cause: err,
      });
    }
  }
}

function unknownTemplate(template: string): RecoupError {
  return new RecoupError('not_found', `Unknown template "${template}"`, {
    issues: [{ path: 'template', message: `no template named "${template}"` }],
  });
}

// ---------------------------------------------------------------------------------------------
// Loading

function listDir(dir: string) {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
}

function isLocale(tag: string): boolean {
  try {
    return Intl.getCanonicalLocales(tag).length === 1;
  } catch {
    return false;
  }
}

function parse(env: typeof Handlebars, source: string, file: string, issues: Issue[]): hbs.AST.Program | undefined {
  try {
    return env.parse(source);
  } catch (err) {
    issues.push({ path: file, message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}

/** The compiler stages Handlebars exposes for extension; `compile()` alone would defer them to first use. */
interface CompilerStages {
  Compiler: new () => { compile(ast: hbs.AST.Program, options: object): unknown };
  JavaScriptCompiler: new () => {
    compile(environment: unknown, options: object, context: undefined, asObject: true): TemplateSpecification;
  };
}

function compile(
  env: typeof Handlebars,
  ast: hbs.AST.Program,
  plainText: boolean,
  file: string,
  issues: Issue[],
): Compiled | undefined {
  // What Handlebars.compile does on first render, done now so every template is ready at start.
  const options = { strict: true, noEscape: plainText, data: true };
  const stages = env as unknown as CompilerStages;
  try {
    const environment = new stages.Compiler().compile(ast, options);
    return env.template(new stages.JavaScriptCompiler().compile(environment, options, undefined, true));
  } catch (err) {
    issues.push({ path: file, message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}

/** Reports `{{> name}}` references to partials that neither the partials folder nor the template defines. */
function checkPartialRefs(ast: hbs.AST.Program, known: Set<string>, file: string, issues: Issue[]): void {
  const collector = new PartialRefs();
  collector.accept(ast);
  for (const name of collector.used) {
    if (!known.has(name) && !collector.inline.has(name)) {
      issues.push({ path: file, message: `uses partial "${name}", which is not in ${partialsFolder}/` });
    }
  }
}

class PartialRefs extends Handlebars.Visitor {
  readonly used = new Set<string>();
  readonly inline = new Set<string>();

  override PartialStatement(partial: hbs.AST.PartialStatement): void {
    this.note(partial.name);
    super.PartialStatement(partial);
  }

  override PartialBlockStatement(partial: hbs.AST.PartialBlockStatement): void {
    this.note(partial.name);
    super.PartialBlockStatement(partial);
  }

  override DecoratorBlock(block: hbs.AST.DecoratorBlock): void {
    const name = block.params[0];
    if (block.path.type === 'PathExpression' && (block.path as hbs.AST.PathExpression).original === 'inline') {
      if (name?.type === 'StringLiteral') this.inline.add((name as hbs.AST.StringLiteral).value);
    }
    super.DecoratorBlock(block);
  }

  private note(name: hbs.AST.PathExpression | hbs.AST.SubExpression): void {
    // Dynamic partials `{{> (expr)}}` cannot be checked ahead of time; @partial-block is built in.
    if (name.type === 'PathExpression' && !name.original.startsWith('@')) this.used.add(name.original);
  }
}

// ---------------------------------------------------------------------------------------------
// View model

/** Cart lines an email lists before summing up the rest: a long cart must not push the button out of sight. */
export const maxItemsShown = 5;

/** Categories where the customer is better served by another method than by the same one again. */
const suggestOtherMethod: ReadonlySet<FailureCategory> = new Set([
  'insufficient_funds',
  'card_data',
  'account_frozen',
  'method_unsupported',
]);

/** Collapses whitespace (including newlines) in customer- and shop-supplied text. */
function oneLine(value: string): string {
  return value.replace(/\s+/g, ' ').trim();
}

function checkUrl(value: string, field: string): string {
  if (!URL.canParse(value) || !['https:', 'http:'].includes(new URL(value).protocol)) {
    throw new RecoupError('validation', `${field} is not an http(s) URL`, {
      issues: [{ path: field, message: 'must be an absolute http(s) URL' }],
    });
  }
  return value;
}

/**
 * The amount as customers read it. In an SMS, a symbol outside GSM-7 (₹, ₩, ₫, ₪) would make the
 * whole message UCS-2, so the ISO code is used instead (`INR 1,234.00`) when that keeps it GSM-7.
 */
function displayAmount(order: MessageContext['order'], locale: string, channel: 'sms' | 'email'): string {
  const amount = formatAmount(order.amount, order.currency, locale);
  if (channel === 'email' || isGsm7(amount)) return amount;
  const coded = formatAmount(order.amount, order.currency, locale, { currencyDisplay: 'code' });
  return isGsm7(coded) ? coded : amount;
}

/**
 * The cart lines an email lists. A line's image is shown only from https (what the event schema
 * accepts; anything else, e.g. from rows stored before that check, is left out rather than failing
 * the message).
 */
function cartLines(order: MessageContext['order'], locale: string, phrases: Phrases) {
  const items = order.items ?? [];
  const shown = items.slice(0, maxItemsShown).map((item) => ({
    name: oneLine(item.name),
    quantity: item.quantity,
    amount: formatAmount(item.amount, order.currency, locale),
    imageUrl: item.image_url && isHttps(item.image_url) ? item.image_url : null,
  }));
  const left = items.length - shown.length;
  return { items: shown, moreItems: left > 0 ? phrases.moreItems(left) : null };
}

function isHttps(value: string): boolean {
  return URL.canParse(value) && new URL(value).protocol === 'https:';
}

function isGsm7(text: string): boolean {
  return countSegments(text.replace(/[\u00a0\u2007\u202f]/g, ' ')).encoding === 'GSM-7';
}

function buildView(context: MessageContext, locale: string, channel: 'sms' | 'email') {
  const phrases = phrasesFor(locale);
  const shopName = oneLine(context.shop.name);
  if (!shopName) {
    throw new RecoupError('validation', 'A message needs the shop name', {
      issues: [{ path: 'shop.name', message: 'must not be empty: every message identifies the shop' }],
    });
  }
  let amount: string;
  let cart: ReturnType<typeof cartLines>;
  try {
    amount = displayAmount(context.order, locale, channel);
    cart = cartLines(context.order, locale, phrases);
  } catch (err) {
    if (!isRecoupError(err)) throw err;
    throw new RecoupError(err.code, err.message, {
      issues: err.issues.map((i) => ({ ...i, path: `order.${i.path}` })),
      cause: err,
    });
  }
  const offerMethods = context.offerMethods.map((code) => ({ code, ...phrases.methods[code] }));
  const category = context.failureCategory;
  const detail = context.failureDetail ? phrases.details[context.failureDetail] : undefined;
  const couponCode = context.order.couponCode ? oneLine(context.order.couponCode) : '';
  return {
    locale,
    shop: { name: shopName },
    customer: { name: oneLine(context.customer.name) },
    order: {
      id: context.order.id,
      description: oneLine(context.order.description),
      amount,
      currency: context.order.currency,
      couponCode: couponCode || null,
      items: cart.items,
      moreItems: cart.moreItems,
    },
    amount,
    retryUrl: checkUrl(context.retryUrl, 'retryUrl'),
    unsubscribeUrl: context.unsubscribeUrl ? checkUrl(context.unsubscribeUrl, 'unsubscribeUrl') : null,
    failureCategory: category,
    failure: {
      category,
      attempted: category !== 'abandoned',
      reason: detail
        ? detail.reason
        : category === 'coupon_invalid' && couponCode
          ? phrases.couponReason(couponCode)
          : phrases.reasons[category],
      advice: detail ? detail.advice : phrases.advice[category],
      suggestOtherMethod: detail !== undefined || suggestOtherMethod.has(category),
    },
    offerMethods,
    methods:
      offerMethods.length > 0
        ? new Intl.ListFormat(locale, { type: 'disjunction' }).format(offerMethods.map((m) => m.name))
        : '',
  };
}
