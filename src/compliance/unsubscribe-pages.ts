import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { RecoupError, type Issue } from '../platform/errors.js';
import type { PageRenderer } from '../http/pages/page-renderer.js';
import type { PageLocale } from '../http/pages/page-strings.js';

/**
 * The email unsubscribe pages: `<dir>/unsubscribe-confirm.hbs` (one button, a POST form) and
 * `<dir>/unsubscribe-done.hbs` (a message), drawn in the retry pages' frame (`partials/layout.hbs`)
 * with their stylesheet, whose hashed URL comes from the PageRenderer that serves it. Same rules as
 * the retry pages: compiled at start, strict mode, HTML escaping on.
 */

export const unsubscribePageNames = ['unsubscribe-confirm', 'unsubscribe-done'] as const;
export type UnsubscribePageName = (typeof unsubscribePageNames)[number];

interface CommonData {
  title: string;
  shopName: string;
  tone: 'info' | 'success' | 'warn' | 'error';
  paragraphs: string[];
}

export interface UnsubscribePageData {
  'unsubscribe-confirm': CommonData & { formAction: string; csrf: string; button: string; hint: string };
  'unsubscribe-done': CommonData;
}

type Compiled = Handlebars.TemplateDelegate;

export class UnsubscribePages {
  readonly #pages: Record<UnsubscribePageName, Compiled>;
  readonly #partials: Record<string, Compiled>;
  readonly #assets: { css: string; js: string };

  private constructor(
    pages: Record<UnsubscribePageName, Compiled>,
    partials: Record<string, Compiled>,
    assets: { css: string; js: string },
  ) {
    this.#pages = pages;
    this.#partials = partials;
    this.#assets = assets;
  }

  /** Reads and compiles the pages in `dir` (normally `templates/pages`); throws `config` listing every problem. */
  static load(dir: string, renderer: PageRenderer): UnsubscribePages {
    const env = Handlebars.create();
    const issues: Issue[] = [];
    const compile = (file: string, rel: string): Compiled | undefined => {
      try {
        const source = readFileSync(file, 'utf8');
        env.parse(source); // syntax errors now, not at the first customer's visit
        return env.compile(source, { strict: true, noEscape: false });
      } catch (err) {
        issues.push({ path: rel, message: err instanceof Error ? err.message : String(err) });
        return undefined;
      }
    };
    const partials: Record<string, Compiled> = {};
    const partialDir = path.join(dir, 'partials');
    let partialFiles: string[] = [];
    try {
      partialFiles = readdirSync(partialDir).filter((f) => f.endsWith('.hbs'));
    } catch {
      issues.push({ path: 'partials/', message: 'missing: the pages are drawn inside partials/layout.hbs' });
    }
    for (const file of partialFiles) {
      const compiled = compile(path.join(partialDir, file), `partials/${file}`);
      if (compiled) partials[file.slice(0, -'.hbs'.length)] = compiled;
    }
    const pages: Partial<Record<UnsubscribePageName, Compiled>> = {};
    for (const name of unsubscribePageNames) {
      const compiled = compile(path.join(dir, `${name}.hbs`), `${name}.hbs`);
      if (compiled) pages[name] = compiled;
    }
    const css = renderer.asset('recoup.css')?.url;
    const js = renderer.asset('retry.js')?.url;
    if (!css || !js) issues.push({ path: 'assets/', message: 'the page renderer has no recoup.css / retry.js' });
    if (issues.length > 0 || !css || !js) {
      throw new RecoupError(
        'config',
        `Unsubscribe pages in ${dir} are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        { issues },
      );
    }
    return new UnsubscribePages(pages as Record<UnsubscribePageName, Compiled>, partials, { css, js });
  }

  render<P extends UnsubscribePageName>(page: P, locale: PageLocale, data: UnsubscribePageData[P]): string {
    const view = {
      ...data,
      lang: locale,
      assets: this.#assets,
      layout: { script: false, stripe: false, refreshSeconds: null },
    };
    return this.#pages[page](view, { partials: this.#partials });
  }
}

/** The pages' wording; `{shop}` and `{address}` are filled in before rendering (and escaped there). */
export interface UnsubscribeStrings {
  confirmTitle: string;
  confirmText: string;
  confirmButton: string;
  confirmHint: string;
  retryText: string;
  doneTitle: string;
  doneText: string;
  alreadyTitle: string;
  alreadyText: string;
  invalidTitle: string;
  invalidText: string;
  errorTitle: string;
  errorText: string;
  /** The `text/plain` answer to a one-click POST. */
  oneClick: string;
}

export const unsubscribeStrings: Record<PageLocale, UnsubscribeStrings> = {
  en: {
    confirmTitle: 'Stop payment reminders?',
    confirmText: '{shop} will stop emailing you reminders about unpaid orders at {address}.',
    confirmButton: 'Unsubscribe',
    confirmHint: 'Nothing else changes: you can still pay an open order with the link in an earlier email.',
    retryText: 'Please press the button once more to confirm.',
    doneTitle: 'You are unsubscribed',
    doneText: '{shop} will no longer email you payment reminders at {address}.',
    alreadyTitle: 'You are already unsubscribed',
    alreadyText: '{shop} no longer emails you payment reminders at this address.',
    invalidTitle: 'This link is not valid',
    invalidText: 'Please check that you opened the whole link from the email.',
    errorTitle: 'Something went wrong',
    errorText: 'Please try again in a minute. Reference: {reference}',
    oneClick: 'Unsubscribed.',
  },
  'zh-CN': {
    confirmTitle: '不再接收付款提醒？',
    confirmText: '{shop}将不再向 {address} 发送未付款订单的提醒邮件。',
    confirmButton: '退订',
    confirmHint: '其他不受影响：您仍可通过之前邮件中的链接支付未完成的订单。',
    retryText: '请再按一次按钮确认。',
    doneTitle: '您已退订',
    doneText: '{shop}将不再向 {address} 发送付款提醒邮件。',
    alreadyTitle: '您已经退订',
    alreadyText: '{shop}已不再向此地址发送付款提醒邮件。',
    invalidTitle: '此链接无效',
    invalidText: '请确认您打开的是邮件中的完整链接。',
    errorTitle: '出了点问题',
    errorText: '请稍后再试。参考编号：{reference}',
    oneClick: '已退订。',
  },
};
