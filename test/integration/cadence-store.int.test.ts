import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Cadence } from '../../src/cadences/cadence.js';
import {
  activeCadences,
  applyCadences,
  getCadenceVersion,
  listCadenceVersions,
} from '../../src/cadences/cadence-store.js';
import { validateCadence } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

function cadence(name: string, overrides: Record<string, unknown> = {}): Cadence {
  return validateCadence({
    name,
    expire_after: '72h',
    steps: [
      { after: '15m', channel: 'sms', template: 'nudge' },
      { after: '2h', channel: 'email', template: 'alternative-methods' },
    ],
    ...overrides,
  });
}

describe('cadence store', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.drop();
  });
  beforeEach(async () => {
    await database.db.execute(sql`delete from cadences`);
  });

  it('creates version 1, active, with its source', async () => {
    const applied = await applyCadences(database.db, [cadence('default')], 'name: default\n');
    expect(applied).toEqual([{ name: 'default', version: 1, changed: true }]);

    const [stored] = await listCadenceVersions(database.db, 'default');
    expect(stored).toMatchObject({ name: 'default', version: 1, active: true });
    expect(stored?.createdAt).toBeInstanceOf(Date);
    // What comes back is the same Cadence, undefined fields included, despite jsonb dropping them.
    expect(stored?.cadence).toStrictEqual(cadence('default'));
    const [row] = await rows<{ source: string }>(database.db, sql`select source from cadences where name = 'default'`);
    expect(row?.source).toBe('name: default\n');
  });

  it('leaves an identical definition unchanged', async () => {
    await applyCadences(database.db, [
      cadence('default', { description: 'Polite', quiet_hours: { start: '21:00', end: '09:00' } }),
    ]);
    const again = await applyCadences(database.db, [
      cadence('default', { description: 'Polite', quiet_hours: { start: '21:00', end: '09:00' } }),
    ]);
    expect(again).toEqual([{ name: 'default', version: 1, changed: false }]);
    expect(await listCadenceVersions(database.db)).toHaveLength(1);
  });

  it('makes a changed definition version 2 and deactivates version 1', async () => {
    await applyCadences(database.db, [cadence('default')]);
    const changed = cadence('default', { max_messages_per_day: 1 });
    expect(await applyCadences(database.db, [changed])).toEqual([{ name: 'default', version: 2, changed: true }]);

    const versions = await listCadenceVersions(database.db, 'default');
    expect(versions.map((v) => [v.version, v.active])).toEqual([
      [1, false],
      [2, true],
    ]);
    expect((await getCadenceVersion(database.db, 'default', 1))?.cadence.maxMessagesPerDay).toBeUndefined();
    expect((await getCadenceVersion(database.db, 'default', 2))?.cadence).toStrictEqual(changed);
    expect(await getCadenceVersion(database.db, 'default', 3)).toBeUndefined();

    // Going back to the first definition is a new version too: versions are immutable history.
    expect(await applyCadences(database.db, [cadence('default')])).toEqual([
      { name: 'default', version: 3, changed: true },
    ]);
  });

  it('applies several cadences in one call and lists the active ones by name', async () => {
    const applied = await applyCadences(database.db, [cadence('zeta'), cadence('alpha')]);
    expect(applied).toEqual([
      { name: 'zeta', version: 1, changed: true },
      { name: 'alpha', version: 1, changed: true },
    ]);
    await applyCadences(database.db, [cadence('alpha', { expire_after: '48h' }), cadence('zeta')]);

    const active = await activeCadences(database.db);
    expect(active.map((v) => [v.name, v.version])).toEqual([
      ['alpha', 2],
      ['zeta', 1],
    ]);
    expect(active[0]?.cadence.expireAfterMs).toBe(48 * 3_600_000);
    expect((await listCadenceVersions(database.db)).map((v) => `${v.name}@${v.version}`)).toEqual([
      'alpha@1',
      'alpha@2',
      'zeta@1',
    ]);
  });

  it('rolls back the whole apply when one cadence fails', async () => {
    await expect(applyCadences(database.db, [cadence('a'), cadence('a')])).rejects.toMatchObject({
      code: 'validation',
    });
    await applyCadences(database.db, [cadence('kept')]);
    const bad = { ...cadence('broken'), name: null } as unknown as Cadence;
    await expect(applyCadences(database.db, [cadence('kept', { max_messages_per_day: 3 }), bad])).rejects.toThrow();
    expect((await listCadenceVersions(database.db)).map((v) => `${v.name}@${v.version}:${v.active}`)).toEqual([
      'kept@1:true',
    ]);
  });

  it('serialises concurrent applies: unique versions, exactly one active', async () => {
    await applyCadences(database.db, [cadence('busy')]);
    const definitions = [1, 2, 3, 4, 5].map((n) => cadence('busy', { max_messages_per_day: n }));
    const results = await Promise.all(definitions.map((d) => applyCadences(database.db, [d])));

    const versions = results.map(([r]) => r?.version).sort();
    expect(versions).toEqual([2, 3, 4, 5, 6]);
    expect(results.every(([r]) => r?.changed)).toBe(true);

    const stored = await listCadenceVersions(database.db, 'busy');
    expect(stored.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6]);
    const active = stored.filter((v) => v.active);
    expect(active).toHaveLength(1);
    expect(active[0]?.version).toBe(6);
    // The last apply to commit wins, and its definition is the one active.
    const winner = results.find(([r]) => r?.version === 6)?.[0];
    const winnerIndex = results.findIndex(([r]) => r === winner);
    expect(active[0]?.cadence).toStrictEqual(definitions[winnerIndex]);
  });

  it('does not deadlock when concurrent applies touch the same names in different orders', async () => {
    const forward = [cadence('p', { max_messages_per_day: 1 }), cadence('q', { max_messages_per_day: 1 })];
    const backward = [cadence('q', { max_messages_per_day: 2 }), cadence('p', { max_messages_per_day: 2 })];
    await Promise.all([
      applyCadences(database.db, forward),
      applyCadences(database.db, backward),
      applyCadences(database.db, forward),
    ]);
    const active = await activeCadences(database.db);
    expect(active.map((v) => v.name)).toEqual(['p', 'q']);
    expect((await listCadenceVersions(database.db)).length).toBeGreaterThanOrEqual(4);
  });
});
