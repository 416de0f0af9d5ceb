import { createRequire } from 'node:module';
import path from 'node:path';
import { loadTemplateBundle, type CompiledPage, type PageAsset } from '../http/pages/template-bundle.js';
import { consoleStrings, type ConsoleLocale, type FrameStrings } from './console-strings.js';

const require = createRequire(import.meta.url);

/**
 * The ops console's pages: `<dir>/<page>.hbs` for every name in `consolePageNames`, partials in
 * `<dir>/partials/` (`layout.hbs` frames every page: `{{#> layout}}…{{/layout}}`), and the only
 * assets in `<dir>/assets/` (`console.css`, `console.js`), served by recoup under
 * `/console/assets/`. Same engine and rules as the customer pages (src/http/pages/page-renderer.ts):
 * an isolated Handlebars environment, strict mode (a misspelt field throws), HTML escaping on,
 * everything compiled at start so a broken template stops the process (`config`).
 *
 * Pages get their data plus `frame`: the signed-in key, its CSRF token, the navigation and asset URLs.
 */

export const consolePageNames = [
  'cadences',
  'cadence-editor',
  'cadence-versions',
  'orders',
  'order',
  'suppressions',
  'webhooks',
  'webhook',
  'health',
  'dashboard',
  'error',
] as const;
export type ConsolePageName = (typeof consolePageNames)[number];

export const consoleAssetNames = ['console.css', 'console.js', 'dashboard.js', 'chart.umd.min.js'] as const;
export type ConsoleAssetName = (typeof consoleAssetNames)[number];

/** Where console assets are served; the route is registered by console.routes.ts. */
export const consoleAssetPrefix = '/console/assets/';

/** `/console/assets/<name>?v=<hash>`: cacheable, since the URL changes with the content. */
export type ConsoleAsset = PageAsset;

export type NavSection = keyof FrameStrings['nav'];

/** What the layout needs on every page. */
export interface ConsoleFrame {
  title: string;
  section: NavSection | null;
  /** Key name and scopes of the person signed in; null on an error page without a session. */
  who: { name: string; scopes: string } | null;
  csrf: string;
  /** The sections the person may open: the navigation shows only these. */
  sections: NavSection[];
  /** Flash line at the top (after a redirect), or null. */
  notice: { tone: 'info' | 'success' | 'warn' | 'error'; text: string } | null;
  /** The page's language (`en` unless a page is translated, like the dashboard): the frame's words follow it. */
  lang: ConsoleLocale;
}

const contentTypes: Record<ConsoleAssetName, string> = {
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'chart.umd.min.js': 'text/javascript; charset=utf-8',
};

/**
 * Assets recoup serves from its dependencies rather than from the template folder (no CDN):
 * the file, next to the package's main entry (Chart.js exports no path to its UMD build).
 */
const vendorAssets: Partial<Record<ConsoleAssetName, { entry: string; file: string }>> = {
  'chart.umd.min.js': { entry: 'chart.js', file: 'chart.umd.min.js' },
};

const navItems: Array<{ section: NavSection; href: string }> = [
  { section: 'dashboard', href: '/dashboard' },
  { section: 'cadences', href: '/console/cadences' },
  { section: 'orders', href: '/console/orders' },
  { section: 'suppressions', href: '/console/suppressions' },
  { section: 'webhooks', href: '/console/webhooks' },
  { section: 'health', href: '/console/health' },
];

type Compiled = CompiledPage;

export class ConsolePages {
  readonly #pages: Record<ConsolePageName, Compiled>;
  readonly #partials: Record<string, Compiled>;
  readonly #assets: Record<ConsoleAssetName, ConsoleAsset>;

  private constructor(
    pages: Record<ConsolePageName, Compiled>,
    partials: Record<string, Compiled>,
    assets: Record<ConsoleAssetName, ConsoleAsset>,
  ) {
    this.#pages = pages;
    this.#partials = partials;
    this.#assets = assets;
  }

  /** Reads and compiles `dir` (normally `templates/console`); RecoupError('config') lists every problem. */
  static load(dir: string): ConsolePages {
    const bundle = loadTemplateBundle(dir, {
      pageNames: consolePageNames,
      contentTypes,
      assetUrlPrefix: consoleAssetPrefix,
      what: 'Console pages',
      vendorAssets: Object.fromEntries(
        Object.entries(vendorAssets).map(([name, { entry, file }]) => [
          name,
          path.join(path.dirname(require.resolve(entry)), file),
        ]),
      ),
    });
    return new ConsolePages(bundle.pages, bundle.partials, bundle.assets);
  }

  /** The full HTML document of `page`. Throws if the data does not fit the template (strict mode). */
  render(page: ConsolePageName, frame: ConsoleFrame, data: object): string {
    const words = consoleStrings[frame.lang].frame;
    const view = {
      ...data,
      frame: {
        ...frame,
        words,
        nav: navItems
          .filter((item) => frame.sections.includes(item.section))
          .map((item) => ({ ...item, label: words.nav[item.section], current: item.section === frame.section })),
        assets: { css: this.#assets['console.css'].url, js: this.#assets['console.js'].url },
        // Page scripts beyond console.js: the dashboard's charts (Chart.js, served by recoup).
        scripts: page === 'dashboard' ? [this.#assets['chart.umd.min.js'].url, this.#assets['dashboard.js'].url] : [],
      },
    };
    return this.#pages[page](view, { partials: this.#partials });
  }

  asset(name: string): ConsoleAsset | undefined {
    return (consoleAssetNames as readonly string[]).includes(name) ? this.#assets[name as ConsoleAssetName] : undefined;
  }
}
