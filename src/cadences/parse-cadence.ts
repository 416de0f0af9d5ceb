import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { channels, failureCategories, paymentMethods } from '../domain/vocabulary.js';
import type { PaymentMethod } from '../domain/vocabulary.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { validationError } from '../platform/errors.js';
import type { Issue } from '../platform/errors.js';
import type { Cadence, CadenceStep } from './cadence.js';

/** The part of the template catalogue that cadence validation needs. */
export interface CadenceTemplateCatalogue {
  has(name: string): boolean;
  /** Locales the template exists in, e.g. `['en', 'zh-CN']`. */
  locales(name: string): string[];
}

export interface CadenceValidationOptions {
  /** When given, every step's template must exist in it. Default: templates are not checked. */
  templates?: CadenceTemplateCatalogue;
  /** Locales every referenced template must have (only checked with `templates`). Default none. */
  requiredLocales?: string[];
  /**
   * Further checks on the raw (snake_case) document that need more than the file itself, e.g. the
   * renderer and the configured gateways (see cadence-checks.ts). Reported with every other issue.
   */
  extraIssues?: (input: Record<string, unknown>) => Issue[];
}

/** Offered on the retry page when a step lists no `offer_methods`: card first, as most shoppers expect. */
export const defaultOfferMethods: readonly PaymentMethod[] = ['card', 'alipay', 'wechat_pay'];

const slugPattern = /^[a-z0-9][a-z0-9_-]*$/;
const clockPattern = /^([01]\d|2[0-3]):[0-5]\d$/;
const currencyPattern = /^(any|[A-Z]{3})$/;

const slug = z
  .string()
  .regex(slugPattern, 'must be a lowercase slug of a-z, 0-9, "-" and "_" (e.g. "last-call")')
  .max(64, 'must be at most 64 characters');

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration; write e.g. 30s, 15m, 2h, 3d or 1h30m` });
    return z.NEVER;
  }
  return ms;
});

const clock = z.string().regex(clockPattern, 'must be a 24-hour time HH:MM, e.g. "21:00"');

const matchSchema = z.strictObject({
  failure_categories: z
    .array(z.enum([...failureCategories, 'any']))
    .min(1, 'must list at least one category, or any')
    .optional(),
  min_amount: z
    .number()
    .int('must be a whole number of minor units (e.g. cents)')
    .min(0, 'must be 0 or more')
    .optional(),
  currencies: z
    .array(z.string().regex(currencyPattern, 'must be any or a 3-letter uppercase ISO 4217 code, e.g. EUR'))
    .min(1, 'must list at least one currency, or any')
    .optional(),
  by_name_only: z.boolean().optional(),
});

const quietHoursSchema = z
  .strictObject({ start: clock, end: clock })
  .refine((q) => q.start !== q.end, { path: ['end'], message: 'must differ from start' });

const incentiveSchema = z
  .strictObject({
    percent: z.number().gt(0, 'must be more than 0').max(100, 'must be at most 100').optional(),
    amount: z.number().int('must be a whole number of minor units').min(1, 'must be 1 or more').optional(),
    max_amount: z.number().int('must be a whole number of minor units').min(1, 'must be 1 or more').optional(),
  })
  .refine((i) => (i.percent === undefined) !== (i.amount === undefined), {
    message: 'give either percent or amount',
  });

const stepSchema = z.strictObject({
  after: duration,
  channel: z.enum(channels),
  template: slug,
  offer_methods: z
    .array(z.enum(paymentMethods))
    .min(1, 'must list at least one payment method')
    .refine((methods) => new Set(methods).size === methods.length, 'must not list a method twice')
    .optional(),
  incentive: incentiveSchema.optional(),
});

const documentSchema = z.strictObject({
  name: slug,
  description: z.string().min(1, 'must not be empty').optional(),
  match: matchSchema.optional(),
  // null is accepted as an explicit "none" for the two optional limits.
  quiet_hours: quietHoursSchema.nullable().optional(),
  max_messages_per_day: z.number().int('must be a whole number').min(1, 'must be 1 or more').nullable().optional(),
  expire_after: duration.refine((ms) => ms > 0, 'must be longer than 0s'),
  switch_channel_on_failure: z.boolean().optional(),
  incentive_monthly_budget: z
    .number()
    .int('must be a whole number of minor units')
    .min(0, 'must be 0 or more')
    .optional(),
  holdout_percent: z.number().min(0, 'must be 0 or more').max(50, 'must be at most 50').optional(),
  steps: z.array(stepSchema).min(1, 'at least one step is required'),
});

type CadenceDocument = z.output<typeof documentSchema>;

const knownKeys: Record<string, readonly string[]> = {
  root: Object.keys(documentSchema.shape),
  match: Object.keys(matchSchema.shape),
  quiet_hours: ['start', 'end'],
  step: Object.keys(stepSchema.shape),
  incentive: ['percent', 'amount', 'max_amount'],
};

/**
 * Parses a cadence file: YAML (or JSON) holding one cadence or a list of them. Several
 * YAML documents (`---`, as `recoup cadences list` prints) are read as one list.
 * Throws a `validation` RecoupError listing every problem at once; paths of list
 * entries start with their index (`[1].steps[0].after`).
 */
export function parseCadenceDocument(text: string, options: CadenceValidationOptions = {}): Cadence[] {
  const parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const docs = Array.isArray(parsed) ? parsed : [];
  const syntaxErrors = docs.flatMap((d) => d.errors);
  if (syntaxErrors.length > 0) {
    throw validationError(
      syntaxErrors.map((err) => ({ path: '', message: `YAML syntax error: ${firstLine(err.message)}` })),
      'Invalid cadence file',
    );
  }
  // Documents holding only comments (a header before the first `---`) are skipped.
  const contents = docs.map((doc) => yamlToData(doc)).filter((data) => data !== null && data !== undefined);
  if (contents.length === 0) {
    throw validationError([{ path: '', message: 'the document is empty; expected a cadence or a list of cadences' }]);
  }
  const [only] = contents;
  if (contents.length === 1 && !Array.isArray(only)) return [validateCadence(only, options)];
  const data = contents.flatMap((content) => (Array.isArray(content) ? (content as unknown[]) : [content]));
  if (data.length === 0) throw validationError([{ path: '', message: 'the list holds no cadences' }]);

  const issues: Issue[] = [];
  const result: Cadence[] = [];
  const seen = new Map<string, number>();
  data.forEach((entry: unknown, index) => {
    const checked = check(entry, options);
    issues.push(...checked.issues.map((issue) => ({ ...issue, path: joinPath(`[${index}]`, issue.path) })));
    if (checked.cadence) result.push(checked.cadence);
    const name = isRecord(entry) && typeof entry.name === 'string' ? entry.name : undefined;
    if (name === undefined) return;
    const first = seen.get(name);
    if (first === undefined) seen.set(name, index);
    else issues.push({ path: `[${index}].name`, message: `duplicate cadence name "${name}" (also at [${first}])` });
  });
  if (issues.length > 0) throw validationError(issues, 'Invalid cadence file');
  return result;
}

/**
 * A parsed YAML document as plain data. Aliases are resolved here, so an alias to a missing anchor
 * (`*x`) or an alias bomb (past yaml's maxAliasCount) throws here, after parsing succeeded: it is
 * the author's mistake, reported like a syntax error (`title` names what was being read).
 */
export function yamlToData(doc: { toJS(): unknown }, title = 'Invalid cadence file'): unknown {
  try {
    return doc.toJS();
  } catch (err) {
    throw validationError(
      [{ path: '', message: `YAML error: ${firstLine(err instanceof Error ? err.message : String(err))}` }],
      title,
    );
  }
}

/** Validates one already-parsed cadence (snake_case document shape). Throws a `validation` RecoupError. */
export function validateCadence(input: unknown, options: CadenceValidationOptions = {}): Cadence {
  const { cadence, issues } = check(input, options);
  if (!cadence || issues.length > 0) throw validationError(issues, 'Invalid cadence');
  return cadence;
}

/** The snake_case document for a cadence, with duration strings: `validateCadence` of it gives the cadence back. */
export function cadenceToDocument(c: Cadence): Record<string, unknown> {
  const doc: Record<string, unknown> = { name: c.name };
  if (c.description !== undefined) doc.description = c.description;
  doc.match = {
    failure_categories: [...c.match.failureCategories],
    min_amount: c.match.minAmount,
    currencies: [...c.match.currencies],
    ...(c.match.byNameOnly ? { by_name_only: true } : {}),
  };
  if (c.quietHours) doc.quiet_hours = { start: c.quietHours.start, end: c.quietHours.end };
  if (c.maxMessagesPerDay !== undefined) doc.max_messages_per_day = c.maxMessagesPerDay;
  doc.expire_after = formatDuration(c.expireAfterMs);
  doc.switch_channel_on_failure = c.switchChannelOnFailure;
  if (c.incentiveMonthlyBudget !== undefined) doc.incentive_monthly_budget = c.incentiveMonthlyBudget;
  if (c.holdoutPercent !== undefined) doc.holdout_percent = c.holdoutPercent;
  doc.steps = c.steps.map((step) => ({
    after: formatDuration(step.afterMs),
    channel: step.channel,
    template: step.template,
    offer_methods: [...step.offerMethods],
    ...(step.incentive
      ? {
          incentive: {
            ...(step.incentive.percent !== undefined ? { percent: step.incentive.percent } : {}),
            ...(step.incentive.amount !== undefined ? { amount: step.incentive.amount } : {}),
            ...(step.incentive.maxAmount !== undefined ? { max_amount: step.incentive.maxAmount } : {}),
          },
        }
      : {}),
  }));
  return doc;
}

function check(input: unknown, options: CadenceValidationOptions): { cadence?: Cadence; issues: Issue[] } {
  if (!isRecord(input)) {
    return { issues: [{ path: '', message: 'a cadence must be a mapping with name, expire_after and steps' }] };
  }
  const parsed = documentSchema.safeParse(input, { error: describeIssue });
  // Rules spanning several fields are checked on the raw input, so they are reported
  // together with field errors instead of only after those are fixed.
  const issues = [
    ...(parsed.success ? [] : parsed.error.issues.flatMap(toIssues)),
    ...crossFieldIssues(input, options),
    ...(options.extraIssues?.(input) ?? []),
  ];
  if (!parsed.success || issues.length > 0) return { issues };
  return { cadence: toCadence(parsed.data), issues };
}

function toCadence(doc: CadenceDocument): Cadence {
  return {
    name: doc.name,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    match: {
      failureCategories: doc.match?.failure_categories ?? ['any'],
      minAmount: doc.match?.min_amount ?? 0,
      currencies: doc.match?.currencies ?? ['any'],
      ...(doc.match?.by_name_only ? { byNameOnly: true } : {}),
    },
    quietHours: doc.quiet_hours ? { start: doc.quiet_hours.start, end: doc.quiet_hours.end } : undefined,
    maxMessagesPerDay: doc.max_messages_per_day ?? undefined,
    expireAfterMs: doc.expire_after,
    switchChannelOnFailure: doc.switch_channel_on_failure ?? true,
    ...(doc.incentive_monthly_budget === undefined ? {} : { incentiveMonthlyBudget: doc.incentive_monthly_budget }),
    ...(doc.holdout_percent === undefined ? {} : { holdoutPercent: doc.holdout_percent }),
    steps: doc.steps.map((step): CadenceStep => ({
      afterMs: step.after,
      channel: step.channel,
      template: step.template,
      offerMethods: step.offer_methods ?? [...defaultOfferMethods],
      ...(step.incentive
        ? {
            incentive: {
              ...(step.incentive.percent !== undefined ? { percent: step.incentive.percent } : {}),
              ...(step.incentive.amount !== undefined ? { amount: step.incentive.amount } : {}),
              ...(step.incentive.max_amount !== undefined ? { maxAmount: step.incentive.max_amount } : {}),
            },
          }
        : {}),
    })),
  };
}

function crossFieldIssues(input: Record<string, unknown>, options: CadenceValidationOptions): Issue[] {
  const issues: Issue[] = [];
  const steps = Array.isArray(input.steps) ? (input.steps as unknown[]) : [];
  const expireMs = typeof input.expire_after === 'string' ? parseDuration(input.expire_after) : undefined;
  let previous: { index: number; ms: number } | undefined;
  steps.forEach((step, index) => {
    if (!isRecord(step)) return;
    const afterMs = typeof step.after === 'string' ? parseDuration(step.after) : undefined;
    if (afterMs !== undefined) {
      const path = `steps[${index}].after`;
      if (previous && afterMs <= previous.ms) {
        issues.push({
          path,
          message: `${formatDuration(afterMs)} must be later than steps[${previous.index}].after (${formatDuration(previous.ms)}); steps run in the order listed`,
        });
      }
      if (expireMs !== undefined && expireMs > 0 && afterMs >= expireMs) {
        issues.push({
          path,
          message: `${formatDuration(afterMs)} must be earlier than expire_after (${formatDuration(expireMs)}), or the step never runs`,
        });
      }
      if (!previous || afterMs > previous.ms) previous = { index, ms: afterMs };
    }
    const template = step.template;
    if (options.templates && typeof template === 'string' && slugPattern.test(template)) {
      if (!options.templates.has(template)) {
        issues.push({ path: `steps[${index}].template`, message: `unknown template "${template}"` });
      } else if (options.requiredLocales && options.requiredLocales.length > 0) {
        const have = new Set(options.templates.locales(template));
        const missing = options.requiredLocales.filter((locale) => !have.has(locale));
        if (missing.length > 0) {
          issues.push({
            path: `steps[${index}].template`,
            message: `template "${template}" is missing locale${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
          });
        }
      }
    }
  });
  return issues;
}

/** Messages for zod's generic failures; schema-level messages above take precedence. */
function describeIssue(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${typeNames[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`;
    default:
      return undefined;
  }
}

const typeNames: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
};

function toIssues(issue: z.core.$ZodIssue): Issue[] {
  const path = formatPath(issue.path);
  if (issue.code !== 'unrecognized_keys') return [{ path, message: issue.message }];
  const allowed = allowedKeys(issue.path);
  return issue.keys.map((key) => {
    const hint = allowed ? suggest(key, allowed) : undefined;
    return {
      path: joinPath(path, key),
      message: hint ? `unknown key; did you mean "${hint}"?` : 'unknown key',
    };
  });
}

function allowedKeys(path: readonly PropertyKey[]): readonly string[] | undefined {
  if (path.length === 0) return knownKeys.root;
  if (path.length === 1 && (path[0] === 'match' || path[0] === 'quiet_hours')) return knownKeys[path[0]];
  if (path.length === 2 && path[0] === 'steps') return knownKeys.step;
  return undefined;
}

/** The allowed key a typo most likely meant: within two edits (`expires_after`) or sharing a stem (`currency`). */
function suggest(key: string, allowed: readonly string[]): string | undefined {
  const typo = key.toLowerCase();
  let best: { key: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance = editDistance(typo, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { key: candidate, distance };
  }
  if (best) return best.key;
  if (typo.length < 5) return undefined;
  const stem = typo.slice(0, Math.max(5, typo.length - 1));
  return allowed.find((candidate) => candidate.startsWith(stem));
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + cost);
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out = joinPath(out, String(part));
  }
  return out;
}

function joinPath(prefix: string, rest: string): string {
  if (prefix === '') return rest;
  if (rest === '') return prefix;
  return rest.startsWith('[') ? `${prefix}${rest}` : `${prefix}.${rest}`;
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? message).replace(/:$/, '');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
