import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateCadence } from '../../src/cadences/parse-cadence.js';
import {
  editorSource,
  locateIssues,
  pathSegments,
  readCadenceYaml,
  versionDiff,
} from '../../src/console/cadence-editor.js';
import { ConsolePages } from '../../src/console/console-pages.js';
import { addressFingerprint, maskedJson, shownTime } from '../../src/console/format.js';

const text = `# comment
name: weekday
match: { failure_categories: [any], currencies: [any] }
expire_after: 2h
steps:
  - after: 30m
    channel: sms
    template: nudge
  - { after: 3h, channel: email, template: alternative-methods }
`;

describe('cadence editor', () => {
  it('splits validator paths into YAML paths', () => {
    expect(pathSegments('steps[2].after')).toEqual(['steps', 2, 'after']);
    expect(pathSegments('[0].match.currencies[1]')).toEqual([0, 'match', 'currencies', 1]);
    expect(pathSegments('')).toEqual([]);
  });

  it('reads one cadence and places every issue on its line, or its nearest parent’s', () => {
    const read = readCadenceYaml(text, {});
    expect(read.ok).toBe(false);
    if (read.ok) return;
    expect(read.issues).toEqual([
      expect.objectContaining({
        path: 'steps[1].after',
        line: 9,
        excerpt: '- { after: 3h, channel: email, template: alternative-methods }',
      }),
    ]);
    // A missing key points at the mapping that lacks it.
    expect(locateIssues(text, [{ path: 'quiet_hours.start', message: 'x' }])[0]?.line).toBeNull();
    expect(locateIssues(text, [{ path: 'steps[0].incentive', message: 'x' }])[0]?.line).toBe(6);
  });

  it('reports YAML syntax errors with their line, and refuses several cadences or a renamed one', () => {
    const syntax = readCadenceYaml('name: a\nsteps: [\n', {});
    expect(syntax.ok || syntax.issues[0]?.message).toMatch(/^YAML syntax error/);
    const two = readCadenceYaml(`${text}---\n${text}`, {});
    expect(two.ok || two.issues[0]?.message).toBe('write exactly one cadence (a mapping) here');
    const fixed = text.replace('expire_after: 2h', 'expire_after: 4h');
    expect(readCadenceYaml(fixed, {}).ok).toBe(true);
    const renamed = readCadenceYaml(fixed, {}, 'weekend');
    expect(renamed.ok || renamed.issues).toEqual([
      expect.objectContaining({ path: 'name', line: 2, message: expect.stringContaining('must stay "weekend"') }),
    ]);
  });

  it('edits the document a version came from, or its definition written as YAML', () => {
    const cadence = validateCadence({
      name: 'b',
      match: { failure_categories: ['any'], currencies: ['any'] },
      expire_after: '1h',
      steps: [{ after: '5m', channel: 'sms', template: 'nudge' }],
    });
    const other = text.replace('weekday', 'a').replace('expire_after: 2h', 'expire_after: 4h');
    const own = '# b\nname: b\nexpire_after: 1h\n';
    expect(editorSource({ name: 'b', cadence, source: own })).toBe(own);
    // From a file with several documents: only b's.
    expect(editorSource({ name: 'b', cadence, source: `${other}---\n${own}` })).toBe(own);
    const fromJson = editorSource({ name: 'b', cadence, source: '{"name":"b"}' });
    expect(fromJson).toContain('name: b\n');
    expect(fromJson).toContain('- after: 5m');
    expect(editorSource({ name: 'b', cadence, source: null })).toBe(fromJson);
  });

  it('diffs versions line by line with context', () => {
    const after = text.replace('after: 30m', 'after: 20m');
    expect(versionDiff(text, text)).toEqual([]);
    expect(versionDiff(text, after)).toEqual([
      { kind: 'hunk', text: '@@ -3,7 +3,7 @@' },
      { kind: 'ctx', text: ' match: { failure_categories: [any], currencies: [any] }' },
      { kind: 'ctx', text: ' expire_after: 2h' },
      { kind: 'ctx', text: ' steps:' },
      { kind: 'del', text: '-  - after: 30m' },
      { kind: 'add', text: '+  - after: 20m' },
      { kind: 'ctx', text: '     channel: sms' },
      { kind: 'ctx', text: '     template: nudge' },
      { kind: 'ctx', text: '   - { after: 3h, channel: email, template: alternative-methods }' },
    ]);
  });
});

describe('console formatting', () => {
  it('masks addresses inside audit values', () => {
    expect(maskedJson({ email: 'li@example.com', phone: '+8613800138000', step: 1, note: 'hi' })).toBe(
      '{"email":"l***@example.com","phone":"+86*******8000","step":1,"note":"hi"}',
    );
    expect(maskedJson(null)).toBeNull();
  });

  it('tells apart audited addresses that differ only in the middle, without showing them', () => {
    const fingerprint = addressFingerprint('console-test-secret');
    const before = maskedJson({ email: 'john.smith@example.com', phone: '+8613800138000' }, fingerprint) ?? '';
    const after = maskedJson({ email: 'john.smyth@example.com', phone: '+8613811138000' }, fingerprint) ?? '';
    expect(before).toMatch(/^\{"email":"j\*\*\*@example\.com #[0-9a-f]{6}","phone":"\+86\*{7}8000 #[0-9a-f]{6}"\}$/);
    const b = JSON.parse(before) as { email: string; phone: string };
    const a = JSON.parse(after) as { email: string; phone: string };
    expect(a.email).not.toBe(b.email);
    expect(a.phone).not.toBe(b.phone);
    for (const text of [before, after]) expect(text).not.toMatch(/smith|smyth|13800|13811/);
    // The same address always reads the same (spaces and case aside); another secret, another fingerprint.
    expect(maskedJson({ email: 'john.smith@example.com' }, fingerprint)).toBe(`{"email":"${b.email}"}`);
    expect(fingerprint('John.Smith@Example.com')).toBe(fingerprint('john.smith@example.com'));
    expect(fingerprint('+86 138 0013 8000')).toBe(fingerprint('+8613800138000'));
    expect(maskedJson({ email: 'john.smith@example.com' }, addressFingerprint('another-secret'))).not.toBe(
      `{"email":"${b.email}"}`,
    );
  });

  it('shows times in UTC with the customer’s wall clock', () => {
    expect(shownTime(new Date('2026-03-08T07:30:00Z'), 'America/New_York')).toEqual({
      iso: '2026-03-08T07:30:00.000Z',
      utc: '2026-03-08 07:30:00 UTC',
      local: '2026-03-08 03:30 America/New_York',
    });
    expect(shownTime(null)).toBeNull();
  });
});

describe('console pages', () => {
  it('compile, and fail the start listing what is broken', () => {
    expect(() => ConsolePages.load(path.resolve('templates/console'))).not.toThrow();
    expect(() => ConsolePages.load(path.resolve('templates/pages'))).toThrow(/cadences\.hbs: missing/);
  });
});
