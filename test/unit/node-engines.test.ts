import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import semver from 'semver';

const root = path.resolve(import.meta.dirname, '../..');
const declared = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } })
  .engines.node;

/** Every package.json under node_modules (scoped and nested ones too). */
function* installedPackages(dir: string): Generator<{ name: string; version: string; engines?: { node?: string } }> {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const at = path.join(dir, entry.name);
    if (entry.name.startsWith('@')) {
      yield* installedPackages(at);
      continue;
    }
    const manifest = path.join(at, 'package.json');
    if (fs.existsSync(manifest)) yield JSON.parse(fs.readFileSync(manifest, 'utf8'));
    yield* installedPackages(path.join(at, 'node_modules'));
  }
}

// recoup declares the Node versions it runs on: every dependency it installs must accept all of them,
// or `npm ci` warns EBADENGINE on a Node the project says it supports.
describe('Node versions', () => {
  it('every installed package accepts every Node version recoup declares', () => {
    const refusing = [...installedPackages(path.join(root, 'node_modules'))]
      .filter((p) => p.engines?.node && semver.validRange(p.engines.node) && !semver.subset(declared, p.engines.node))
      .map((p) => `${p.name}@${p.version} wants node ${p.engines!.node}`);
    expect(refusing).toEqual([]);
  });
});
