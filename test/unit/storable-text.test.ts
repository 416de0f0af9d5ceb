import { describe, expect, it } from 'vitest';
import { maxNestingDepth, nestsDeeperThan, unstorableTextPaths } from '../../src/platform/storable-text.js';

/** A value nested `depth` levels deep (the outermost array is level 1), holding `leaf` at the bottom. */
function nested(depth: number, leaf: unknown): unknown {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { a: value };
  return value;
}

describe('storable text', () => {
  it('names unstorable strings and keys in document order', () => {
    const value = { a: 'ok', b: ['x\u0000', { c: '\ud800' }], ['k\u0000']: { ignored: '\u0000' }, d: '\u0000' };
    expect(unstorableTextPaths(value)).toEqual([['b', 0], ['b', 1, 'c'], ['k\u0000'], ['d']]);
    expect(unstorableTextPaths({ a: ['fine', { b: 1, c: null }], d: Buffer.from([0]) })).toEqual([]);
  });

  it('walks any depth without running out of stack', () => {
    const deep = nested(100_000, '\u0000');
    const path = unstorableTextPaths(deep)[0];
    expect(path).toHaveLength(100_000);
    expect(unstorableTextPaths(nested(100_000, 'fine'))).toEqual([]);
  });

  it('tells a value nested past the cap from one at it', () => {
    expect(nestsDeeperThan(nested(maxNestingDepth, 'x'), maxNestingDepth)).toBe(false);
    expect(nestsDeeperThan(nested(maxNestingDepth + 1, 'x'), maxNestingDepth)).toBe(true);
    expect(nestsDeeperThan(nested(100_000, 'x'), maxNestingDepth)).toBe(true);
    // Width is not depth, and scalars nest nothing.
    expect(
      nestsDeeperThan(
        Array.from({ length: 10_000 }, () => ({ a: [1] })),
        3,
      ),
    ).toBe(false);
    expect(nestsDeeperThan('text', 0)).toBe(false);
    expect(nestsDeeperThan([], 0)).toBe(true);
  });
});
