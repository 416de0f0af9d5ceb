/**
 * Text Postgres can store. A lone UTF-16 surrogate (e.g. "\ud800") is valid JSON but no Unicode
 * string, and NUL ("\u0000", or %00 in a URL) is valid JSON and a valid URL but no Postgres text:
 * Postgres refuses both in text and jsonb alike, mid-statement. Input carrying them is refused up
 * front, by field, like any other bad value.
 */

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export const unstorableTextMessage = 'must be valid Unicode text without NUL characters';

export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && !loneSurrogate.test(text);
}

/** Paths of the strings in `value` (object keys included) that are not storable text. */
export function unstorableTextPaths(value: unknown, path: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof value === 'string') return isStorableText(value) ? [] : [path];
  if (Array.isArray(value)) return value.flatMap((item, i) => unstorableTextPaths(item, [...path, i]));
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) {
    return Object.entries(value).flatMap(([key, item]) =>
      isStorableText(key) ? unstorableTextPaths(item, [...path, key]) : [[...path, key]],
    );
  }
  return [];
}
