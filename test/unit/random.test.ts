import { describe, expect, it } from 'vitest';
import { randomBase64url, randomHex } from '../../src/platform/random.js';

describe('random', () => {
  it('gives hex and base64url strings of the asked-for length', () => {
    expect(randomHex(8)).toMatch(/^[0-9a-f]{16}$/);
    expect(randomBase64url(24)).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it('never hands out the same bytes twice, across many refills of the pool', () => {
    // 20,000 × 12 bytes ≈ 59 refills of the 4 KB pool; a repeated slice would show as a duplicate.
    const ids = new Set<string>();
    for (let i = 0; i < 20_000; i += 1) ids.add(randomHex(12));
    expect(ids.size).toBe(20_000);
  });

  it('refills rather than returning a short slice at the end of the pool', () => {
    // 4,096 is not a multiple of 24, so some call straddles the end of the pool.
    for (let i = 0; i < 1_000; i += 1) expect(randomBase64url(24)).toHaveLength(32);
  });

  it('refuses a request larger than the pool', () => {
    expect(() => randomHex(5_000)).toThrow(/at most 4096 bytes/);
  });
});
