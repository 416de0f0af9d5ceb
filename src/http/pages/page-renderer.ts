import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import type { PaymentMethod } from '../../domain.js';
import { RecoupError, type Issue } from '../../errors.js';
import { pageStrings, type PageLocale } from './page-strings.js';

/**
 * The retry pages: `<dir>/<page>.hbs` for every page in `pageNames`, shared partials in
 * `<dir>/partials/` (`layout.hbs` is required: pages use it as `{{#> layout}}…{{/layout}}`),
 * and the pages' only assets in `<dir>/assets/` (`recoup.css`, `retry.js`), served by recoup.
 *
 * Everything is read and compiled at start; a broken page stops the process (`config`) rather
 * than failing the first customer. Templates run in Handlebars strict mode (a misspelt field
 * throws) with HTML escaping on. A page sees its data (`PageData[page]`) plus:
 * - `lang`: the page locale (`en`, `zh-CN`) for `<html lang>`;
 * - `t`: the locale's strings (see page-strings.ts), for fixed labels;
 * - `assets.css`, `assets.js`: asset URLs carrying a content hash, so they can be cached;
 * - `layout.script` (the page loads retry.js), `layout.stripe` (and Stripe.js),
 *   `layout.refreshSeconds` (no-JS fallback: reload every n seconds, or null).
 */

export const pageNames = ['retry', 'message', 'qr', 'pending', 'success', 'card'] as const;
export type PageName = (typeof pageNames)[number];

/** A short message above a form: why the customer is seeing it again. */
export interface Notice {
  tone: 'info' | 'success' | 'warn' | 'error';
  text: string;
}

interface CommonData {
  /** The page's `<title>` and `<h1>`. */
  title: string;
  shopName: string;
}

/** The confirm-your-details form; also the "payment failed, try another method" page. */
export interface RetryPageData extends CommonData {
  notice: Notice | null;
  /** A line under the heading (e.g. "Nothing was charged…" after a decline). */
  intro: string | null;
  description: string;
  /** The order amount as the shop sent it, shown only when the total differs from it. */
  orderAmount: string | null;
  coupon: Notice | null;
  /** The incentive discount, formatted with a minus sign, or null. */
  incentive: string | null;
  total: string;
  /** The last failure in customer language, or null. */
  failureReason: string | null;
  formAction: string;
  csrf: string;
  form: { email: string; phone: string };
  errors: { email: string | null; phone: string | null; method: string | null };
  hasErrors: boolean;
  methods: Array<{ code: PaymentMethod; title: string; checked: boolean }>;
  payLabel: string;
}

/** Any page that only says something: expired, invalid, paid, cancelled, errors, fresh link sent. */
export interface MessagePageData extends CommonData {
  tone: Notice['tone'];
  paragraphs: string[];
  /** A one-button POST form (e.g. "send me a new link"). */
  action: { formAction: string; csrf: string; label: string; hint: string } | null;
  link: { href: string; label: string } | null;
}

/** Where the polling script asks, and where it goes once the attempt is decided. */
export interface PollData {
  statusUrl: string;
  doneUrl: string;
  failedUrl: string;
}

export interface QrPageData extends CommonData {
  notice: Notice | null;
  description: string;
  amount: string;
  /** `data:` URL of the QR code image, generated for this request. */
  qrImage: string;
  qrAlt: string;
  steps: string[];
  phoneHint: string;
  poll: PollData;
  checkUrl: string;
  otherMethodUrl: string;
}

export interface PendingPageData extends CommonData {
  text: string;
  amount: string | null;
  poll: PollData;
  checkUrl: string;
}

export interface SuccessPageData extends CommonData {
  text: string;
  note: string;
}

/** The card page for gateways that collect card details in the page (Stripe.js). */
export interface CardPageData extends CommonData {
  intro: string;
  publishableKey: string;
  clientSecret: string;
  returnUrl: string;
  otherMethodUrl: string;
}

export interface PageData {
  retry: RetryPageData;
  message: MessagePageData;
  qr: QrPageData;
  pending: PendingPageData;
  success: SuccessPageData;
  card: CardPageData;
}

export const assetNames = ['recoup.css', 'retry.js'] as const;
export type AssetName = (typeof assetNames)[number];

export interface PageAsset {
  body: Buffer;
  contentType: string;
  /** Strong ETag of the content. */
  etag: string;
  /** The URL pages use: `/assets/<name>?v=<hash>`. */
  url: string;
}

const contentTypes: Record<AssetName, string> = {
  'recoup.css': 'text/css; charset=utf-8',
  'retry.js': 'text/javascript; charset=utf-8',
};

const scriptedPages: ReadonlySet<PageName> = new Set(['qr', 'pending', 'card']);

type Compiled = Handlebars.TemplateDelegate;

export class PageRenderer {
  readonly #pages: Record<PageName, Compiled>;
  readonly #partials: Record<string, Compiled>;
  readonly #assets: Record<AssetName, PageAsset>;

  private constructor(
    pages: Record<PageName, Compiled>,
    partials: Record<string, Compiled>,
    assets: Record<AssetName, PageAsset>,
  ) {
    this.#pages = pages;
    this.#partials = partials;
    this.#assets = assets;
  }

  /**
   * Reads and compiles the pages in `dir` (normally `templates/pages`). Throws
   * RecoupError('config') listing every problem at once.
   */
  static load(dir: string): PageRenderer {
    // Isolated: helpers or partials registered on the global Handlebars cannot reach these pages.
    const env = Handlebars.create();
    const issues: Issue[] = [];

    const partials: Record<string, Compiled> = {};
    const partialDir = path.join(dir, 'partials');
    for (const file of listFiles(partialDir).filter((f) => f.endsWith('.hbs'))) {
      const compiled = compileFile(env, path.join(partialDir, file), `partials/${file}`, issues);
      if (compiled) partials[file.slice(0, -'.hbs'.length)] = compiled;
    }
    if (!partials.layout && !issues.some((i) => i.path === 'partials/layout.hbs')) {
      issues.push({ path: 'partials/layout.hbs', message: 'missing: every page is rendered inside it' });
    }

    const pages: Partial<Record<PageName, Compiled>> = {};
    for (const page of pageNames) {
      const compiled = compileFile(env, path.join(dir, `${page}.hbs`), `${page}.hbs`, issues);
      if (compiled) pages[page] = compiled;
    }

    const assets: Partial<Record<AssetName, PageAsset>> = {};
    for (const name of assetNames) {
      const file = path.join(dir, 'assets', name);
      let body: Buffer;
      try {
        body = readFileSync(file);
      } catch {
        issues.push({ path: `assets/${name}`, message: 'missing or not readable' });
        continue;
      }
      const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
      assets[name] = { body, contentType: contentTypes[name], etag: `"${hash}"`, url: `/assets/${name}?v=${hash}` };
    }

    if (issues.length > 0) {
      throw new RecoupError(
        'config',
        `Pages in ${dir} are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        { issues },
      );
    }
    return new PageRenderer(pages as Record<PageName, Compiled>, partials, assets as Record<AssetName, PageAsset>);
  }

  /** The full HTML document of `page` in `locale`. Throws if the data does not fit the template. */
  render<P extends PageName>(page: P, locale: PageLocale, data: PageData[P]): string {
    const view = {
      ...data,
      lang: locale,
      t: pageStrings[locale],
      assets: { css: this.#assets['recoup.css'].url, js: this.#assets['retry.js'].url },
      layout: {
        script: scriptedPages.has(page),
        stripe: page === 'card',
        // Without JavaScript the "confirming" page still moves on, by reloading itself.
        refreshSeconds: page === 'pending' ? 5 : null,
      },
    };
    return this.#pages[page](view, { partials: this.#partials });
  }

  /** A page asset by file name, or undefined. */
  asset(name: string): PageAsset | undefined {
    return (assetNames as readonly string[]).includes(name) ? this.#assets[name as AssetName] : undefined;
  }
}

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** The compiler stages Handlebars exposes; `compile()` alone would defer errors to the first render. */
interface CompilerStages {
  Compiler: new () => { compile(ast: hbs.AST.Program, options: object): unknown };
  JavaScriptCompiler: new () => {
    compile(environment: unknown, options: object, context: undefined, asObject: true): TemplateSpecification;
  };
}

function compileFile(env: typeof Handlebars, file: string, rel: string, issues: Issue[]): Compiled | undefined {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    issues.push({ path: rel, message: 'missing or not readable' });
    return undefined;
  }
  const options = { strict: true, noEscape: false, data: true };
  const stages = env as unknown as CompilerStages;
  try {
    const ast = env.parse(source);
    const environment = new stages.Compiler().compile(ast, options);
    return env.template(new stages.JavaScriptCompiler().compile(environment, options, undefined, true));
  } catch (err) {
    issues.push({ path: rel, message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}
