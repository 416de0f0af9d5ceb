import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { RecoupError, type Issue } from '../platform/errors.js';
import type { PageRenderer } from '../http/pages/page-renderer.js';
import type { PageLocale } from '../http/pages/page-strings.js';

export type { UnsubscribeStrings } from '../http/pages/page-strings.js';

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
