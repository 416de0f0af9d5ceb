import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { z } from 'zod';
import { RecoupError, type Issue } from './errors.js';

/**
 * The languages customers are answered in are data: `locales/<tag>/<kind>.yaml` (pages.yaml,
 * sms.yaml, messages.yaml), plus `templates/<template>/<tag>/` for reminders. A language is
 * supported when its folder is there; nothing in code lists them.
 *
 * `en` is the reference every other locale is checked against: the same keys, no others. A file
 * that is missing, unreadable or off-shape stops the start with every problem named at once
 * (`locales/ja/pages.yaml: missing key reasons.network`).
 */

/** The reference locale, and the last resort when nothing else matches. */
export const referenceLocale = 'en';

/** `locales/` beside the code, in src/ and dist/ alike. */
export const bundledLocalesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../locales');

/** Locale folders in `dir`: the reference first, then the others sorted. */
export function discoverLocales(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    throw new RecoupError('config', `Locales folder ${dir} cannot be read`, {
      issues: [{ path: dir, message: 'folder not found or not readable' }],
    });
  }
  const tags = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  return tags.sort((a, b) => Number(b === referenceLocale) - Number(a === referenceLocale) || a.localeCompare(b));
}

/**
 * Reads `<dir>/<tag>/<kind>.yaml` for every locale folder and checks each against `schema`
 * (strict objects: an unknown key is an error, so a misspelt one is not silently ignored).
 * Throws RecoupError('config') naming each file and key at fault.
 */
export function loadLocaleFiles<T>(dir: string, kind: string, schema: z.ZodType<T>): Map<string, T> {
  const issues: Issue[] = [];
  const loaded = new Map<string, T>();
  const tags = discoverLocales(dir);
  if (!tags.includes(referenceLocale)) {
    issues.push({ path: `locales/${referenceLocale}`, message: 'missing: every other locale is checked against it' });
  }
  for (const tag of tags) {
    const where = `locales/${tag}/${kind}.yaml`;
    if (!isLocaleTag(tag)) {
      issues.push({ path: `locales/${tag}`, message: `"${tag}" is not a BCP 47 locale such as en or zh-CN` });
      continue;
    }
    let data: unknown;
    try {
      data = parse(readFileSync(path.join(dir, tag, `${kind}.yaml`), 'utf8'));
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      issues.push({ path: where, message: missing ? 'missing' : `unreadable: ${(err as Error).message}` });
      continue;
    }
    const result = schema.safeParse(data);
    if (result.success) {
      loaded.set(tag, result.data);
      continue;
    }
    for (const issue of result.error.issues) issues.push(describe(where, data, issue));
  }
  if (issues.length > 0) {
    throw new RecoupError(
      'config',
      `Locale files are invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      {
        issues,
      },
    );
  }
  return loaded;
}

function describe(where: string, data: unknown, issue: z.core.$ZodIssue): Issue {
  const key = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const prefix = key ? `${key}.` : '';
    return { path: where, message: `unknown key ${issue.keys.map((k) => prefix + k).join(', ')}` };
  }
  if (issue.code === 'invalid_type' && valueAt(data, issue.path) === undefined) {
    return { path: where, message: key ? `missing key ${key}` : 'empty file' };
  }
  return { path: where, message: `${key || 'file'}: ${issue.message}` };
}

function valueAt(data: unknown, keys: readonly PropertyKey[]): unknown {
  let value = data;
  for (const key of keys) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function isLocaleTag(tag: string): boolean {
  try {
    return Intl.getCanonicalLocales(tag).length === 1;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Negotiation

interface Subtags {
  language: string;
  script: string | undefined;
  region: string | undefined;
}

const maximized = new Map<string, Subtags | undefined>();

function maximize(tag: string): Subtags | undefined {
  if (maximized.has(tag)) return maximized.get(tag);
  let result: Subtags | undefined;
  try {
    const locale = new Intl.Locale(tag).maximize();
    // `und` would maximize to en-Latn-US and match English for an unknown language.
    if (locale.language !== 'und') result = { language: locale.language, script: locale.script, region: locale.region };
  } catch {
    result = undefined;
  }
  if (maximized.size < 1000) maximized.set(tag, result);
  return result;
}

/**
 * The best of `available` for a requested locale, or undefined when none shares its language:
 * exact (zh-CN), then case-insensitive and `_`/`-` variants (zh_cn, zh_CN.UTF-8), then the closest
 * by language, script and region after likely-subtags expansion (zh → zh-Hans-CN → zh-CN;
 * zh-Hant and zh-HK → zh-TW; ja-JP → ja; en-GB → en). Traditional falls back to Simplified
 * when only that is available, as CLDR allows.
 */
export function negotiateLocale(
  available: readonly string[],
  requested: string | undefined | null,
): string | undefined {
  if (!requested) return undefined;
  // POSIX-style values (zh_CN.UTF-8, en_US@euro) arrive from some shop platforms.
  const tag = requested
    .trim()
    .replace(/[.@].*$/, '')
    .replaceAll('_', '-');
  if (!tag) return undefined;
  const exact = available.find((l) => l === tag) ?? available.find((l) => l.toLowerCase() === tag.toLowerCase());
  if (exact) return exact;
  const want = maximize(tag);
  if (!want) return undefined;
  let best: string | undefined;
  let bestScore = 0;
  for (const candidate of available) {
    const have = maximize(candidate);
    if (!have || have.language !== want.language) continue;
    // Script matters more than region: zh-HK readers want Traditional (zh-TW) over zh-CN.
    const score = 1 + (have.script === want.script ? 2 : 0) + (have.region === want.region ? 1 : 0);
    if (score > bestScore) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The browser's most preferred language among `available` (an `Accept-Language` header), or
 * undefined when it names none of them.
 */
export function negotiateAcceptLanguage(available: readonly string[], header: string | undefined): string | undefined {
  if (!header) return undefined;
  const ranked = header
    .split(',')
    .slice(0, 20)
    .map((part, index) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([01](?:\.\d{0,3})?)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
      return { tag: tag.trim(), q: q === undefined ? 1 : Number(q), index };
    })
    .filter((entry) => entry.tag && entry.tag !== '*' && entry.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index);
  for (const { tag } of ranked) {
    const match = negotiateLocale(available, tag);
    if (match) return match;
  }
  return undefined;
}
