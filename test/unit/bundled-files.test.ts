import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledCadencesDir } from '../../src/app/service.js';
import { loadConfig } from '../../src/config.js';
import { migrationsFolder } from '../../src/db/client.js';
import { bundledLocalesDir } from '../../src/platform/locale-files.js';

// The folders recoup ships beside its code are found from the module's own location, in src/ and
// in dist/ alike: a module moved to another folder must still find them.
describe('files shipped beside the code', () => {
  it('finds the bundled cadences', () => {
    expect(fs.existsSync(path.join(bundledCadencesDir, 'default.yaml'))).toBe(true);
  });

  it('finds the migrations', () => {
    expect(fs.existsSync(path.join(migrationsFolder, 'meta', '_journal.json'))).toBe(true);
  });

  it('finds the shipped templates', () => {
    expect(fs.existsSync(path.join(loadConfig({}).templatesDir, 'nudge'))).toBe(true);
  });

  it('finds the locale files', () => {
    expect(fs.existsSync(path.join(bundledLocalesDir, 'en', 'pages.yaml'))).toBe(true);
  });
});
