import { createHash } from 'node:crypto';
import { IANAZone } from 'luxon';
import type { Cadence, QuietHours } from './cadence.js';

/**
 * Decides WHEN a reminder may go out: quiet hours and the daily cap, both in the customer's local time,
 * and how soon a step may follow the previous one.
 * Pure: no clock, no I/O. Times are instants (`Date`); local wall-clock times only exist inside this module.
 *
 * DST rules, so that a customer never gets a message at a wall time that reads as quiet:
 * - a quiet-hours boundary inside a spring-forward gap resolves to the first instant after the gap;
 * - a quiet-hours start in a repeated (fall-back) hour uses its first occurrence and an end uses its last one,
 *   so one night is one quiet window (never two), at the price of up to one extra quiet hour once a year.
 */

export interface SendWindowRules {
  /** Customer's IANA timezone (already defaulted by the caller). An unknown zone throws. */
  timezone: string;
  /** Local `HH:MM` start/end; may span midnight (21:00–09:00) or not (12:00–14:00). start == end: no quiet hours. */
  quietHours?: QuietHours | undefined;
  /** Messages per LOCAL calendar day, counted per customer and per address (the caller's `recentSends`). Undefined: no cap. */
  maxPerDay?: number | undefined;
  /** Spread for messages released at the end of quiet hours / at the next day after a cap, so 09:00 is not one burst. */
  spreadMs: number;
}

export interface SendWindowInput {
  /** When the step is planned. */
  planned: Date;
  /**
   * Send times of the messages the cap counts (sent or in flight): the customer's and those to the same
   * address under other customer ids. Any order; may include far past ones.
   */
  recentSends: Date[];
  /** Stable key (e.g. recovery id + step) for deterministic jitter. */
  jitterKey: string;
}

export type SendDecision = { at: Date; deferredBy: undefined } | { at: Date; deferredBy: 'quiet_hours' | 'daily_cap' };

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const clockPattern = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** A local calendar day, as days since 1970-01-01 (of the wall calendar, not of UTC). */
type LocalDay = number;

interface Window {
  start: number;
  end: number;
}

/** Entries a per-zone cache keeps before it starts over (a few years of days; bounded memory). */
const zoneCacheLimit = 4_096;

/** A Map that forgets everything once it holds `limit` entries: cheap, bounded, and hits stay hits. */
function remember<K, V>(cache: Map<K, V>, key: K, compute: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = compute();
    if (cache.size >= zoneCacheLimit) cache.clear();
    cache.set(key, value);
  }
  return value;
}

class Zone {
  static readonly #byName = new Map<string, Zone>();

  /**
   * One Zone per IANA name for the whole process. What it caches (resolved wall times, quiet windows) is
   * a pure function of the zone's rules, so every decision shares it: luxon asks Intl for each offset,
   * which otherwise costs tens of calls per message.
   */
  static named(name: string): Zone {
    return remember(Zone.#byName, name, () => new Zone(name));
  }

  readonly #zone: IANAZone;
  readonly #resolved = new Map<string, number>();
  /** Quiet windows by `start-end-day` (minutes, minutes, local day). */
  readonly windows = new Map<string, Window>();

  private constructor(name: string) {
    // IANAZone.create caches per name, validity included.
    const zone = typeof name === 'string' && name !== '' ? IANAZone.create(name) : undefined;
    if (!zone?.isValid) throw new Error(`send window: unknown IANA timezone "${String(name)}"`);
    this.#zone = zone;
  }

  /** Offset from UTC in ms at an instant. */
  offsetMs(ts: number): number {
    return this.#zone.offset(ts) * MINUTE_MS;
  }

  localDay(ts: number): LocalDay {
    return Math.floor((ts + this.offsetMs(ts)) / DAY_MS);
  }

  /**
   * The instant at which the wall clock reads `minutes` past midnight of `day`.
   * Repeated (fall-back) times resolve to the first or last occurrence as asked;
   * times inside a spring-forward gap resolve to the first instant after the gap.
   */
  resolve(day: LocalDay, minutes: number, occurrence: 'first' | 'last'): number {
    return remember(this.#resolved, `${day}/${minutes}/${occurrence}`, () => this.#resolve(day, minutes, occurrence));
  }

  #resolve(day: LocalDay, minutes: number, occurrence: 'first' | 'last'): number {
    const wall = day * DAY_MS + minutes * MINUTE_MS;
    // Offsets in use around this wall time; an instant is a match when the zone uses that offset there.
    const offsets = new Set([wall - DAY_MS, wall, wall + DAY_MS].map((ts) => this.offsetMs(ts)));
    const matches = [...offsets].map((offset) => wall - offset).filter((ts) => wall - this.offsetMs(ts) === ts);
    if (matches.length > 0) return occurrence === 'first' ? Math.min(...matches) : Math.max(...matches);

    // In a gap: the transition lies between the instant read with the later offset and the one with the earlier.
    const before = this.offsetMs(wall - DAY_MS);
    const after = this.offsetMs(wall + DAY_MS);
    let lo = wall - Math.max(before, after);
    let hi = wall - Math.min(before, after);
    const loOffset = this.offsetMs(lo);
    if (this.offsetMs(hi) === loOffset) return hi;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.offsetMs(mid) === loOffset) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  startOfDay(day: LocalDay): number {
    return this.resolve(day, 0, 'first');
  }
}

interface ParsedQuiet {
  start: number;
  end: number;
}

function parseClock(text: string, field: string): number {
  const match = clockPattern.exec(text);
  if (!match) throw new Error(`send window: quiet hours ${field} must be HH:MM, got "${text}"`);
  return Number(match[1]) * 60 + Number(match[2]);
}

/** Undefined when there are no quiet hours (absent, or start == end). */
function parseQuiet(quietHours: QuietHours | undefined): ParsedQuiet | undefined {
  if (!quietHours) return undefined;
  const start = parseClock(quietHours.start, 'start');
  const end = parseClock(quietHours.end, 'end');
  return start === end ? undefined : { start, end };
}

/** The quiet window that starts on local `day` (an overnight one ends the next day). May be empty on DST days. */
function windowStartingOn(zone: Zone, quiet: ParsedQuiet, day: LocalDay): Window {
  return remember(zone.windows, `${quiet.start}-${quiet.end}-${day}`, () => {
    const start = zone.resolve(day, quiet.start, 'first');
    const end = zone.resolve(quiet.end > quiet.start ? day : day + 1, quiet.end, 'last');
    return { start, end: Math.max(start, end) };
  });
}

function quietWindowAt(zone: Zone, quiet: ParsedQuiet, ts: number): Window | undefined {
  const today = zone.localDay(ts);
  for (const day of [today - 1, today, today + 1]) {
    const window = windowStartingOn(zone, quiet, day);
    if (window.start <= ts && ts < window.end) return window;
  }
  return undefined;
}

/** The first quiet-window start strictly after `ts`; Infinity when there is none. */
function nextQuietStart(zone: Zone, quiet: ParsedQuiet | undefined, ts: number): number {
  if (!quiet) return Infinity;
  const today = zone.localDay(ts);
  for (const day of [today - 1, today, today + 1, today + 2]) {
    const window = windowStartingOn(zone, quiet, day);
    if (window.start > ts && window.end > window.start) return window.start;
  }
  return Infinity;
}

/** Whether `at` falls inside quiet hours in `timezone` (same DST rules as {@link nextSendTime}). */
export function isQuietTime(quietHours: QuietHours, timezone: string, at: Date): boolean {
  const zone = Zone.named(timezone);
  const quiet = parseQuiet(quietHours);
  return quiet !== undefined && quietWindowAt(zone, quiet, at.getTime()) !== undefined;
}

/** Deterministic jitter in [0, spreadMs) derived from sha256(key); 0 when spreadMs < 1. */
export function jitterMs(key: string, spreadMs: number): number {
  const spread = Math.floor(spreadMs);
  if (!(spread >= 1)) return 0;
  const fraction = createHash('sha256').update(key).digest().readUIntBE(0, 6) / 2 ** 48;
  return Math.floor(fraction * spread);
}

/**
 * When a message planned at `input.planned` may go out.
 *
 * Not deferred: exactly `planned`, no jitter. Deferred: the end of quiet hours, or the start of the next local
 * day's allowed window when the cap is reached, plus jitter that never leaves that allowed window (nor, with a cap,
 * that local day). `deferredBy` is `daily_cap` whenever the cap moved the message at all, else `quiet_hours`.
 * Throws an Error for an unknown timezone, malformed quiet hours, or a cap that leaves no day to send on.
 */
export function nextSendTime(rules: SendWindowRules, input: SendWindowInput): SendDecision {
  const zone = Zone.named(rules.timezone);
  const quiet = parseQuiet(rules.quietHours);
  const cap = rules.maxPerDay;
  const planned = input.planned.getTime();
  if (Number.isNaN(planned)) throw new Error('send window: planned is not a valid date');

  const sendsPerDay = new Map<LocalDay, number>();
  if (cap !== undefined) {
    for (const sent of input.recentSends) {
      const day = zone.localDay(sent.getTime());
      sendsPerDay.set(day, (sendsPerDay.get(day) ?? 0) + 1);
    }
  }
  const full = (day: LocalDay) => cap !== undefined && (sendsPerDay.get(day) ?? 0) >= cap;

  // Each step moves forward to a quiet end or a new day; a day costs at most a few steps and only days with
  // sends can be full, so this bound is never reached unless the cap allows nothing (maxPerDay < 1).
  const maxSteps = 4 * (sendsPerDay.size + 2) + 8;
  let at = planned;
  let hitQuiet = false;
  let hitCap = false;
  for (let step = 0; ; step++) {
    if (step > maxSteps) throw new Error(`send window: no allowed send time found (maxPerDay=${String(cap)})`);
    const window = quiet && quietWindowAt(zone, quiet, at);
    if (window) {
      at = window.end;
      hitQuiet = true;
      continue;
    }
    const day = zone.localDay(at);
    if (full(day)) {
      at = zone.startOfDay(day + 1);
      hitCap = true;
      continue;
    }
    break;
  }

  if (!hitQuiet && !hitCap) return { at: input.planned, deferredBy: undefined };
  const deferredBy = hitCap ? 'daily_cap' : 'quiet_hours';
  if (!(rules.spreadMs >= 1)) return { at: new Date(at), deferredBy };

  // Jitter stays inside the allowed window it was released into (and, with a cap, inside that local day).
  const windowEnd = Math.min(
    nextQuietStart(zone, quiet, at),
    cap === undefined ? Infinity : zone.startOfDay(zone.localDay(at) + 1),
  );
  const jitter = jitterMs(input.jitterKey, Math.min(rules.spreadMs, windowEnd - at));
  return { at: new Date(at + jitter), deferredBy };
}

/** STEP_MIN_GAP's default. */
export const defaultStepMinGapMs = 2 * 3_600_000;

/**
 * When step `index` of a cadence becomes due: `after` from the recovery's start, and, once the
 * previous step went out (`previousSentAt`), not sooner after it than the cadence spaces the two
 * (at most `minGapMs`). A step that went out late (deferred by quiet hours or the daily cap, held,
 * retried) so does not drag the next one along: released together at the end of the night, an SMS
 * and an email would reach the customer in the same minute. Undefined when there is no such step.
 */
export function stepDueAt(
  cadence: Pick<Cadence, 'steps'>,
  index: number,
  startedAt: Date,
  previousSentAt: Date | undefined,
  minGapMs: number,
): Date | undefined {
  const step = cadence.steps[index];
  if (!step) return undefined;
  const due = startedAt.getTime() + step.afterMs;
  if (!previousSentAt) return new Date(due);
  const spacing = step.afterMs - (cadence.steps[index - 1]?.afterMs ?? 0);
  const gap = Math.max(0, Math.min(minGapMs, spacing));
  return new Date(Math.max(due, previousSentAt.getTime() + gap));
}
