import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/platform/clock.js';
import { faultClock } from '../../src/platform/fault-injection.js';

describe('faultClock', () => {
  it('is the system clock without an offset', () => {
    expect(faultClock(undefined)).toBe(systemClock);
    expect(faultClock('after_claim_nth=3')).toBe(systemClock);
  });

  it('runs ahead or behind by clock_offset_ms, next to crash points', () => {
    for (const [spec, offset] of [
      ['clock_offset_ms=1500', 1500],
      ['after_claim_nth=3,clock_offset_ms=-1200', -1200],
    ] as const) {
      const before = Date.now();
      const at = faultClock(spec).now().getTime();
      expect(at - offset).toBeGreaterThanOrEqual(before);
      expect(at - offset).toBeLessThanOrEqual(Date.now());
    }
  });
});
