/**
 * Text Postgres can store. A lone UTF-16 surrogate (e.g. "\ud800") is valid JSON but no Unicode
 * string, and NUL ("\u0000", or %00 in a URL) is valid JSON and a valid URL but no Postgres text:
 * Postgres refuses both in text and jsonb alike, mid-statement. Input carrying them is refused up
 * front, by field, like any other bad value.
 */

export const unstorableTextMessage = 'must be valid Unicode text without NUL characters';

export function isStorableText(text: string): boolean {
  // isWellFormed: no lone surrogate (ES2024, native since Node 20; a regex was 5 µs per event body).
  return !text.includes('\u0000') && text.isWellFormed();
}

/** Paths of the strings in `value` (object keys included) that are not storable text. */
export function unstorableTextPaths(value: unknown): Array<Array<string | number>> {
  // Every request body goes through here: the common answer (none) without building any path.
  return holdsUnstorableText(value) ? pathsOf(value, []) : [];
}

function holdsUnstorableText(value: unknown): boolean {
  if (typeof value === 'string') return !isStorableText(value);
  if (typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return false;
  if (Array.isArray(value)) return value.some(holdsUnstorableText);
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (!isStorableText(key) || holdsUnstorableText((value as Record<string, unknown>)[key])) return true;
  }
  return false;
}

function pathsOf(value: unknown, path: Array<string | number>): Array<Array<string | number>> {
  if (typeof value === 'string') return isStorableText(value) ? [] : [path];
  if (Array.isArray(value)) return value.flatMap((item, i) => pathsOf(item, [...path, i]));
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) {
    return Object.entries(value).flatMap(([key, item]) =>
      isStorableText(key) ? pathsOf(item, [...path, key]) : [[...path, key]],
    );
  }
  return [];
}
