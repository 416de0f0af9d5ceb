import { sql } from 'drizzle-orm';
import { audit } from '../access/audit.js';
import type { Db } from '../db/client.js';
import type { Tx } from '../db/tx.js';
import { rows } from '../db/rows.js';
import { RecoupError, validationError } from '../platform/errors.js';
import type { Wakeup } from '../queue/queues.js';
import { cadenceSubject, storedCadenceVersion, type CadenceChange } from './cadence-versions.js';
import { planMigration, type StepMessage } from './migration-plan.js';

export interface MigrationRequest {
  name: string;
  fromVersion: number;
  toVersion: number;
}

export interface MigrationResult {
  /** Active recoveries moved from `fromVersion` to `toVersion`. */
  moved: number;
  /** Of those, the ones with no step of the new version left to run: they now wait for their expiry. */
  toExpiry: number;
  recoveryIds: string[];
  /** Wake-ups to add once committed (each moved recovery got a fresh wake sequence). */
  wakeups: Wakeup[];
}

interface RecoveryRow {
  id: string;
  started_at: Date;
  holdout: boolean;
}

/**
 * Moves every active recovery of `name` on `fromVersion` to `toVersion`, placing it by the
 * templates it was already sent rather than by step index (see planMigration): it continues at the
 * first step of the new version that none of its messages stands for, due at start + `after`, or
 * now if that has passed, and its expiry is recomputed from the new `expire_after`. Its step
 * messages are renumbered to the new version's steps, so the dispatcher, which skips a step that
 * has a decided message, never sends a template twice however the steps were reordered. A recovery
 * with nothing left to run, and a holdout recovery (never messaged), moves to its expiry. Ended
 * recoveries keep their version: it is their record.
 *
 * Takes the recoveries' order locks first, in id order, like every writer of a recovery's schedule,
 * so no step of a moved recovery is being claimed meanwhile (a send already claimed finishes on the
 * old version). A `scheduled` (deferred) message takes the template of the step the recovery
 * continues at; one with no step left is skipped as `cadence_migrated`. Audited as `cadence.migrated`.
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
      sql`select id, started_at, holdout from recoveries
          where cadence_name = ${name} and cadence_version = ${fromVersion} and state = 'active'
          order by id for update`,
    );

    const now = change.at;
    const wakeups: Wakeup[] = [];
    let toExpiry = 0;
    const templates = to.cadence.steps.map((s) => s.template);
    const messages = await rows<StepMessage & { recovery_id: string }>(
      tx,
      sql`select id, recovery_id, step, template, status from messages
          where recovery_id in (select jsonb_array_elements_text(${ids(found.map((r) => r.id))})) and step is not null`,
    );
    for (const recovery of found) {
      const plan = recovery.holdout
        ? { stepIndex: templates.length, renumber: new Map<string, number>(), dropped: [] }
        : planMigration(
            messages.filter((m) => m.recovery_id === recovery.id),
            templates,
          );
      const expiresAt = new Date(recovery.started_at.getTime() + to.cadence.expireAfterMs);
      const step = to.cadence.steps[plan.stepIndex];
      if (!step) toExpiry += 1;
      const planned = step ? new Date(recovery.started_at.getTime() + step.afterMs) : expiresAt;
      const runAt = planned < now ? now : planned;
      const [updated] = await rows<{ wake_seq: number }>(
        tx,
        sql`update recoveries set cadence_version = ${toVersion}, step_index = ${plan.stepIndex},
                                  expires_at = ${expiresAt}, next_run_at = ${runAt}, wake_seq = wake_seq + 1
            where id = ${recovery.id} returning wake_seq`,
      );
      if (updated) wakeups.push({ recoveryId: recovery.id, wakeSeq: updated.wake_seq, runAt });
      await renumberMessages(tx, plan.renumber);
      if (plan.deferred) {
        await tx.execute(
          sql`update messages set template = ${plan.deferred.template}, updated_at = ${now}
              where id = ${plan.deferred.id} and status = 'scheduled'`,
        );
      }
      if (plan.dropped.length > 0) {
        await tx.execute(
          sql`update messages set status = 'skipped', reason = 'cadence_migrated', claim_id = null, updated_at = ${now}
              where id in (select jsonb_array_elements_text(${ids(plan.dropped)})) and status = 'scheduled'`,
        );
      }
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

/**
 * Moves messages to their steps in the new version. Steps are unique per recovery and a reorder
 * swaps them, so the moved rows let go of their old steps first.
 */
async function renumberMessages(tx: Tx, renumber: ReadonlyMap<string, number>): Promise<void> {
  if (renumber.size === 0) return;
  const moves = [...renumber].map(([id, step]) => ({ id, step }));
  await tx.execute(
    sql`update messages set step = null where id in (select jsonb_array_elements_text(${ids(moves.map((m) => m.id))}))`,
  );
  await tx.execute(
    sql`update messages m set step = j.step
        from jsonb_to_recordset(${JSON.stringify(moves)}::jsonb) as j(id text, step integer)
        where m.id = j.id`,
  );
}

function ids(values: readonly string[]) {
  return sql`${JSON.stringify(values)}::jsonb`;
}
