import { and, asc, eq, max, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { DbOrTx } from '../db/tx.js';
import { cadences } from '../db/schema.js';
import { validationError } from '../platform/errors.js';
import type { Cadence, CadenceVersion } from './cadence.js';

// Transaction-scoped advisory lock taken by every apply. Any constant works as long as
// every recoup process agrees (the migration lock is 7_302_114).
const applyLockId = 7_302_115;

export interface AppliedCadence {
  name: string;
  version: number;
  /** False when the active version already had this exact definition. */
  changed: boolean;
}

/**
 * Makes each cadence the active version of its name, in one transaction. An identical
 * definition (deep-equal to the active one) changes nothing; anything else becomes a
 * new immutable version max+1 and replaces the active one. Concurrent applies are
 * serialised by an advisory lock, so they never produce duplicate versions or two
 * active ones. Cadences not listed are left as they are.
 */
export async function applyCadences(db: Db, list: Cadence[], source?: string): Promise<AppliedCadence[]> {
  const duplicates = list.map((c) => c.name).filter((name, i, names) => names.indexOf(name) !== i);
  if (duplicates.length > 0) {
    throw validationError(duplicates.map((name) => ({ path: 'name', message: `cadence "${name}" is listed twice` })));
  }

  return db.transaction(async (tx) => {
    // One lock for all applies rather than one per name: applies are rare admin actions,
    // and a single lock cannot deadlock however the lists overlap.
    await tx.execute(sql`select pg_advisory_xact_lock(${applyLockId}::bigint)`);

    const results: AppliedCadence[] = [];
    for (const cadence of list) {
      const [active] = await tx
        .select({ version: cadences.version, definition: cadences.definition })
        .from(cadences)
        .where(and(eq(cadences.name, cadence.name), eq(cadences.active, true)));
      if (active && canonicalJson(active.definition) === canonicalJson(cadence)) {
        results.push({ name: cadence.name, version: active.version, changed: false });
        continue;
      }

      const [latest] = await tx
        .select({ version: max(cadences.version) })
        .from(cadences)
        .where(eq(cadences.name, cadence.name));
      const version = (latest?.version ?? 0) + 1;
      // Deactivate first: the partial unique index allows one active row per name.
      await tx
        .update(cadences)
        .set({ active: false })
        .where(and(eq(cadences.name, cadence.name), eq(cadences.active, true)));
      await tx.insert(cadences).values({
        name: cadence.name,
        version,
        definition: cadence,
        source: source ?? null,
        active: true,
      });
      results.push({ name: cadence.name, version, changed: true });
    }
    return results;
  });
}

/** The active version of every cadence, by name. */
export async function activeCadences(db: DbOrTx): Promise<CadenceVersion[]> {
  const found = await db.select().from(cadences).where(eq(cadences.active, true)).orderBy(asc(cadences.name));
  return found.map(toVersion);
}

export async function getCadenceVersion(
  db: DbOrTx,
  name: string,
  version: number,
): Promise<CadenceVersion | undefined> {
  const [row] = await db
    .select()
    .from(cadences)
    .where(and(eq(cadences.name, name), eq(cadences.version, version)));
  return row ? toVersion(row) : undefined;
}

/** Every stored version (of one cadence when `name` is given), by name then version. */
export async function listCadenceVersions(db: DbOrTx, name?: string): Promise<CadenceVersion[]> {
  const found = await db
    .select()
    .from(cadences)
    .where(name === undefined ? undefined : eq(cadences.name, name))
    .orderBy(asc(cadences.name), asc(cadences.version));
  return found.map(toVersion);
}

function toVersion(row: typeof cadences.$inferSelect): CadenceVersion {
  return {
    name: row.name,
    version: row.version,
    cadence: fromStored(row.definition),
    active: row.active,
    createdAt: row.createdAt,
  };
}

/**
 * jsonb drops keys whose value is undefined; put them back so a stored cadence has
 * the same shape as a freshly validated one. Definitions were validated before they
 * were stored and versions are immutable, so they are not validated again.
 */
function fromStored(definition: unknown): Cadence {
  const stored = definition as Cadence;
  return {
    ...stored,
    quietHours: stored.quietHours ?? undefined,
    maxMessagesPerDay: stored.maxMessagesPerDay ?? undefined,
    switchChannelOnFailure: stored.switchChannelOnFailure ?? true,
  };
}

/** JSON with sorted keys and undefined members dropped: equal strings mean deep-equal definitions. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    const record = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(record)
        .sort()
        .map((k) => [k, record[k]]),
    );
  });
}
