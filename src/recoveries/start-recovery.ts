import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import { selectCadence } from '../cadences/select-cadence.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory } from '../domain.js';
import { newId } from '../ids.js';
import type { Wakeup } from '../queue/queues.js';

export type StartOutcome =
  | { started: true; recoveryId: string; cadence: string; version: number; wakeup: Wakeup }
  | { started: false; reason: 'already_exists' | 'no_matching_cadence' };

/**
 * Starts the one recovery an order may ever have, with the best-matching active cadence.
 * Must run in the transaction that holds the order's row lock.
 */
export async function startRecovery(
  tx: Tx,
  cadences: CadenceBook,
  order: { id: string; customerId: string; amount: number; currency: string },
  category: FailureCategory,
  now: Date,
  requestedCadence?: string | null,
): Promise<StartOutcome> {
  const existing = await rows<{ id: string }>(tx, sql`select id from recoveries where order_id = ${order.id}`);
  if (existing.length > 0) return { started: false, reason: 'already_exists' };

  const active = await cadences.active(tx);
  // A cadence the shop named wins, but fraud never gets reminders unless that cadence asks for it.
  const requested = requestedCadence
    ? active.find(
        (c) =>
          c.name === requestedCadence &&
          (category !== 'fraud_suspected' || c.cadence.match.failureCategories.includes('fraud_suspected')),
      )
    : undefined;
  const chosen = requested ?? selectCadence(active, order, category);
  if (!chosen) return { started: false, reason: 'no_matching_cadence' };
  const firstStep = chosen.cadence.steps[0];
  if (!firstStep) return { started: false, reason: 'no_matching_cadence' };

  const recoveryId = newId('rec');
  const runAt = new Date(now.getTime() + firstStep.afterMs);
  const expiresAt = new Date(now.getTime() + chosen.cadence.expireAfterMs);
  const inserted = await rows<{ id: string }>(
    tx,
    sql`insert into recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category,
                                state, step_index, next_run_at, wake_seq, started_at, expires_at)
        values (${recoveryId}, ${order.id}, ${order.customerId}, ${chosen.name}, ${chosen.version}, ${category},
                'active', 0, ${runAt}, 0, ${now}, ${expiresAt})
        on conflict (order_id) do nothing
        returning id`,
  );
  if (inserted.length === 0) return { started: false, reason: 'already_exists' };
  return {
    started: true,
    recoveryId,
    cadence: chosen.name,
    version: chosen.version,
    wakeup: { recoveryId, wakeSeq: 0, runAt },
  };
}
