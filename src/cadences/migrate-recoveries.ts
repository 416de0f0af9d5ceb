import { sql } from 'drizzle-orm';
import { audit } from '../access/audit.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { RecoupError, validationError } from '../errors.js';
import type { Wakeup } from '../queue/queues.js';
import { cadenceSubject, storedCadenceVersion, type CadenceChange } from './cadence-versions.js';

export interface MigrationRequest {
  name: string;
  fromVersion: number;
  toVersion: number;
}

export interface MigrationResult {
  /** Active recoveries moved from `fromVersion` to `toVersion`. */
  moved: number;
  /** Of those, the ones whose step the new version does not have: they now wait for their expiry. */
  toExpiry: number;
  recoveryIds: string[];
  /** Wake-ups to add once committed (each moved recovery got a fresh wake sequence). */
  wakeups: Wakeup[];
}

interface RecoveryRow {
  id: string;
  step_index: number;
  started_at: Date;
}

/**
 * Moves every active recovery of `name` on `fromVersion` to `toVersion`, keeping its step index
 * (its next step is the new version's step at that index, due at start + `after`, or now if that
 * has passed) and recomputing its expiry from the new `expire_after`. A recovery past the new
 * version's last step moves to its expiry. Ended recoveries keep their version: it is their record.
 *
 * Takes the recoveries' order locks first, in id order, like every writer of a recovery's schedule,
 * so no step of a moved recovery is being claimed meanwhile (a send already claimed finishes on the
 * old version). A `scheduled` (deferred) message of the current step takes the new template; one
 * the new version has no step for is skipped as `cadence_migrated`. Audited as `cadence.migrated`.
 */
export async function migrateRecoveries(
  db: Db,
  request: MigrationRequest,
  change: CadenceChange,
): Promise<MigrationResult> {
  const { name, fromVersion, toVersion } = request;
  if (fromVersion === toVersion) {
    throw validationError([{ path: 'to_version', message: 'must differ from from_version' }]);
  }
  return db.transaction(async (tx) => {
    const from = await storedCadenceVersion(tx, name, fromVersion);
    const to = await storedCadenceVersion(tx, name, toVersion);
    if (!from) throw new RecoupError('not_found', `Cadence ${name} has no version ${fromVersion}`);
    if (!to) throw new RecoupError('not_found', `Cadence ${name} has no version ${toVersion}`);

    await tx.execute(
      sql`select o.id from orders o join recoveries r on r.order_id = o.id
          where r.cadence_name = ${name} and r.cadence_version = ${fromVersion} and r.state = 'active'
          order by o.id for update of o`,
    );
    const found = await rows<RecoveryRow>(
      tx,
      sql`select id, step_index, started_at from recoveries
          where cadence_name = ${name} and cadence_version = ${fromVersion} and state = 'active'
          order by id for update`,
    );

    const now = change.at;
    const wakeups: Wakeup[] = [];
    let toExpiry = 0;
    for (const recovery of found) {
      const expiresAt = new Date(recovery.started_at.getTime() + to.cadence.expireAfterMs);
      const step = to.cadence.steps[recovery.step_index];
      if (!step) toExpiry += 1;
      const planned = step ? new Date(recovery.started_at.getTime() + step.afterMs) : expiresAt;
      const runAt = planned < now ? now : planned;
      const [updated] = await rows<{ wake_seq: number }>(
        tx,
        sql`update recoveries set cadence_version = ${toVersion}, expires_at = ${expiresAt}, next_run_at = ${runAt},
                                  wake_seq = wake_seq + 1
            where id = ${recovery.id} returning wake_seq`,
      );
      if (updated) wakeups.push({ recoveryId: recovery.id, wakeSeq: updated.wake_seq, runAt });
      await tx.execute(
        step
          ? sql`update messages set template = ${step.template}, updated_at = ${now}
                where recovery_id = ${recovery.id} and step = ${recovery.step_index} and status = 'scheduled'`
          : sql`update messages set status = 'skipped', reason = 'cadence_migrated', claim_id = null, updated_at = ${now}
                where recovery_id = ${recovery.id} and step = ${recovery.step_index} and status = 'scheduled'`,
      );
    }

    const result = { moved: found.length, toExpiry, recoveryIds: found.map((r) => r.id), wakeups };
    await audit(tx, {
      actor: change.actor,
      action: 'cadence.migrated',
      subject: cadenceSubject(name),
      before: { version: fromVersion },
      after: { version: toVersion, moved: result.moved, to_expiry: toExpiry, recovery_ids: result.recoveryIds },
      at: change.at,
    });
    return result;
  });
}
