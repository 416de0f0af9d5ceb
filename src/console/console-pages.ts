import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { RecoupError, type Issue } from '../errors.js';

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
  'health',
  'error',
] as const;
export type ConsolePageName = (typeof consolePageNames)[number];

export const consoleAssetNames = ['console.css', 'console.js'] as const;
export type ConsoleAssetName = (typeof consoleAssetNames)[number];

/** Where console assets are served; the route is registered by console.routes.ts. */
export const consoleAssetPrefix = '/console/assets/';

export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
  etag: string;
  /** `/console/assets/<name>?v=<hash>`: cacheable, since the URL changes with the content. */
  url: string;
}

export type NavSection = 'cadences' | 'orders' | 'suppressions' | 'health';

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
}

const contentTypes: Record<ConsoleAssetName, string> = {
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
};

const navItems: Array<{ section: NavSection; label: string; href: string }> = [
  { section: 'cadences', label: 'Cadences', href: '/console/cadences' },
  { section: 'orders', label: 'Orders', href: '/console/orders' },
  { section: 'suppressions', label: 'Suppressions', href: '/console/suppressions' },
  { section: 'health', label: 'Health', href: '/console/health' },
];

type Compiled = Handlebars.TemplateDelegate;

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
    const env = Handlebars.create();
    const issues: Issue[] = [];

    const partials: Record<string, Compiled> = {};
    const partialDir = path.join(dir, 'partials');
    for (const file of listFiles(partialDir).filter((f) => f.endsWith('.hbs'))) {
      const compiled = compileFile(env, path.join(partialDir, file), `partials/${file}`, issues);
      if (compiled) partials[file.slice(0, -'.hbs'.length)] = compiled;
    }
    if (!partials.layout && !issues.some((i) => i.path === 'partials/layout.hbs')) {
      issues.push({ path: 'partials/layout.hbs', message: 'missing: every console page is rendered inside it' });
    }

    const pages: Partial<Record<ConsolePageName, Compiled>> = {};
    for (const page of consolePageNames) {
      const compiled = compileFile(env, path.join(dir, `${page}.hbs`), `${page}.hbs`, issues);
      if (compiled) pages[page] = compiled;
    }

    const assets: Partial<Record<ConsoleAssetName, ConsoleAsset>> = {};
    for (const name of consoleAssetNames) {
      let body: Buffer;
      try {
        body = readFileSync(path.join(dir, 'assets', name));
      } catch {
        issues.push({ path: `assets/${name}`, message: 'missing or not readable' });
        continue;
      }
      const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
      assets[name] = {
        body,
        contentType: contentTypes[name],
        etag: `"${hash}"`,
        url: `${consoleAssetPrefix}${name}?v=${hash}`,
      };
    }

    if (issues.length > 0) {
      throw new RecoupError(
        'config',
        `Console pages in ${dir} are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        { issues },
      );
    }
    return new ConsolePages(
      pages as Record<ConsolePageName, Compiled>,
      partials,
      assets as Record<ConsoleAssetName, ConsoleAsset>,
    );
  }

  /** The full HTML document of `page`. Throws if the data does not fit the template (strict mode). */
  render(page: ConsolePageName, frame: ConsoleFrame, data: object): string {
    const view = {
      ...data,
      frame: {
        ...frame,
        nav: navItems
          .filter((item) => frame.sections.includes(item.section))
          .map((item) => ({ ...item, current: item.section === frame.section })),
        assets: { css: this.#assets['console.css'].url, js: this.#assets['console.js'].url },
      },
    };
    return this.#pages[page](view, { partials: this.#partials });
  }

  asset(name: string): ConsoleAsset | undefined {
    return (consoleAssetNames as readonly string[]).includes(name) ? this.#assets[name as ConsoleAssetName] : undefined;
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

function compileFile(env: typeof Handlebars, file: string, rel: string, issues: Issue[]): Compiled | undefined {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    issues.push({ path: rel, message: 'missing or not readable' });
    return undefined;
  }
  try {
    // Parse and precompile now: `compile()` alone would defer syntax errors to the first render.
    env.precompile(source, { strict: true });
    return env.compile(source, { strict: true, noEscape: false });
  } catch (err) {
    issues.push({ path: rel, message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}
