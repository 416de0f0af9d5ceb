import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * What the configuration page (docs/configuration.md, generated) says about one environment
 * variable. Every variable the schema reads carries one.
 */
export type EnvDoc = {
  /** Section of the page, e.g. `Server`. Sections appear in the order the schema first lists them. */
  group: string;
  /** What it does, with units; markdown. */
  description: string;
  /** Markdown: a value in backticks, or what happens when unset. Absent: unset, nothing happens. */
  default?: string;
} & (
  | { secret?: false; example?: string }
  /** A credential or a value that may hold one: the page marks it and never shows an example. */
  | { secret: true; example?: never }
);

export const envDocs = z.registry<EnvDoc>();

/** Attaches its documentation to a variable's schema. */
export function documented<T extends z.ZodType>(schema: T, doc: EnvDoc): T {
  envDocs.add(schema as z.ZodType, doc);
  return schema;
}

/** The parsed values of a set of variables. */
export type EnvOf<Shape extends z.ZodRawShape> = z.output<z.ZodObject<Shape>>;

export const emptyToUndefined = (value: unknown) => (value === '' ? undefined : value);

/** A string variable with no default; empty counts as unset. */
export function optionalText(doc: EnvDoc) {
  return documented(z.preprocess(emptyToUndefined, z.string().optional()), doc);
}

/**
 * A number read from the environment. Empty counts as unset, as for strings: `Number('')` is 0,
 * so `PORT=` would otherwise silently mean "any free port" instead of the default 3000.
 */
export const whole = <T extends z.ZodType>(schema: T) => z.preprocess(emptyToUndefined, schema);

function toMs(text: string, ctx: z.RefinementCtx): number {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like 30s, 15m, 2h or 3d, got "${text}"` });
    return z.NEVER;
  }
  return ms;
}

/**
 * A duration such as `30s`, `15m`, `2h` or `3d`, parsed into milliseconds; `atLeast` refuses
 * shorter ones (and is added to the description). The documented default is `fallback` unless
 * the doc says more.
 */
export function duration(fallback: string, doc: EnvDoc, atLeast?: string) {
  const minimum = atLeast === undefined ? undefined : parseDuration(atLeast);
  const schema = z
    .string()
    .default(fallback)
    .transform(toMs)
    .refine((ms) => minimum === undefined || ms >= minimum, `must be at least ${atLeast}`);
  const description = atLeast === undefined ? doc.description : `${doc.description} At least ${atLeast}.`;
  return documented(schema, { ...doc, description, default: doc.default ?? `\`${fallback}\`` } as EnvDoc);
}

/** A duration whose default depends on other variables: undefined when unset or empty. */
export function optionalDuration(doc: EnvDoc) {
  return documented(z.preprocess(emptyToUndefined, z.string().transform(toMs).optional()), doc);
}
