import type { StoredCadenceVersion } from '../cadences/cadence-versions.js';
import { previewLocales } from '../cadences/preview.js';
import type { EditorIssue } from './cadence-editor.js';
import { sampleTimezones, type PreviewSample, type PreviewView } from './cadence-preview.js';
import { cadenceHref } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';
import { shownTime } from './format.js';

export interface EditorInput {
  /** Null for a new cadence. */
  name: string | null;
  source: string;
  /** The stored version the editor started from. */
  shown: StoredCadenceVersion | null;
  versions: StoredCadenceVersion[];
  sample: PreviewSample;
  issues: EditorIssue[];
  preview: PreviewView | null;
  /** The text is what was posted, not a stored version. */
  edited?: boolean;
}

/** The cadence editor page's data: the text, its errors, the preview and the sample it ran on. */
export function editorView(input: EditorInput, defaultTimezone: string) {
  const { name, shown, versions, sample } = input;
  const active = versions.find((v) => v.active) ?? null;
  const latest = versions.at(-1) ?? null;
  const href = name === null ? '/console/cadences/new' : cadenceHref(name);
  return {
    name,
    isNew: name === null,
    formAction: href,
    versionsHref: name === null ? null : `${href}/versions`,
    source: input.source,
    issues: input.issues,
    hasIssues: input.issues.length > 0,
    issueHeading: `${input.issues.length === 1 ? 'One error' : `${input.issues.length} errors`}: not saved`,
    shown: shown
      ? {
          version: shown.version,
          active: shown.active,
          createdAt: shownTime(shown.createdAt),
          edited: input.edited === true,
        }
      : null,
    activeVersion: active?.version ?? null,
    // Looking at something other than what new recoveries use: say so above the editor.
    offActive: shown !== null && !shown.active && input.edited !== true,
    newerVersion: latest && shown && latest.version > shown.version ? latest.version : null,
    preview: input.preview,
    sample: {
      ...sample,
      timezones: [...new Set([sample.timezone, defaultTimezone, ...sampleTimezones])].map((tz) => ({
        value: tz,
        selected: tz === sample.timezone,
      })),
      locales: ['both', ...previewLocales].map((l) => ({
        value: l,
        label: l === 'both' ? 'en and zh-CN' : l,
        selected: l === sample.locale,
      })),
    },
  };
}

/** The notice after a save redirected back to the editor (`?saved=`). */
export function savedNotice(saved: unknown, shown: StoredCadenceVersion): ConsoleFrame['notice'] {
  const v = shown.version;
  switch (saved) {
    case 'created':
      return {
        tone: 'success',
        text: `Saved as version ${v}. It is not active: activate it when the preview looks right.`,
      };
    case 'activated':
      return { tone: 'success', text: `Saved as version ${v} and activated: new recoveries start on it.` };
    case 'unchanged':
      return { tone: 'info', text: `Nothing changed: version ${v} already holds this definition.` };
    case 'unchanged-activated':
      return { tone: 'success', text: `Nothing changed, and version ${v} is now active.` };
    default:
      return null;
  }
}

export function errorNotice(count: number): ConsoleFrame['notice'] {
  return {
    tone: 'error',
    text: `Not saved: ${count === 1 ? 'one error' : `${count} errors`} to fix (listed above the text).`,
  };
}
