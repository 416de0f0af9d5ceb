import type { PaymentMethod } from '../../domain/vocabulary.js';
import { pageStringsFor, type PageLocale } from './page-strings.js';
import { loadTemplateBundle, type CompiledPage, type PageAsset } from './template-bundle.js';

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

export const pageNames = ['retry', 'continue', 'message', 'qr', 'pending', 'success', 'card'] as const;
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
  /** The cart lines: `amount` formatted, `imageUrl` an https URL the page's CSP allows, or null. */
  items: Array<{ name: string; quantity: number; amount: string; imageUrl: string | null }>;
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
  /** Where the page's script reports that a person opened it (the click); the form's POST counts too. */
  clickUrl: string;
  form: { email: string; phone: string };
  /** Under the phone field: the format, with an example from the customer's country. */
  phoneHint: string;
  errors: { email: string | null; phone: string | null; method: string | null };
  hasErrors: boolean;
  methods: Array<{ code: PaymentMethod; title: string; checked: boolean }>;
  payLabel: string;
}

/**
 * The page of a link whose order is paid on the shop's own page: its script reports the click
 * and moves on to `continueUrl`; without JavaScript, the button posts to `formAction`, which
 * counts the click and redirects there.
 */
export interface ContinuePageData extends CommonData {
  text: string;
  formAction: string;
  csrf: string;
  label: string;
  clickUrl: string;
  continueUrl: string;
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
  /** What to do without JavaScript, where nothing polls: press the check button. */
  noScriptHint: string;
  checkUrl: string;
  /** A test gateway's stand-in for scanning the code (the sandbox), or null. */
  simulateUrl: string | null;
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
  /** The shop's order reference, or null. */
  reference: string | null;
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
  continue: ContinuePageData;
  message: MessagePageData;
  qr: QrPageData;
  pending: PendingPageData;
  success: SuccessPageData;
  card: CardPageData;
}

export const assetNames = ['recoup.css', 'retry.js'] as const;
export type AssetName = (typeof assetNames)[number];

export type { PageAsset };

const contentTypes: Record<AssetName, string> = {
  'recoup.css': 'text/css; charset=utf-8',
  'retry.js': 'text/javascript; charset=utf-8',
};

const scriptedPages: ReadonlySet<PageName> = new Set(['retry', 'continue', 'qr', 'pending', 'card']);

type Compiled = CompiledPage;

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
    const bundle = loadTemplateBundle(dir, { pageNames, contentTypes, assetUrlPrefix: '/assets/', what: 'Pages' });
    return new PageRenderer(bundle.pages, bundle.partials, bundle.assets);
  }

  /** The full HTML document of `page` in `locale`. Throws if the data does not fit the template. */
  render<P extends PageName>(page: P, locale: PageLocale, data: PageData[P]): string {
    const view = {
      ...data,
      lang: locale,
      t: pageStringsFor(locale),
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
