/**
 * Writes docs/configuration.md from the configuration schema: every variable, grouped by the
 * section its description names, with its default and meaning. `--check` writes nothing and
 * fails when the committed page differs from what the schema says (`npm run lint` runs it).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { envFields } from '../src/config.js';
import { envDocs, type EnvDoc } from '../src/platform/config-fields.js';

const pagePath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/configuration.md');

const introduction = `# Configuration

All configuration comes from the environment, validated at start; every problem is reported at once
and secrets are never logged.

An empty variable counts as unset. Durations are written like \`500ms\`, \`30s\`, \`15m\`, \`2h\`, \`7d\`
or \`1h30m\`. The keys of the direct wallets may be given as PEM text or as file paths; their
formats are described in [payments](payments.md). Variables marked _secret_ hold credentials:
keep them out of version control.

<!-- Generated from the configuration schema by \`npm run docs:config\`: edit the descriptions in src/, not this page. -->
`;

/** Each variable's documentation, in schema order; throws naming any variable without one. */
export function documentedVariables(fields: Readonly<Record<string, z.ZodType>>): [string, EnvDoc][] {
  const missing = Object.keys(fields).filter((name) => !envDocs.get(fields[name] as z.ZodType)?.description);
  if (missing.length > 0) throw new Error(`undocumented configuration variables: ${missing.join(', ')}`);
  return Object.entries(fields).map(([name, schema]) => [name, envDocs.get(schema) as EnvDoc]);
}

/** The page: the introduction, then one section per group, in the order the schema first names each. */
export function renderConfigDocs(fields: Readonly<Record<string, z.ZodType>>): string {
  const variables = documentedVariables(fields);
  const names = new Set(Object.keys(fields));
  const groups = new Map<string, string[]>();
  for (const [name, doc] of variables) {
    const secret = doc.secret ? ' (_secret_)' : '';
    const parts = [`- \`${name}\`${secret}: ${codeNames(sentence(doc.description), names)}`];
    parts.push(`Default: ${codeNames(sentence(doc.default ?? 'none'), names)}`);
    if (!doc.secret && doc.example !== undefined) parts.push(`Example: \`${doc.example}\`.`);
    const entries = groups.get(doc.group) ?? [];
    entries.push(parts.join(' '));
    groups.set(doc.group, entries);
  }
  const sections = [...groups].map(([group, entries]) => `## ${group}\n\n${entries.join('\n')}\n`);
  return [introduction, ...sections].join('\n');
}

function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** Puts backticks around the variable names a text mentions, outside the spans it already quotes. */
function codeNames(text: string, names: ReadonlySet<string>): string {
  return text
    .split('`')
    .map((part, i) =>
      i % 2 === 1 ? part : part.replace(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g, (m) => (names.has(m) ? `\`${m}\`` : m)),
    )
    .join('`');
}

function main(args: string[]): number {
  const page = renderConfigDocs(envFields);
  const relative = path.relative(process.cwd(), pagePath);
  if (args.includes('--check')) {
    const committed = fs.existsSync(pagePath) ? fs.readFileSync(pagePath, 'utf8') : '';
    if (committed === page) return 0;
    console.error(`${relative} differs from the configuration schema: run npm run docs:config`);
    return 1;
  }
  fs.writeFileSync(pagePath, page);
  console.log(`wrote ${relative}`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
