import { describe, expect, it } from 'vitest';
import { newRetryToken, retryUrl } from '../../src/retry-links/retry-token.js';

describe('newRetryToken', () => {
  it('is 22 base64url characters holding 16 bytes (128 bits)', () => {
    for (let i = 0; i < 200; i += 1) {
      const token = newRetryToken();
      expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const bytes = Buffer.from(token, 'base64url');
      expect(bytes).toHaveLength(16);
      // Canonical: the token is exactly the encoding of its bytes, nothing lost or padded.
      expect(bytes.toString('base64url')).toBe(token);
    }
  });

  it('draws every one of the 128 bits at random', () => {
    // Over 2,000 draws each bit is set about half the time; a constant or biased bit
    // (e.g. fewer random bytes, or a counter) would sit near 0 or 2,000.
    const draws = 2_000;
    const ones = new Array<number>(128).fill(0);
    for (let i = 0; i < draws; i += 1) {
      const bytes = Buffer.from(newRetryToken(), 'base64url');
      for (let bit = 0; bit < 128; bit += 1) {
        if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) ones[bit]! += 1;
      }
    }
    for (const count of ones) {
      expect(count).toBeGreaterThan(draws * 0.4);
      expect(count).toBeLessThan(draws * 0.6);
    }
  });

  it('never repeats over many draws', () => {
    const draws = 50_000;
    const seen = new Set<string>();
    for (let i = 0; i < draws; i += 1) seen.add(newRetryToken());
    expect(seen.size).toBe(draws);
  });
});

describe('retryUrl', () => {
  it('puts the token under /r/ of the public URL', () => {
    expect(retryUrl('https://pay.example-shop.com', 'AAAAAAAAAAAAAAAAAAAAAA')).toBe(
      'https://pay.example-shop.com/r/AAAAAAAAAAAAAAAAAAAAAA',
    );
  });
});
