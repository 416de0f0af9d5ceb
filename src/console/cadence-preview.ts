import { DateTime } from 'luxon';
import { sampleItems } from '../cadences/cadence-checks.js';
import type { Cadence } from '../cadences/cadence.js';
import { previewCadence, previewLocales, type PreviewDeps } from '../cadences/preview.js';
import { isValidTimezone } from '../platform/timezones.js';
import type { FailureCategory } from '../domain/vocabulary.js';
import { isRecoupError, type Issue } from '../platform/errors.js';
import { utcText, wallClock } from './format.js';

/**
 * The preview beside the cadence editor: `previewCadence` (the API's dry run) for a sample order
 * whose timezone, locale and start ops choose in a small form.
 */

/** The sample form's values, as they travel in query strings and hidden fields. */
export interface PreviewSample {
  timezone: string;
  /** `both` renders every preview locale. */
  locale: string;
  /** `yyyy-MM-ddTHH:mm` on the sample timezone's wall clock; empty: now. */
  start: string;
}

export const sampleTimezones = [
  'Asia/Shanghai',
  'Asia/Hong_Kong',
  'Asia/Singapore',
  'Asia/Tokyo',
  'Europe/London',
  'Europe/Berlin',
  'America/New_York',
  'America/Los_Angeles',
  'Australia/Sydney',
  'UTC',
];

/** The sample from untrusted input: unknown timezones and locales fall back to the defaults. */
export function readSample(input: Record<string, unknown>, defaultTimezone: string): PreviewSample {
  const tz = typeof input.tz === 'string' ? input.tz.trim() : '';
  const locale = typeof input.locale === 'string' ? input.locale : '';
  const start = typeof input.start === 'string' ? input.start.trim() : '';
  return {
    timezone: tz !== '' && tz.length < 64 && isValidTimezone(tz) ? tz : defaultTimezone,
    locale: previewLocales.includes(locale) ? locale : 'both',
    start: /^\d{4}-\d\d-\d\dT\d\d:\d\d$/.test(start) ? start : '',
  };
}

export interface PreviewView {
  version: number | null;
  timezone: string;
  failureCategory: FailureCategory;
  startLocal: string;
  expiresLocal: string;
  steps: Array<{
    step: number;
    channel: string;
    /** The step asks for another channel than it would use (contact rule). */
    switched: boolean;
    template: string;
    offerMethods: string;
    dueLocal: string;
    plannedLocal: string;
    plannedUtc: string;
    deferredBy: string | null;
    skipped: string | null;
    renders: Array<{
      locale: string;
      sms: { body: string; segments: number; encoding: string; units: number };
      email: { subject: string; text: string };
    }>;
  }>;
}

export type PreviewOutcome = { ok: true; view: PreviewView } | { ok: false; issues: Issue[] };

const deferralLabels: Record<string, string> = { quiet_hours: 'quiet hours', daily_cap: 'daily cap' };
const skipLabels: Record<string, string> = {
  expired: 'never sent: the recovery expires first',
  no_contact: 'never sent: no address for either channel',
  bad_contact: 'never sent: the address is marked bad',
  suppressed: 'never sent: the address opted out',
};

/** Runs the dry run for the sample; rendering failures come back as issues (strict templates). */
export function runPreview(
  input: { name: string; version: number | null; cadence: Cadence },
  sample: PreviewSample,
  deps: PreviewDeps,
  now: Date,
): PreviewOutcome {
  const { cadence } = input;
  const startAt = sample.start ? DateTime.fromISO(sample.start, { zone: sample.timezone }) : undefined;
  const failureCategory =
    cadence.match.failureCategories.find((c): c is FailureCategory => c !== 'any') ?? 'insufficient_funds';
  const currency = cadence.match.currencies.find((c) => c !== 'any') ?? 'CNY';
  let preview;
  try {
    preview = previewCadence(
      {
        name: input.name,
        version: input.version ?? 0,
        cadence,
        order: {
          id: 'ord_PREVIEW',
          amount: Math.max(12_900, cadence.match.minAmount),
          currency,
          description: 'Longjing tea and a celadon cup',
          items: sampleItems,
          customer: {
            name: 'Li Lei',
            email: 'li.lei@example.com',
            phone: '+8613800138000',
            locale: sample.locale === 'both' ? null : sample.locale,
            timezone: sample.timezone,
          },
        },
        startAt: startAt?.isValid ? startAt.toJSDate() : now,
        failureCategory,
      },
      { ...deps, locales: sample.locale === 'both' ? previewLocales : [sample.locale] },
    );
  } catch (err) {
    if (isRecoupError(err, 'validation')) return { ok: false, issues: err.issues };
    throw err;
  }
  const tz = preview.timezone;
  return {
    ok: true,
    view: {
      version: input.version,
      timezone: tz,
      failureCategory: preview.failure_category,
      startLocal: wallClock(preview.start_at, tz),
      expiresLocal: wallClock(preview.expires_at, tz),
      steps: preview.steps.map((s, index) => ({
        step: s.step,
        channel: s.channel === 'sms' ? 'SMS' : 'email',
        switched: s.channel !== cadence.steps[index]?.channel,
        template: s.template,
        offerMethods: s.offer_methods.join(', '),
        dueLocal: wallClock(s.due_at, tz),
        plannedLocal: wallClock(s.local_time, tz),
        plannedUtc: utcText(s.planned_at),
        deferredBy: s.deferred_by ? (deferralLabels[s.deferred_by] ?? s.deferred_by) : null,
        skipped: s.skipped ? (skipLabels[s.skipped] ?? s.skipped) : null,
        renders: Object.entries(s.rendered).map(([locale, r]) => ({
          locale,
          sms: {
            body: r.sms.body,
            segments: r.sms.segments.segments,
            encoding: r.sms.segments.encoding,
            units: r.sms.segments.units,
          },
          email: { subject: r.email.subject, text: r.email.text },
        })),
      })),
    },
  };
}
