import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { CadenceVersion } from '../cadences/cadence.js';
import { selectCadence } from '../cadences/select-cadence.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import type { Wakeup } from '../queue/queues.js';
import { inHoldout } from './holdout.js';

export type StartOutcome =
  | { started: true; recoveryId: string; cadence: string; version: number; holdout: boolean; wakeup: Wakeup }
  | { started: false; reason: 'already_exists' | 'no_matching_cadence' };

/**
 * Starts the one recovery an order may ever have, with the best-matching active cadence.
 * Must run in the transaction that holds the order's row lock.
 *
 * An order in the holdout (control) group gets a recovery like any other, so its payment is
 * tracked the same way, but it skips every step: its only wake-up is at expiry.
 */
export async function startRecovery(
  tx: Tx,
  cadences: CadenceBook,
  order: { id: string; customerId: string; amount: number; currency: string; failedMethod?: string | null },
  category: FailureCategory,
  now: Date,
  requestedCadence?: string | null,
): Promise<StartOutcome> {
  const existing = await rows<{ id: string }>(tx, sql`select id from recoveries where order_id = ${order.id}`);
  if (existing.length > 0) return { started: false, reason: 'already_exists' };

  const plan = planRecovery(
    await cadences.active(tx),
    order,
    category,
    now,
    requestedCadence,
    cadences.defaultHoldoutPercent,
  );
  if (!plan) return { started: false, reason: 'no_matching_cadence' };
  const { chosen, recoveryId, holdout, stepIndex, runAt, expiresAt } = plan;
  const inserted = await rows<{ id: string }>(
    tx,
    sql`insert into recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category,
                                state, step_index, next_run_at, wake_seq, started_at, expires_at,
                                holdout, currency, failed_method)
        values (${recoveryId}, ${order.id}, ${order.customerId}, ${chosen.name}, ${chosen.version}, ${category},
                'active', ${stepIndex}, ${runAt}, 0, ${now}, ${expiresAt},
                ${holdout}, ${order.currency}, ${order.failedMethod ?? null})
        on conflict (order_id) do nothing
        returning id`,
  );
  if (inserted.length === 0) return { started: false, reason: 'already_exists' };
  return {
    started: true,
    recoveryId,
    cadence: chosen.name,
    version: chosen.version,
    holdout,
    wakeup: { recoveryId, wakeSeq: 0, runAt },
  };
}

export interface RecoveryPlan {
  chosen: CadenceVersion;
  recoveryId: string;
  holdout: boolean;
  /** 0, or past the last step for a holdout recovery. */
  stepIndex: number;
  runAt: Date;
  expiresAt: Date;
}

/**
 * The recovery an order would start now: its cadence (the one the shop named, else the best match),
 * its holdout group and its first wake-up. Undefined when no active cadence matches. Pure: intake's
 * one-statement path (apply-event.ts) plans before it knows whether a recovery exists already.
 */
export function planRecovery(
  active: CadenceVersion[],
  order: { id: string; amount: number; currency: string },
  category: FailureCategory,
  now: Date,
  requestedCadence: string | null | undefined,
  defaultHoldoutPercent: number,
): RecoveryPlan | undefined {
  // Nothing is due: a "please pay 0.00" helps no one.
  if (order.amount <= 0) return undefined;
  // A cadence the shop named wins, but fraud never gets reminders unless that cadence asks for it.
  const requested = requestedCadence
    ? active.find(
        (c) =>
          c.name === requestedCadence &&
          (category !== 'fraud_suspected' || c.cadence.match.failureCategories.includes('fraud_suspected')),
      )
    : undefined;
  const chosen = requested ?? selectCadence(active, order, category);
  const firstStep = chosen?.cadence.steps[0];
  if (!chosen || !firstStep) return undefined;
  const holdout = inHoldout(order.id, chosen.cadence.holdoutPercent ?? defaultHoldoutPercent);
  const expiresAt = new Date(now.getTime() + chosen.cadence.expireAfterMs);
  return {
    chosen,
    recoveryId: newId('rec'),
    holdout,
    stepIndex: holdout ? chosen.cadence.steps.length : 0,
    runAt: holdout ? expiresAt : new Date(now.getTime() + firstStep.afterMs),
    expiresAt,
  };
}
