/**
 * Text Postgres can store. A lone UTF-16 surrogate (e.g. "\ud800") is valid JSON but no Unicode
 * string, and NUL ("\u0000", or %00 in a URL) is valid JSON and a valid URL but no Postgres text:
 * Postgres refuses both in text and jsonb alike, mid-statement. Input carrying them is refused up
 * front, by field, like any other bad value.
 *
 * Nesting is bounded too: JSON.parse takes any depth, but JSON.stringify, Postgres's jsonb parser
 * and any recursive reader run out of stack on deep enough input. No request needs more than a
 * handful of levels, so anything past `maxNestingDepth` is refused before it is read. The walks
 * here are iterative, so a hostile body can never overflow them.
 */

export const unstorableTextMessage = 'must be valid Unicode text without NUL characters';

/** How deep arrays and objects may nest in a request body (a bare `[]` is 1 level). */
export const maxNestingDepth = 64;

export const tooDeepMessage = `must not nest deeper than ${maxNestingDepth} levels`;

export function isStorableText(text: string): boolean {
  // isWellFormed: no lone surrogate (ES2024, native since Node 20; a regex was 5 µs per event body).
  return !text.includes('\u0000') && text.isWellFormed();
}

type Path = Array<string | number>;

/** Whether arrays and objects in `value` nest deeper than `maxDepth` levels. */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  // Containers only, each with the number of containers around it.
  const pending: Array<{ container: object; outer: number }> = [];
  const visit = (item: unknown, outer: number) => {
    if (typeof item === 'object' && item !== null && !Buffer.isBuffer(item)) pending.push({ container: item, outer });
  };
  visit(value, 0);
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.outer + 1 > maxDepth) return true;
    for (const item of Array.isArray(next.container) ? next.container : Object.values(next.container)) {
      visit(item, next.outer + 1);
    }
  }
  return false;
}

/** Paths of the strings in `value` (object keys included) that are not storable text, in document order. */
export function unstorableTextPaths(value: unknown): Path[] {
  // Every request body goes through here: the common answer (none) without building any path.
  return holdsUnstorableText(value) ? pathsOf(value) : [];
}

function holdsUnstorableText(value: unknown): boolean {
  const pending: unknown[] = [value];
  for (let next = pending.pop(); next !== undefined || pending.length > 0; next = pending.pop()) {
    if (typeof next === 'string') {
      if (!isStorableText(next)) return true;
    } else if (Array.isArray(next)) {
      for (const item of next) pending.push(item);
    } else if (typeof next === 'object' && next !== null && !Buffer.isBuffer(next)) {
      for (const key in next) {
        if (!Object.hasOwn(next, key)) continue;
        if (!isStorableText(key)) return true;
        pending.push((next as Record<string, unknown>)[key]);
      }
    }
  }
  return false;
}

interface Place {
  value: unknown;
  /** Where the value sits in its parent; the root has neither. */
  key?: string | number;
  parent?: Place;
  /** An unstorable key: found where it stands, its value not looked into. */
  badKey?: true;
}

function pathsOf(value: unknown): Path[] {
  const found: Path[] = [];
  const pending: Place[] = [{ value }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.badKey || (typeof next.value === 'string' && !isStorableText(next.value))) {
      found.push(pathTo(next));
      continue;
    }
    const children = childrenOf(next.value) ?? [];
    // Pushed last to first, so they come off the stack in document order.
    for (let i = children.length - 1; i >= 0; i--) {
      const [key, child] = children[i] as [string | number, unknown];
      const place: Place = { value: child, key, parent: next };
      if (typeof key === 'string' && !isStorableText(key)) place.badKey = true;
      pending.push(place);
    }
  }
  return found;
}

/** The path of a place, built only for what is found (copying it at every level is quadratic in depth). */
function pathTo(place: Place): Path {
  const path: Path = [];
  for (let at: Place | undefined = place; at?.key !== undefined; at = at.parent) path.push(at.key);
  return path.reverse();
}

/** The entries of an array or plain object; undefined for anything else (a Buffer is bytes, not a container). */
function childrenOf(value: unknown): Array<[string | number, unknown]> | undefined {
  if (Array.isArray(value)) return value.map((item, i) => [i, item]);
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) return Object.entries(value);
  return undefined;
}
