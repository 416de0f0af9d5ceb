/**
 * Fails when a source file, test or document names a file or folder of this repository that
 * does not exist: a path from the repository root (`src/…`, `test/…`, `docs/…`, `migrations/…`
 * and the other top-level folders) or a relative markdown link. Paths git ignores (build output,
 * local data) are not expected to exist. `npm run lint` runs it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const scanned = ['src', 'test', 'bench', 'docs', 'scripts', 'README.md'];
const scannedExtensions = /\.(ts|js|md|hbs|ya?ml|sh)$/;
const topFolders = ['src', 'test', 'bench', 'docs', 'scripts', 'migrations', 'templates', 'cadences'];

/**
 * A path from the repository root: not preceded by anything a URL, another path or a word could
 * put there, and made of plain path characters only (a glob or a placeholder ends it early).
 */
const rootPath = new RegExp(`(?<![\\w./@~$-])(?:${topFolders.join('|')})/[\\w./-]*`, 'g');
/** An inline markdown link or image: its target up to whitespace or the closing parenthesis. */
const markdownLink = /!?\[[^\]\n]*\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)/g;

export interface MissingReference {
  file: string;
  line: number;
  reference: string;
}

/** The references `text` (the contents of `file`, relative to the root) makes, with their lines. */
export function referencesIn(file: string, text: string): { line: number; reference: string; target: string }[] {
  const found: { line: number; reference: string; target: string }[] = [];
  text.split('\n').forEach((content, index) => {
    for (const match of content.matchAll(rootPath)) {
      // Sentence punctuation after a path is not part of it.
      const reference = match[0].replace(/[.]+$/, '');
      found.push({ line: index + 1, reference, target: reference });
    }
    if (!file.endsWith('.md')) return;
    for (const match of content.matchAll(markdownLink)) {
      const link = match[1] ?? '';
      if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith('#') || link.startsWith('/')) continue;
      const target = decodeURI(link.replace(/[#?].*$/, ''));
      found.push({ line: index + 1, reference: link, target: path.join(path.dirname(file), target) });
    }
  });
  return found;
}

function filesToScan(): string[] {
  const listed = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...scanned], {
    cwd: root,
    encoding: 'utf8',
  });
  return [...new Set(listed.split('\n'))].filter((f) => scannedExtensions.test(f) && fs.existsSync(path.join(root, f)));
}

function ignoredByGit(target: string): boolean {
  try {
    execFileSync('git', ['check-ignore', '--quiet', '--no-index', target], { cwd: root });
    return true;
  } catch {
    return false;
  }
}

export function missingReferences(): MissingReference[] {
  const missing: MissingReference[] = [];
  for (const file of filesToScan()) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    for (const { line, reference, target } of referencesIn(file, text)) {
      if (fs.existsSync(path.join(root, target)) || ignoredByGit(target)) continue;
      missing.push({ file, line, reference });
    }
  }
  return missing;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const missing = missingReferences();
  for (const m of missing) console.error(`${m.file}:${m.line}: ${m.reference} does not exist`);
  if (missing.length > 0) {
    console.error(`${missing.length} reference(s) to missing files`);
    process.exitCode = 1;
  }
}
