import { describe, expect, it } from 'vitest';
import { areaOf, importsOf, loops, mutualAreas } from '../../scripts/check-areas.js';

const graph = (edges: Record<string, string[]>) => new Map(Object.entries(edges).map(([a, bs]) => [a, new Set(bs)]));

describe('the area check', () => {
  it('names the area of a file: its first folder, or the file itself at the top', () => {
    expect(areaOf('recoveries/dispatch-step.ts')).toBe('recoveries');
    expect(areaOf('payments/gateways/stripe/stripe-gateway.ts')).toBe('payments');
    expect(areaOf('config.ts')).toBe('config');
  });

  it('reads static, dynamic and re-exporting relative imports, not packages', () => {
    const text = [
      "import { a } from '../platform/clock.js';",
      "import type { B } from './b.js';",
      "export { c } from '../c/c.js';",
      "const d = await import('../d/d.js');",
      "import { z } from 'zod';",
    ].join('\n');
    expect(importsOf(text)).toEqual(['../platform/clock.js', './b.js', '../c/c.js', '../d/d.js']);
  });

  it('finds two areas that import each other', () => {
    const edges = graph({ http: ['platform'], access: ['http'], console: ['access', 'http'], platform: [] });
    expect(mutualAreas(edges)).toEqual([]);
    edges.get('http')?.add('access');
    expect(mutualAreas(edges)).toEqual([['access', 'http']]);
  });

  it('finds a loop through three areas once, and no loop in a layered graph', () => {
    expect(loops(graph({ a: ['b'], b: ['c'], c: [] }))).toEqual([]);
    expect(loops(graph({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] }))).toEqual([['a', 'b', 'c']]);
  });
});
