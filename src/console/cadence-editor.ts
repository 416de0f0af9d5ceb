import { structuredPatch } from 'diff';
import { isMap, isNode, LineCounter, parseAllDocuments, parseDocument, stringify } from 'yaml';
import type { Cadence } from '../cadences/cadence.js';
import type { StoredCadenceVersion } from '../cadences/cadence-versions.js';
import { cadenceToDocument, validateCadence, type CadenceValidationOptions } from '../cadences/parse-cadence.js';
import { formatDuration } from '../platform/duration.js';
import { isRecoupError, type Issue } from '../platform/errors.js';

/**
 * The console's cadence editor, apart from HTTP: reading the YAML typed into it with the
 * validation the API uses (src/cadences/parse-cadence.ts with cadence-checks.ts's options), placing
 * each issue on its line, the text a version is edited as, summaries for the list and the diffs
 * between versions.
 */

/** An issue as the editor lists it: the validator's path and message, and where it is in the text. */
export interface EditorIssue extends Issue {
  /** 1-based line in the editor's text, when the path (or a parent of it) is found. */
  line: number | null;
  /** That line's text, trimmed, to show beside the message. */
  excerpt: string | null;
}

export type ReadResult = { ok: true; cadence: Cadence; source: string } | { ok: false; issues: EditorIssue[] };

/**
 * Validates one cadence typed as YAML. `expectedName`: the cadence being edited (the text must
 * keep its name). Every issue comes back at once, with its line.
 */
export function readCadenceYaml(text: string, options: CadenceValidationOptions, expectedName?: string): ReadResult {
  const source = text.replace(/\r\n?/g, '\n');
  const lines = new LineCounter();
  const docs = parseAllDocuments(source, { prettyErrors: true, uniqueKeys: true, lineCounter: lines });
  const list = Array.isArray(docs) ? docs : [];
  const syntax = list.flatMap((d) => d.errors);
  if (syntax.length > 0) {
    return {
      ok: false,
      issues: syntax.map((e) => {
        const line = e.linePos?.[0]?.line ?? null;
        return {
          path: '',
          message: `YAML syntax error: ${(e.message.split('\n')[0] ?? '').replace(/:$/, '')}`,
          line,
          excerpt: line === null ? null : lineText(source, line),
        };
      }),
    };
  }
  const contents = list.map((d): unknown => d.toJS()).filter((c) => c !== null && c !== undefined);
  if (contents.length !== 1 || Array.isArray(contents[0])) {
    const message =
      contents.length === 0 ? 'the editor is empty; write one cadence' : 'write exactly one cadence (a mapping) here';
    return { ok: false, issues: [{ path: '', message, line: null, excerpt: null }] };
  }
  const raw = contents[0];
  const nameIssues: Issue[] =
    expectedName !== undefined && isRecord(raw) && raw.name !== expectedName
      ? [{ path: 'name', message: `must stay "${expectedName}"; to copy it, start a new cadence` }]
      : [];
  try {
    const cadence = validateCadence(raw, options);
    if (nameIssues.length > 0) return { ok: false, issues: locateIssues(source, nameIssues) };
    return { ok: true, cadence, source };
  } catch (err) {
    if (!isRecoupError(err, 'validation')) throw err;
    const issues = err.issues.some((i) => i.path === 'name') ? err.issues : [...err.issues, ...nameIssues];
    return { ok: false, issues: locateIssues(source, issues) };
  }
}

/** Places each issue on the line of the node its path names, or of its nearest existing parent. */
export function locateIssues(source: string, issues: Issue[]): EditorIssue[] {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines });
  return issues.map((issue) => {
    const path = pathSegments(issue.path);
    for (let n = path.length; n > 0; n -= 1) {
      const prefix = path.slice(0, n);
      const node = doc.errors.length === 0 ? doc.getIn(prefix, true) : undefined;
      // A missing key: point at the mapping that lacks it, i.e. keep walking up.
      if (!isNode(node) || !node.range) continue;
      // For a key, the pair's line is where its value starts (`after: 30m` → that line).
      const line = lines.linePos(node.range[0]).line;
      return { ...issue, line, excerpt: lineText(source, line) };
    }
    return { ...issue, line: null, excerpt: null };
  });
}

/** `steps[2].after` → `['steps', 2, 'after']`; `[0].name` → `[0, 'name']`. */
export function pathSegments(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const match of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (match[2] !== undefined) out.push(Number(match[2]));
    else if (match[1] !== undefined) out.push(match[1]);
  }
  return out;
}

/**
 * The text a version is edited (and diffed) as: the YAML it was saved from when that is one
 * cadence, the matching document of a multi-document file it was applied from, else the stored
 * definition written out as YAML (versions saved as JSON or without a source).
 */
export function editorSource(version: Pick<StoredCadenceVersion, 'name' | 'cadence' | 'source'>): string {
  const text = version.source;
  if (text && !text.trimStart().startsWith('{')) {
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [];
    if (list.every((d) => d.errors.length === 0)) {
      const named = list.filter((d) => isMap(d.contents) && (d.toJS() as { name?: unknown }).name === version.name);
      const withContent = list.filter((d) => d.contents !== null);
      if (named.length === 1 && withContent.length === 1) return text.endsWith('\n') ? text : `${text}\n`;
      const [doc] = named;
      // Its own text without the `---` that separated it from the others in the file.
      if (named.length === 1 && doc) return doc.toString().replace(/^---[^\S\n]*\n/, '');
    }
  }
  return stringify(cadenceToDocument(version.cadence), { lineWidth: 100 });
}

/** What a new cadence starts from. */
export function newCadenceTemplate(): string {
  return `# A new cadence: saved as version 1, not active until you activate it.
name: my-cadence
description: What this cadence is for.
match:
  failure_categories: [insufficient_funds]
  min_amount: 0
  currencies: [any]
  by_name_only: true # only orders whose events name it; remove to let it match
quiet_hours: { start: '21:00', end: '09:00' }
max_messages_per_day: 2
expire_after: 48h
steps:
  - after: 30m
    channel: sms
    template: nudge
  - after: 6h
    channel: email
    template: alternative-methods
    offer_methods: [alipay, wechat_pay, card]
`;
}

/** `15m SMS nudge → 2h email alternative-methods → 24h SMS last-call`. */
export function stepsSummary(cadence: Cadence): string {
  return cadence.steps
    .map((s) => `${formatDuration(s.afterMs)} ${s.channel === 'sms' ? 'SMS' : 'email'} ${s.template}`)
    .join(' → ');
}

/** `any category · any currency · from 0 · by name only`. */
export function matchSummary(cadence: Cadence): string {
  const m = cadence.match;
  return [
    m.failureCategories.includes('any') ? 'any category' : m.failureCategories.join(', '),
    m.currencies.includes('any') ? 'any currency' : m.currencies.join(', '),
    `from ${m.minAmount} (minor units)`,
    ...(m.byNameOnly ? ['by name only'] : []),
  ].join(' · ');
}

/** One line of a version diff: `+`, `-`, ` ` (context) or `@` (hunk header). */
export interface DiffLine {
  kind: 'add' | 'del' | 'ctx' | 'hunk';
  text: string;
}

/** The unified diff (3 lines of context) between two versions' texts; empty when equal. */
export function versionDiff(before: string, after: string): DiffLine[] {
  const patch = structuredPatch('before', 'after', before, after, '', '', { context: 3 });
  const out: DiffLine[] = [];
  for (const hunk of patch.hunks) {
    out.push({
      kind: 'hunk',
      text: `@@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@`,
    });
    for (const line of hunk.lines) {
      if (line.startsWith('\\')) continue; // "\ No newline at end of file"
      const kind = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
      out.push({ kind, text: line });
    }
  }
  return out;
}

function lineText(source: string, line: number): string | null {
  const text = source.split('\n')[line - 1];
  return text === undefined ? null : text.trim().slice(0, 160);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
