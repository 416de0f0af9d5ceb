import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import type { QuietHours } from '../../src/cadences/cadence.js';
import {
  isQuietTime,
  jitterMs,
  nextSendTime,
  stepDueAt,
  type SendWindowRules,
} from '../../src/cadences/send-window.js';

const at = (iso: string) => new Date(iso);
const overnight: QuietHours = { start: '21:00', end: '09:00' };
const lunch: QuietHours = { start: '12:00', end: '14:00' };
const MIN = 60_000;

function decide(rules: Partial<SendWindowRules> & { timezone: string }, planned: string, recentSends: string[] = []) {
  return nextSendTime(
    { spreadMs: 0, ...rules },
    { planned: at(planned), recentSends: recentSends.map(at), jitterKey: 'rec_1/0' },
  );
}

describe('nextSendTime: quiet hours', () => {
  it('releases an overnight quiet-hours message at the next local 09:00 plus jitter within the spread', () => {
    // 22:30 in Shanghai (UTC+8) on 10 May = 14:30Z; 09:00 on 11 May = 01:00Z.
    const spreadMs = 20 * MIN;
    const decision = nextSendTime(
      { timezone: 'Asia/Shanghai', quietHours: overnight, spreadMs },
      { planned: at('2024-05-10T14:30:00Z'), recentSends: [], jitterKey: 'rec_1/2' },
    );
    expect(decision.deferredBy).toBe('quiet_hours');
    const offset = decision.at.getTime() - at('2024-05-11T01:00:00Z').getTime();
    expect(offset).toBe(jitterMs('rec_1/2', spreadMs));
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset).toBeLessThan(spreadMs);
  });

  it('sends outside quiet hours at exactly the planned instant, without jitter', () => {
    const planned = at('2024-05-10T06:00:00Z'); // 14:00 Shanghai
    const decision = nextSendTime(
      { timezone: 'Asia/Shanghai', quietHours: overnight, spreadMs: 20 * MIN },
      { planned, recentSends: [], jitterKey: 'k' },
    );
    expect(decision).toEqual({ at: planned, deferredBy: undefined });
  });

  it('handles a window that does not span midnight (12:00–14:00)', () => {
    const rules = { timezone: 'Asia/Shanghai', quietHours: lunch };
    expect(decide(rules, '2024-05-10T04:30:00Z')).toEqual({
      at: at('2024-05-10T06:00:00Z'),
      deferredBy: 'quiet_hours',
    });
    expect(decide(rules, '2024-05-10T03:59:59.999Z').deferredBy).toBeUndefined(); // 11:59:59.999
    expect(decide(rules, '2024-05-10T13:00:00Z').deferredBy).toBeUndefined(); // 21:00 local, not quiet here
    expect(decide(rules, '2024-05-10T17:00:00Z').deferredBy).toBeUndefined(); // 01:00 local
  });

  it('treats the start as quiet and the end as allowed', () => {
    const rules = { timezone: 'Asia/Shanghai', quietHours: overnight };
    expect(decide(rules, '2024-05-10T13:00:00Z')).toEqual({
      at: at('2024-05-11T01:00:00Z'),
      deferredBy: 'quiet_hours',
    });
    expect(decide(rules, '2024-05-11T01:00:00Z')).toEqual({ at: at('2024-05-11T01:00:00Z'), deferredBy: undefined });
    expect(decide(rules, '2024-05-11T00:59:59.999Z').at).toEqual(at('2024-05-11T01:00:00Z'));
    expect(decide({ ...rules, quietHours: lunch }, '2024-05-10T04:00:00Z').at).toEqual(at('2024-05-10T06:00:00Z'));
    expect(decide({ ...rules, quietHours: lunch }, '2024-05-10T06:00:00Z').deferredBy).toBeUndefined();
  });

  it('treats quiet hours with start == end as no quiet hours', () => {
    const planned = '2024-05-10T14:30:00Z';
    const decision = decide({ timezone: 'Asia/Shanghai', quietHours: { start: '09:00', end: '09:00' } }, planned);
    expect(decision).toEqual({ at: at(planned), deferredBy: undefined });
    expect(isQuietTime({ start: '09:00', end: '09:00' }, 'Asia/Shanghai', at(planned))).toBe(false);
  });

  it('keeps the jitter inside the allowed window when the spread is longer than it', () => {
    // Quiet 09:05–09:00 leaves a 5-minute window; a 1-hour spread must not push into the next quiet hours.
    const quietHours = { start: '09:05', end: '09:00' };
    for (const key of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
      const decision = nextSendTime(
        { timezone: 'Asia/Shanghai', quietHours, spreadMs: 60 * MIN },
        { planned: at('2024-05-10T14:30:00Z'), recentSends: [], jitterKey: key },
      );
      expect(decision.at.getTime()).toBeGreaterThanOrEqual(at('2024-05-11T01:00:00Z').getTime());
      expect(decision.at.getTime()).toBeLessThan(at('2024-05-11T01:05:00Z').getTime());
      expect(isQuietTime(quietHours, 'Asia/Shanghai', decision.at)).toBe(false);
    }
  });
});

describe('nextSendTime: DST', () => {
  const ny = { timezone: 'America/New_York', quietHours: overnight };
  const london = { timezone: 'Europe/London', quietHours: overnight };

  it('America/New_York across spring-forward (10 Mar 2024) and fall-back (3 Nov 2024)', () => {
    // 22:00 EST on 9 Mar → 09:00 EDT on 10 Mar (UTC-4).
    expect(decide(ny, '2024-03-10T03:00:00Z').at).toEqual(at('2024-03-10T13:00:00Z'));
    // 01:59 EST just before the jump → same 09:00 EDT.
    expect(decide(ny, '2024-03-10T06:59:00Z').at).toEqual(at('2024-03-10T13:00:00Z'));
    // 22:00 EDT on 2 Nov → 09:00 EST on 3 Nov (UTC-5).
    expect(decide(ny, '2024-11-03T02:00:00Z').at).toEqual(at('2024-11-03T14:00:00Z'));
    // In the repeated hour, both passes of 01:30 → 09:00 EST.
    expect(decide(ny, '2024-11-03T05:30:00Z').at).toEqual(at('2024-11-03T14:00:00Z'));
    expect(decide(ny, '2024-11-03T06:30:00Z').at).toEqual(at('2024-11-03T14:00:00Z'));
    // 08:59 EST is still quiet, 09:00 EST is not.
    expect(decide(ny, '2024-11-03T13:59:00Z').at).toEqual(at('2024-11-03T14:00:00Z'));
    expect(decide(ny, '2024-11-03T14:00:00Z').deferredBy).toBeUndefined();
  });

  it('Europe/London across spring-forward (31 Mar 2024) and fall-back (27 Oct 2024)', () => {
    // 22:00 GMT on 30 Mar → 09:00 BST (UTC+1) = 08:00Z.
    expect(decide(london, '2024-03-30T22:00:00Z').at).toEqual(at('2024-03-31T08:00:00Z'));
    expect(decide(london, '2024-03-31T07:59:59Z').at).toEqual(at('2024-03-31T08:00:00Z'));
    expect(decide(london, '2024-03-31T08:00:00Z').deferredBy).toBeUndefined();
    // 22:30 BST on 26 Oct → 09:00 GMT = 09:00Z.
    expect(decide(london, '2024-10-26T21:30:00Z').at).toEqual(at('2024-10-27T09:00:00Z'));
    // 20:30 GMT (not quiet) on 27 Oct; 21:00 GMT starts quiet hours.
    expect(decide(london, '2024-10-27T20:30:00Z').deferredBy).toBeUndefined();
    expect(decide(london, '2024-10-27T21:00:00Z').at).toEqual(at('2024-10-28T09:00:00Z'));
  });

  it('resolves a quiet-hours end inside the spring-forward gap to the first instant after it', () => {
    // 02:30 does not exist in New York on 10 Mar 2024: 01:59:59 EST is followed by 03:00 EDT (07:00Z).
    const rules = { timezone: 'America/New_York', quietHours: { start: '22:00', end: '02:30' } };
    expect(decide(rules, '2024-03-10T04:00:00Z')).toEqual({
      at: at('2024-03-10T07:00:00Z'),
      deferredBy: 'quiet_hours',
    });
    expect(decide(rules, '2024-03-10T06:59:59.999Z').at).toEqual(at('2024-03-10T07:00:00Z'));
    expect(decide(rules, '2024-03-10T07:00:00Z').deferredBy).toBeUndefined();
    // The day after, 02:30 EDT exists again.
    expect(decide(rules, '2024-03-11T03:00:00Z').at).toEqual(at('2024-03-11T06:30:00Z'));
  });

  it('starts quiet hours whose start is inside the gap at the first instant after it', () => {
    const quietHours = { start: '02:30', end: '06:00' };
    expect(isQuietTime(quietHours, 'America/New_York', at('2024-03-10T06:59:59Z'))).toBe(false); // 01:59:59 EST
    expect(isQuietTime(quietHours, 'America/New_York', at('2024-03-10T07:00:00Z'))).toBe(true); // 03:00 EDT
    expect(decide({ timezone: 'America/New_York', quietHours }, '2024-03-10T07:00:00Z').at).toEqual(
      at('2024-03-10T10:00:00Z'),
    );
  });

  it('never goes back in time nor opens a second window in the repeated fall-back hour', () => {
    // Quiet 22:00–01:30 on the night of 2→3 Nov 2024: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    const quietHours = { start: '22:00', end: '01:30' };
    const rules = { timezone: 'America/New_York', quietHours };
    // 01:15 EST (second pass) reads as quiet: released at the second 01:30, not the earlier first one.
    expect(decide(rules, '2024-11-03T06:15:00Z')).toEqual({
      at: at('2024-11-03T06:30:00Z'),
      deferredBy: 'quiet_hours',
    });
    expect(decide(rules, '2024-11-03T05:45:00Z').at).toEqual(at('2024-11-03T06:30:00Z'));
    expect(decide(rules, '2024-11-03T06:30:00Z').deferredBy).toBeUndefined();

    // Minute by minute from 20:00 EDT to 12:00 EST, quiet hours switch on once and off once.
    let switches = 0;
    let previous = false;
    for (let t = at('2024-11-03T00:00:00Z').getTime(); t <= at('2024-11-03T17:00:00Z').getTime(); t += MIN) {
      const quiet = isQuietTime(quietHours, 'America/New_York', new Date(t));
      if (quiet !== previous) switches++;
      previous = quiet;
    }
    expect(switches).toBe(2);
  });

  it('does not reopen quiet hours that start in the repeated hour', () => {
    // Quiet 01:30–06:00: starts at the first 01:30 (05:30Z), so the second 01:30 (06:30Z) is already quiet.
    const rules = { timezone: 'America/New_York', quietHours: { start: '01:30', end: '06:00' } };
    expect(decide(rules, '2024-11-03T05:29:00Z').deferredBy).toBeUndefined();
    expect(decide(rules, '2024-11-03T05:30:00Z').at).toEqual(at('2024-11-03T11:00:00Z'));
    expect(decide(rules, '2024-11-03T06:30:00Z').at).toEqual(at('2024-11-03T11:00:00Z'));
  });
});

describe('nextSendTime: daily cap', () => {
  const shanghai = { timezone: 'Asia/Shanghai', maxPerDay: 2 };

  it('sends while the local day has fewer sends than the cap', () => {
    expect(decide(shanghai, '2024-05-10T06:00:00Z', ['2024-05-10T01:00:00Z']).deferredBy).toBeUndefined();
  });

  it("moves to the start of the next local day once today's cap is reached", () => {
    // Two sends on 10 May local; next day starts at 11 May 00:00 +08 = 10 May 16:00Z.
    const sends = ['2024-05-10T03:00:00Z', '2024-05-10T01:00:00Z', '2023-01-01T00:00:00Z'];
    expect(decide(shanghai, '2024-05-10T06:00:00Z', sends)).toEqual({
      at: at('2024-05-10T16:00:00Z'),
      deferredBy: 'daily_cap',
    });
  });

  it("counts the customer's local day, not the UTC day", () => {
    // 20:00Z and 23:30Z on 10 May are 04:00 and 07:30 on 11 May in Shanghai.
    const sends = ['2024-05-10T20:00:00Z', '2024-05-10T23:30:00Z'];
    // 10 May 14:00 local: that local day has no sends, although the UTC day has two.
    expect(decide(shanghai, '2024-05-10T06:00:00Z', sends).deferredBy).toBeUndefined();
    // 11 May 10:00 local (02:00Z, UTC day with no sends): the local day is full → 12 May 00:00 local.
    expect(decide(shanghai, '2024-05-11T02:00:00Z', sends)).toEqual({
      at: at('2024-05-11T16:00:00Z'),
      deferredBy: 'daily_cap',
    });
  });

  it('combines with quiet hours: the next day starts when its quiet hours end', () => {
    const rules = { ...shanghai, quietHours: overnight };
    const today = ['2024-05-10T01:00:00Z', '2024-05-10T02:00:00Z']; // 09:00 and 10:00 on 10 May
    // 15:00 on 10 May, day full → 11 May 00:00 is quiet → 09:00 on 11 May.
    expect(decide(rules, '2024-05-10T07:00:00Z', today)).toEqual({
      at: at('2024-05-11T01:00:00Z'),
      deferredBy: 'daily_cap',
    });
    // 22:30 on 10 May in quiet hours; 11 May already has two sends → 12 May 09:00.
    const tomorrow = ['2024-05-11T01:00:00Z', '2024-05-11T01:30:00Z'];
    expect(decide(rules, '2024-05-10T14:30:00Z', tomorrow)).toEqual({
      at: at('2024-05-12T01:00:00Z'),
      deferredBy: 'daily_cap',
    });
    // Same with an empty 11 May: plain quiet hours.
    expect(decide(rules, '2024-05-10T14:30:00Z', today)).toEqual({
      at: at('2024-05-11T01:00:00Z'),
      deferredBy: 'quiet_hours',
    });
  });

  it('skips several full days in a row', () => {
    const sends = [
      '2024-05-10T01:00:00Z',
      '2024-05-10T02:00:00Z',
      '2024-05-11T01:00:00Z',
      '2024-05-11T02:00:00Z',
      '2024-05-12T01:00:00Z',
      '2024-05-12T02:00:00Z',
    ];
    expect(decide({ ...shanghai, quietHours: overnight }, '2024-05-10T06:00:00Z', sends).at).toEqual(
      at('2024-05-13T01:00:00Z'),
    );
  });

  it('jitters a cap release within the spread and within the next local day', () => {
    const sends = ['2024-05-10T01:00:00Z', '2024-05-10T02:00:00Z'];
    const spreadMs = 20 * MIN;
    const decision = nextSendTime(
      { ...shanghai, spreadMs },
      { planned: at('2024-05-10T06:00:00Z'), recentSends: sends.map(at), jitterKey: 'rec_9/1' },
    );
    expect(decision.at.getTime() - at('2024-05-10T16:00:00Z').getTime()).toBe(jitterMs('rec_9/1', spreadMs));
    // A spread longer than a day is clamped so the message stays on the next local day.
    const wide = nextSendTime(
      { ...shanghai, spreadMs: 3 * 86_400_000 },
      { planned: at('2024-05-10T06:00:00Z'), recentSends: sends.map(at), jitterKey: 'rec_9/1' },
    );
    expect(wide.at.getTime()).toBeGreaterThanOrEqual(at('2024-05-10T16:00:00Z').getTime());
    expect(wide.at.getTime()).toBeLessThan(at('2024-05-11T16:00:00Z').getTime());
  });

  it('throws instead of looping forever when the cap allows nothing', () => {
    expect(() => decide({ timezone: 'UTC', maxPerDay: 0 }, '2024-05-10T06:00:00Z')).toThrow(/no allowed send time/);
  });
});

describe('nextSendTime: other zones', () => {
  it('Asia/Kolkata (UTC+05:30)', () => {
    const rules = { timezone: 'Asia/Kolkata', quietHours: overnight, maxPerDay: 1 };
    // 21:30 IST on 10 May → 09:00 IST on 11 May = 03:30Z.
    expect(decide(rules, '2024-05-10T16:00:00Z').at).toEqual(at('2024-05-11T03:30:00Z'));
    // A send at 18:45Z on 10 May is 00:15 IST on 11 May: the 11th is full → 09:00 IST on 12 May.
    expect(decide(rules, '2024-05-11T04:00:00Z', ['2024-05-10T18:45:00Z']).at).toEqual(at('2024-05-12T03:30:00Z'));
  });

  it('Pacific/Auckland, including its spring-forward (29 Sep 2024)', () => {
    const rules = { timezone: 'Pacific/Auckland', quietHours: overnight };
    // 22:30 NZDT (UTC+13) on 15 Jan → 09:00 NZDT on 16 Jan = 20:00Z on 15 Jan.
    expect(decide(rules, '2024-01-15T09:30:00Z').at).toEqual(at('2024-01-15T20:00:00Z'));
    // 22:00 NZST (UTC+12) on 28 Sep → 09:00 NZDT on 29 Sep = 20:00Z on 28 Sep.
    expect(decide(rules, '2024-09-28T10:00:00Z').at).toEqual(at('2024-09-28T20:00:00Z'));
    // Local day for the cap: 11:00Z on 15 Jan is 00:00 on 16 Jan in Auckland.
    const capped = { timezone: 'Pacific/Auckland', maxPerDay: 1 };
    expect(decide(capped, '2024-01-15T12:00:00Z', ['2024-01-15T11:00:00Z']).at).toEqual(at('2024-01-16T11:00:00Z'));
    expect(decide(capped, '2024-01-15T10:59:00Z', ['2024-01-15T11:00:00Z']).deferredBy).toBeUndefined();
  });
});

describe('invalid input', () => {
  it('throws a clear error for an unknown timezone instead of using UTC', () => {
    expect(() => decide({ timezone: 'Mars/Olympus_Mons' }, '2024-05-10T06:00:00Z')).toThrow(
      'unknown IANA timezone "Mars/Olympus_Mons"',
    );
    expect(() => decide({ timezone: '' }, '2024-05-10T06:00:00Z')).toThrow(/unknown IANA timezone/);
    expect(() => isQuietTime(overnight, 'Not/AZone', at('2024-05-10T06:00:00Z'))).toThrow(/unknown IANA timezone/);
  });

  it('throws for malformed quiet hours', () => {
    expect(() =>
      decide({ timezone: 'UTC', quietHours: { start: '9:00', end: '21:00' } }, '2024-05-10T06:00:00Z'),
    ).toThrow(/HH:MM/);
  });
});

describe('jitterMs', () => {
  it('is deterministic and within [0, spread)', () => {
    expect(jitterMs('rec_1/0', 1_200_000)).toBe(jitterMs('rec_1/0', 1_200_000));
    const values = Array.from({ length: 2000 }, (_, i) => jitterMs(`rec_${i}/3`, 1_200_000));
    for (const value of values) {
      expect(Number.isInteger(value)).toBe(true);
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1_200_000);
    }
    // Spread over the range rather than clumped.
    expect(Math.min(...values)).toBeLessThan(60_000);
    expect(Math.max(...values)).toBeGreaterThan(1_140_000);
    expect(new Set(values).size).toBeGreaterThan(1990);
  });

  it('is 0 without a spread', () => {
    expect(jitterMs('rec_1/0', 0)).toBe(0);
    expect(jitterMs('rec_1/0', 1)).toBe(0);
    expect(jitterMs('rec_1/0', -5)).toBe(0);
  });
});

describe('nextSendTime: properties', () => {
  const zones = [
    'America/New_York',
    'Europe/London',
    'Asia/Shanghai',
    'Asia/Kolkata',
    'Pacific/Auckland',
    'Australia/Lord_Howe', // 30-minute DST shift
    'America/Havana', // DST changes at midnight
    'UTC',
  ];
  // DST transitions to cluster instants around, plus an ordinary stretch.
  const anchors = [
    '2024-03-10T07:00:00Z',
    '2024-11-03T06:00:00Z',
    '2024-03-31T01:00:00Z',
    '2024-10-27T01:00:00Z',
    '2024-04-06T14:00:00Z',
    '2024-09-28T14:00:00Z',
    '2024-10-05T15:00:00Z',
    '2024-03-10T05:00:00Z',
    '2024-11-03T05:00:00Z',
    '2024-06-15T00:00:00Z',
  ].map((iso) => at(iso).getTime());
  const clock = fc
    .tuple(fc.integer({ min: 0, max: 23 }), fc.constantFrom(0, 15, 30, 45, 59))
    .map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);
  const wallMinutes = (ts: number, zone: string) => {
    const local = DateTime.fromMillis(ts, { zone });
    return { minutes: local.hour * 60 + local.minute, exact: local.second === 0 && local.millisecond === 0 };
  };
  const toMinutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));
  const readsQuiet = (minutes: number, q: QuietHours) => {
    const s = toMinutes(q.start);
    const e = toMinutes(q.end);
    if (s === e) return false;
    return s < e ? minutes >= s && minutes < e : minutes >= s || minutes < e;
  };

  it('never sends before planned, in quiet hours, or over the cap; spread 0 lands on planned or a boundary', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...zones),
        fc.constantFrom(...anchors),
        fc.integer({ min: -3 * 86_400_000, max: 3 * 86_400_000 }),
        fc.option(fc.record({ start: clock, end: clock }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
        fc.array(fc.integer({ min: -2 * 86_400_000, max: 2 * 86_400_000 }), { maxLength: 8 }),
        fc.constantFrom(0, 0, 20 * MIN, 3 * 3_600_000),
        fc.string(),
        (timezone, anchor, delta, quietHours, maxPerDay, sendDeltas, spreadMs, jitterKey) => {
          const planned = anchor + delta;
          const recentSends = sendDeltas.map((d) => new Date(planned + d));
          const decision = nextSendTime(
            { timezone, quietHours, maxPerDay, spreadMs },
            { planned: new Date(planned), recentSends, jitterKey },
          );
          const result = decision.at.getTime();
          expect(result).toBeGreaterThanOrEqual(planned);
          expect(decision.deferredBy === undefined).toBe(result === planned);

          if (quietHours) {
            expect(isQuietTime(quietHours, timezone, decision.at)).toBe(false);
            // Independent of the module: the customer's wall clock does not read quiet hours.
            expect(readsQuiet(wallMinutes(result, timezone).minutes, quietHours)).toBe(false);
          }
          if (maxPerDay !== undefined) {
            const day = DateTime.fromMillis(result, { zone: timezone }).toISODate();
            const sameDay = recentSends.filter((s) => DateTime.fromJSDate(s, { zone: timezone }).toISODate() === day);
            expect(sameDay.length).toBeLessThan(maxPerDay);
          }
          if (spreadMs === 0 && result !== planned) {
            const wall = wallMinutes(result, timezone);
            const atQuietEnd = quietHours !== undefined && wall.exact && wall.minutes === toMinutes(quietHours.end);
            const atMidnight = wall.exact && wall.minutes === 0;
            const zoneOffset = (ts: number) => DateTime.fromMillis(ts, { zone: timezone }).offset;
            const afterGap = zoneOffset(result - 1) !== zoneOffset(result);
            expect(atQuietEnd || atMidnight || afterGap).toBe(true);
          }
        },
      ),
      { numRuns: 1500, seed: 20240310 },
    );
  });

  it('releases at the quiet end across both New York DST nights (plain loop)', () => {
    // Every 10 minutes of 9–11 Mar and 2–4 Nov 2024 in New York: result is after planned and outside quiet hours.
    for (const [from, to] of [
      ['2024-03-09T12:00:00Z', '2024-03-11T12:00:00Z'],
      ['2024-11-02T12:00:00Z', '2024-11-04T12:00:00Z'],
    ] as const) {
      for (let t = at(from).getTime(); t < at(to).getTime(); t += 10 * MIN) {
        for (const quietHours of [
          overnight,
          lunch,
          { start: '22:00', end: '01:30' },
          { start: '01:30', end: '02:30' },
        ]) {
          const decision = decide({ timezone: 'America/New_York', quietHours }, new Date(t).toISOString());
          expect(decision.at.getTime()).toBeGreaterThanOrEqual(t);
          expect(isQuietTime(quietHours, 'America/New_York', decision.at)).toBe(false);
          if (decision.deferredBy)
            expect(isQuietTime(quietHours, 'America/New_York', new Date(decision.at.getTime() - 1))).toBe(true);
        }
      }
    }
  });
});

describe('nextSendTime: shared per-zone caches', () => {
  it('gives the same answers after its caches have filled and started over', () => {
    // 23:00 local in New York on 6,000 consecutive days (> the 4,096 entries a zone cache keeps, and
    // across 16 DST changes): each is released at that zone's next local 09:00, whatever was cached before.
    const rules = { timezone: 'America/New_York', quietHours: overnight, spreadMs: 0 };
    const start = DateTime.fromISO('2020-01-01T23:00', { zone: 'America/New_York' });
    const releases = (): number[] =>
      Array.from({ length: 6_000 }, (_, day) => {
        const planned = start.plus({ days: day });
        const decision = nextSendTime(rules, { planned: planned.toJSDate(), recentSends: [], jitterKey: 'k' });
        return decision.at.getTime();
      });
    const first = releases();
    first.forEach((release, day) => {
      const expected = start.plus({ days: day + 1 }).set({ hour: 9, minute: 0 });
      expect(release).toBe(expected.toMillis());
    });
    expect(releases()).toEqual(first);
  });
});

describe('stepDueAt: the distance between steps', () => {
  // The default cadence's first two steps: an SMS 15 min after the failure, an email at 2 h.
  const steps = [{ afterMs: 15 * MIN }, { afterMs: 120 * MIN }, { afterMs: 24 * 60 * MIN }];
  const cadence = { steps } as Parameters<typeof stepDueAt>[0];
  const start = at('2026-03-10T12:50:00Z'); // 20:50 in Shanghai: the SMS is due at 21:05, inside quiet hours
  const gap = 120 * MIN;

  it('is the cadence time while the previous step went out on time', () => {
    expect(stepDueAt(cadence, 0, start, undefined, gap)).toEqual(at('2026-03-10T13:05:00Z'));
    expect(stepDueAt(cadence, 1, start, at('2026-03-10T13:05:00Z'), gap)).toEqual(at('2026-03-10T14:50:00Z'));
  });

  it('keeps the cadence spacing after a step released late, up to the minimum gap', () => {
    // The SMS went out at 09:00 the next morning (01:00Z): the email follows 1 h 45 min later, its cadence
    // spacing, not in the same minute.
    expect(stepDueAt(cadence, 1, start, at('2026-03-11T01:00:00Z'), gap)).toEqual(at('2026-03-11T02:45:00Z'));
    // 22 h between the email and the last SMS: the gap caps the wait at 2 h.
    expect(stepDueAt(cadence, 2, start, at('2026-03-12T01:00:00Z'), gap)).toEqual(at('2026-03-12T03:00:00Z'));
  });

  it('turns off with a gap of 0, and has nothing past the last step', () => {
    expect(stepDueAt(cadence, 1, start, at('2026-03-11T01:00:00Z'), 0)).toEqual(at('2026-03-11T01:00:00Z'));
    expect(stepDueAt(cadence, 3, start, undefined, gap)).toBeUndefined();
  });

  it('with the quiet-hours window, releases the two steps of a deferred night apart', () => {
    const rules = { timezone: 'Asia/Shanghai', quietHours: overnight, spreadMs: 0 };
    const sms = nextSendTime(rules, {
      planned: stepDueAt(cadence, 0, start, undefined, gap)!,
      recentSends: [],
      jitterKey: 'r/0',
    });
    expect(sms).toEqual({ at: at('2026-03-11T01:00:00Z'), deferredBy: 'quiet_hours' });
    const email = nextSendTime(rules, {
      planned: stepDueAt(cadence, 1, start, sms.at, gap)!,
      recentSends: [sms.at],
      jitterKey: 'r/1',
    });
    expect(email.at.getTime() - sms.at.getTime()).toBe(105 * MIN);
  });
});
