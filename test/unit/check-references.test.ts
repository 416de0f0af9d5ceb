import { describe, expect, it } from 'vitest';
import { referencesIn } from '../../scripts/check-references.js';

const targets = (file: string, text: string) => referencesIn(file, text).map((r) => r.target);

describe('references to repository files', () => {
  it('reads paths from the repository root, without the punctuation after them', () => {
    const text = [
      '// the lease (src/recoveries/send-lease.ts), see docs/payments.md#stripe.',
      '/** Folders: migrations/ and test/integration/cli.int.test.ts:42 */',
    ].join('\n');
    expect(referencesIn('src/config.ts', text)).toEqual([
      { line: 1, reference: 'src/recoveries/send-lease.ts', target: 'src/recoveries/send-lease.ts' },
      { line: 1, reference: 'docs/payments.md', target: 'docs/payments.md' },
      { line: 2, reference: 'migrations/', target: 'migrations/' },
      { line: 2, reference: 'test/integration/cli.int.test.ts', target: 'test/integration/cli.int.test.ts' },
    ]);
  });

  it('leaves URLs, other paths and globs alone, and stops at placeholders', () => {
    const text = [
      'https://docs.stripe.com/api and http://localhost:3000/src/x.ts',
      'dist/config.js, ./src/config.ts, node_modules/x/src/y.ts, @scope/docs/z, test-artifacts/vitest.json',
      'src/**/*.ts and src/payments/gateways/<vendor>/ and ${PUBLIC_URL}/docs/x.md',
    ].join('\n');
    expect(targets('src/config.ts', text)).toEqual(['src/', 'src/payments/gateways/']);
  });

  it('resolves relative markdown links from the page, skipping URLs and anchors', () => {
    const text =
      'See [payments](payments.md#alipay), [the schema](../src/config.ts), ![chart](measurements/a%20b.png), ' +
      '[Stripe](https://stripe.com/docs) and [below](#defaults).';
    expect(targets('docs/configuration.md', text)).toEqual([
      'docs/payments.md',
      'src/config.ts',
      // Built so that the checker itself does not read it as a reference to a missing file.
      ['docs', 'measurements', 'a b.png'].join('/'),
    ]);
    // Only markdown pages have markdown links.
    expect(targets('src/config.ts', '[payments](payments.md)')).toEqual([]);
  });
});
