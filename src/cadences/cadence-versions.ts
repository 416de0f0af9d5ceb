import { isDeepStrictEqual } from 'node:util';
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import { audit } from '../access/audit.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { cadences } from '../db/schema.js';
import type { DbOrTx, Tx } from '../db/tx.js';
import { RecoupError } from '../platform/errors.js';
import type { Cadence } from './cadence.js';
import { cadenceToDocument } from './parse-cadence.js';

/**
 * Saving and activating single cadence versions, for the API and the console (the CLI applies
 * whole files through cadence-store.ts). Every change is audited in its own transaction.
 */

// The lock cadence-store.ts takes for applies (its `applyLockId`): saves, activations and applies
// from every process then never interleave, so versions stay dense and one stays active.
const cadenceLockId = 7_302_115;

/** Who makes a change and when. */
export interface CadenceChange {
  /** Audit actor, e.g. `key:key_…` (see principalActor). */
  actor: string;
  at: Date;
}

/** One stored version with what it was saved from. */
export interface StoredCadenceVersion {
  name: string;
  version: number;
  active: boolean;
  createdAt: Date;
  cadence: Cadence;
  /** The YAML or JSON text as sent; null for versions stored without one. */
  source: string | null;
}

export interface SaveResult {
  version: StoredCadenceVersion;
  /** False when the definition equalled the latest version's: nothing new was stored. */
  created: boolean;
  /** False when the saved version was already the active one (or `activate` was off). */
  activated: boolean;
  previousActive: number | null;
}

/**
 * Stores `cadence` as the next version of its name (1 for a new name). A definition deep-equal to
 * the latest version stores nothing (saving twice is not a change), but is still activated when
 * asked. With `activate` (default) the version becomes the active one; recoveries already running
 * keep the version they started with. `mustBeNew`: a name that has versions is a `conflict`.
 * Audited as `cadence.saved` (with before/after definitions) and `cadence.activated`.
 */
export async function saveCadenceVersion(
  db: Db,
  cadence: Cadence,
  options: { source: string | null; activate: boolean; mustBeNew?: boolean },
  change: CadenceChange,
): Promise<SaveResult> {
  return db.transaction(async (tx) => {
    await lock(tx);
    const versions = await selectVersions(tx, cadence.name);
    if (options.mustBeNew && versions.length > 0) {
      throw new RecoupError('conflict', `Cadence ${cadence.name} already exists; PUT /v1/cadences/${cadence.name}`);
    }
    const latest = versions.at(-1);
    const active = versions.find((v) => v.active);
    let saved: StoredCadenceVersion;
    let created = false;
    if (latest && sameDefinition(latest.cadence, cadence)) {
      saved = latest;
    } else {
      const [row] = await tx
        .insert(cadences)
        .values({
          name: cadence.name,
          version: (latest?.version ?? 0) + 1,
          definition: cadence,
          source: options.source,
          active: false,
          createdAt: change.at,
        })
        .returning();
      if (!row) throw new RecoupError('internal', 'cadence insert returned no row');
      saved = toStored(row);
      created = true;
      await audit(tx, {
        actor: change.actor,
        action: 'cadence.saved',
        subject: cadenceSubject(cadence.name),
        before: latest ? versionAudit(latest) : null,
        after: versionAudit(saved),
        at: change.at,
      });
    }
    let activated = false;
    if (options.activate && !saved.active) {
      saved = await setActive(tx, saved, active, change);
      activated = true;
    }
    return { version: saved, created, activated, previousActive: active?.version ?? null };
  });
}

/**
 * Makes `version` the active version of `name`; new recoveries start on it, running ones keep
 * theirs. Activating the active version changes nothing (and is not audited).
 * Throws `not_found` for an unknown name or version.
 */
export async function activateCadenceVersion(
  db: Db,
  name: string,
  version: number,
  change: CadenceChange,
): Promise<{ version: StoredCadenceVersion; changed: boolean; previousActive: number | null }> {
  return db.transaction(async (tx) => {
    await lock(tx);
    const versions = await selectVersions(tx, name);
    if (versions.length === 0) throw new RecoupError('not_found', `No cadence ${name}`);
    const target = versions.find((v) => v.version === version);
    if (!target) throw new RecoupError('not_found', `Cadence ${name} has no version ${version}`);
    const active = versions.find((v) => v.active);
    if (target.active) return { version: target, changed: false, previousActive: version };
    return {
      version: await setActive(tx, target, active, change),
      changed: true,
      previousActive: active?.version ?? null,
    };
  });
}

/** Every version of `name`, oldest first; empty for an unknown name. */
export async function cadenceHistory(db: DbOrTx, name: string): Promise<StoredCadenceVersion[]> {
  return selectVersions(db, name);
}

export async function storedCadenceVersion(
  db: DbOrTx,
  name: string,
  version: number,
): Promise<StoredCadenceVersion | undefined> {
  const [row] = await db
    .select()
    .from(cadences)
    .where(and(eq(cadences.name, name), eq(cadences.version, version)));
  return row ? toStored(row) : undefined;
}

/** Per name: the active version (if any) and the latest one, by name. */
export async function cadenceOverview(
  db: DbOrTx,
): Promise<Array<{ name: string; active: StoredCadenceVersion | undefined; latest: StoredCadenceVersion }>> {
  const found = (
    await db
      .select()
      .from(cadences)
      .where(
        sql`${cadences.active} or ${cadences.version} = (select max(c.version) from cadences c where c.name = ${cadences.name})`,
      )
      .orderBy(asc(cadences.name), asc(cadences.version))
  ).map(toStored);
  const byName = new Map<string, { active: StoredCadenceVersion | undefined; latest: StoredCadenceVersion }>();
  for (const version of found) {
    const entry = byName.get(version.name) ?? { active: undefined, latest: version };
    if (version.active) entry.active = version;
    if (version.version >= entry.latest.version) entry.latest = version;
    byName.set(version.name, entry);
  }
  return [...byName].map(([name, entry]) => ({ name, ...entry }));
}

/** The active version of `name`, else its latest; undefined for an unknown name. */
export async function currentCadenceVersion(db: DbOrTx, name: string): Promise<StoredCadenceVersion | undefined> {
  const [row] = await db
    .select()
    .from(cadences)
    .where(eq(cadences.name, name))
    .orderBy(desc(cadences.active), desc(cadences.version))
    .limit(1);
  return row ? toStored(row) : undefined;
}

/** Who saved each version through the API (from the audit log); versions applied from files have none. */
export async function cadenceSavers(db: DbOrTx, name: string): Promise<Map<number, string>> {
  const found = await rows<{ version: number; actor: string }>(
    db,
    sql`select (after->>'version')::int as version, actor from audit_log
        where subject = ${cadenceSubject(name)} and action = 'cadence.saved'`,
  );
  return new Map(found.map((r) => [r.version, r.actor]));
}

async function setActive(
  tx: Tx,
  target: StoredCadenceVersion,
  previous: StoredCadenceVersion | undefined,
  change: CadenceChange,
): Promise<StoredCadenceVersion> {
  // Deactivate first: the partial unique index allows one active row per name.
  await tx
    .update(cadences)
    .set({ active: false })
    .where(and(eq(cadences.name, target.name), eq(cadences.active, true)));
  await tx
    .update(cadences)
    .set({ active: true })
    .where(and(eq(cadences.name, target.name), eq(cadences.version, target.version)));
  await audit(tx, {
    actor: change.actor,
    action: 'cadence.activated',
    subject: cadenceSubject(target.name),
    before: previous ? { version: previous.version } : null,
    after: { version: target.version },
    at: change.at,
  });
  return { ...target, active: true };
}

async function lock(tx: Tx): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${cadenceLockId}::bigint)`);
}

async function selectVersions(db: DbOrTx, name: string): Promise<StoredCadenceVersion[]> {
  const found = await db.select().from(cadences).where(eq(cadences.name, name)).orderBy(asc(cadences.version));
  return found.map(toStored);
}

function toStored(row: typeof cadences.$inferSelect): StoredCadenceVersion {
  const stored = row.definition as Cadence;
  return {
    name: row.name,
    version: row.version,
    active: row.active,
    createdAt: row.createdAt,
    // jsonb drops keys holding undefined; put the optional limits back as cadence-store does.
    cadence: {
      ...stored,
      quietHours: stored.quietHours ?? undefined,
      maxMessagesPerDay: stored.maxMessagesPerDay ?? undefined,
      switchChannelOnFailure: stored.switchChannelOnFailure ?? true,
    },
    source: row.source,
  };
}

/** Equal once undefined members are dropped (as jsonb does); key order does not matter. */
function sameDefinition(a: Cadence, b: Cadence): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
}

function versionAudit(version: StoredCadenceVersion) {
  return { version: version.version, definition: cadenceToDocument(version.cadence) };
}

/** The audit subject of a cadence's changes. */
export function cadenceSubject(name: string): string {
  return `cadence:${name}`;
}
