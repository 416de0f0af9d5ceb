/**
 * `npm run lint` step: the shape of src/ stays as docs/architecture.md describes it.
 * - No two areas (the folders directly under src/, and each file at its top) import each other,
 *   directly or through a longer loop.
 * - No source file is over 600 lines.
 * Prints every breach with its file and exits 1; prints nothing and exits 0 otherwise.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src');
const maxLines = 600;

export interface Breach {
  file: string;
  message: string;
}

/** The area of a file under src/: its first folder; a file at the top is an area of its own. */
export function areaOf(relative: string): string {
  const parts = relative.split('/');
  return parts.length > 1 ? (parts[0] ?? relative) : relative.replace(/\.(ts|js)$/, '');
}

/** Relative imports of a TypeScript source (static and dynamic, `export … from` included). */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    if (match[1]) found.push(match[1]);
  }
  return found;
}

/** Pairs of areas that import each other, from a map of area → areas it imports. */
export function mutualAreas(edges: ReadonlyMap<string, ReadonlySet<string>>): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [a, targets] of edges) {
    for (const b of targets) if (a < b && edges.get(b)?.has(a)) pairs.push([a, b]);
  }
  return pairs.sort();
}

/**
 * Groups of more than two areas that reach each other through a loop of imports (the strongly
 * connected components of the area graph, Tarjan's algorithm), each sorted.
 */
export function loops(edges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let next = 0;
  const visit = (area: string) => {
    index.set(area, next);
    low.set(area, next);
    next += 1;
    stack.push(area);
    onStack.add(area);
    for (const to of edges.get(area) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(area, Math.min(low.get(area) ?? 0, low.get(to) ?? 0));
      } else if (onStack.has(to)) {
        low.set(area, Math.min(low.get(area) ?? 0, index.get(to) ?? 0));
      }
    }
    if (low.get(area) === index.get(area)) {
      const group: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop();
        if (member === undefined) break;
        onStack.delete(member);
        group.push(member);
      } while (member !== area);
      if (group.length > 2) groups.push(group.sort());
    }
  };
  for (const area of [...edges.keys()].sort()) if (!index.has(area)) visit(area);
  return groups;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

export function checkTree(dir: string): Breach[] {
  const breaches: Breach[] = [];
  const edges = new Map<string, Set<string>>();
  for (const file of sourceFiles(dir)) {
    const relative = path.relative(dir, file).split(path.sep).join('/');
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    if (lines > maxLines) breaches.push({ file: relative, message: `${lines} lines (at most ${maxLines})` });
    const from = areaOf(relative);
    for (const spec of importsOf(text)) {
      const target = path
        .relative(dir, path.resolve(path.dirname(file), spec))
        .split(path.sep)
        .join('/');
      if (target.startsWith('..')) continue;
      const to = areaOf(target);
      if (to === from) continue;
      if (!edges.has(from)) edges.set(from, new Set());
      edges.get(from)?.add(to);
    }
  }
  for (const [a, b] of mutualAreas(edges)) {
    breaches.push({ file: `src/${a}, src/${b}`, message: 'import each other' });
  }
  for (const group of loops(edges)) {
    breaches.push({ file: group.map((a) => `src/${a}`).join(', '), message: 'import each other through a loop' });
  }
  return breaches;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const breaches = checkTree(src);
  for (const { file, message } of breaches) console.error(`${file}: ${message}`);
  process.exit(breaches.length > 0 ? 1 : 0);
}
