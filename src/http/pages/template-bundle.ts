import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { RecoupError, type Issue } from '../../platform/errors.js';

export type CompiledPage = Handlebars.TemplateDelegate;

/** A static file served next to the pages, with a content-hashed URL for long caching. */
export interface PageAsset {
  body: Buffer;
  contentType: string;
  /** Strong ETag of the content. */
  etag: string;
  /** The URL pages use: `<assetUrlPrefix><name>?v=<hash>`. */
  url: string;
}

export interface TemplateBundle<P extends string, A extends string> {
  pages: Record<P, CompiledPage>;
  partials: Record<string, CompiledPage>;
  assets: Record<A, PageAsset>;
}

export interface TemplateBundleSpec<P extends string, A extends string> {
  pageNames: readonly P[];
  /** Asset file names under `<dir>/assets/`, with their content types. */
  contentTypes: Record<A, string>;
  assetUrlPrefix: string;
  /** Named in the error, e.g. `Pages` or `Console pages`. */
  what: string;
  /** Assets read from these absolute paths instead of `<dir>/assets/` (files of dependencies). */
  vendorAssets?: Partial<Record<A, string>>;
}

/**
 * Reads and compiles a folder of server-rendered pages (the customer pages in
 * `templates/pages`, the console in `templates/console`): `partials/*.hbs` (a `layout` is
 * required), one `<page>.hbs` per page, and `assets/`. Strict Handlebars in an isolated
 * environment, compiled now so a syntax error fails the start, not the first request.
 * Throws RecoupError('config') listing every problem at once.
 */
export function loadTemplateBundle<P extends string, A extends string>(
  dir: string,
  spec: TemplateBundleSpec<P, A>,
): TemplateBundle<P, A> {
  // Isolated: helpers or partials registered on the global Handlebars cannot reach these pages.
  const env = Handlebars.create();
  const issues: Issue[] = [];

  const partials: Record<string, CompiledPage> = {};
  const partialDir = path.join(dir, 'partials');
  for (const file of listFiles(partialDir).filter((f) => f.endsWith('.hbs'))) {
    const compiled = compileFile(env, path.join(partialDir, file), `partials/${file}`, issues);
    if (compiled) partials[file.slice(0, -'.hbs'.length)] = compiled;
  }
  if (!partials.layout && !issues.some((i) => i.path === 'partials/layout.hbs')) {
    issues.push({ path: 'partials/layout.hbs', message: 'missing: every page is rendered inside it' });
  }

  const pages: Partial<Record<P, CompiledPage>> = {};
  for (const page of spec.pageNames) {
    const compiled = compileFile(env, path.join(dir, `${page}.hbs`), `${page}.hbs`, issues);
    if (compiled) pages[page] = compiled;
  }

  const assets: Partial<Record<A, PageAsset>> = {};
  for (const name of Object.keys(spec.contentTypes) as A[]) {
    let body: Buffer;
    try {
      body = readFileSync(spec.vendorAssets?.[name] ?? path.join(dir, 'assets', name));
    } catch {
      issues.push({ path: `assets/${name}`, message: 'missing or not readable' });
      continue;
    }
    const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
    assets[name] = {
      body,
      contentType: spec.contentTypes[name],
      etag: `"${hash}"`,
      url: `${spec.assetUrlPrefix}${name}?v=${hash}`,
    };
  }

  if (issues.length > 0) {
    throw new RecoupError(
      'config',
      `${spec.what} in ${dir} are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      { issues },
    );
  }
  return { pages: pages as Record<P, CompiledPage>, partials, assets: assets as Record<A, PageAsset> };
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

function compileFile(env: typeof Handlebars, file: string, rel: string, issues: Issue[]): CompiledPage | undefined {
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
