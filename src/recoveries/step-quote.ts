import type { Cadence, CadenceStep } from '../cadences/cadence.js';
import type { Tx } from '../db/tx.js';
import { computeCharge, linkCharge, type Charge, type ChargeBasis } from '../pricing/charge.js';
import { grantStepIncentive } from '../pricing/incentives.js';
import type { RecoveryRow } from './step-decision.js';
import type { StepRead } from './step-store.js';

/**
 * The amount a step's reminder quotes: exactly what its link will charge while it works
 * (linkCharge, src/pricing/charge.ts), computed at the moment the link is issued. A step with an
 * incentive grants it in its claim's transaction first (src/pricing/incentives.ts), so the grant
 * and the reminder quoting it commit together; the fast path leaves such a claim to the locked path.
 */

/** INCENTIVE_PERIOD's default: at most one incentive per customer within 90 days. */
const defaultIncentivePeriodMs = 90 * 86_400_000;

/** Whether claiming this step grants an incentive first: the step has one and the order none yet. */
export function grantsIncentive(read: StepRead, step: CadenceStep, recovery: RecoveryRow): boolean {
  return (
    step.incentive !== undefined && !read.chargeBasis?.incentive && recovery.failure_category !== 'fraud_suspected'
  );
}

/** The step's charge from what was read, for a link issued `now`. */
export function stepCharge(read: StepRead, orderAmount: string, now: Date): Charge {
  return linkCharge(basisOf(read, orderAmount), now);
}

/**
 * The locked path's charge for a step it sends, for a link issued `now`: first grants the step's
 * incentive when the order may have it (the transaction holds the order's row lock).
 */
export async function lockedStepCharge(
  tx: Tx,
  read: StepRead,
  send: { step: CadenceStep; cadence: Cadence },
  incentivePeriodMs: number | undefined,
  now: Date,
): Promise<Charge> {
  const { recovery, order } = read.snapshot;
  if (!recovery || !order) throw new Error('a send decision without its recovery and order');
  if (!grantsIncentive(read, send.step, recovery)) return stepCharge(read, order.amount, now);
  const basis = basisOf(read, order.amount);
  const amount = await grantStepIncentive(tx, {
    orderId: order.id,
    customerId: order.customer_id,
    recoveryId: recovery.id,
    cadence: send.cadence,
    cadenceName: recovery.cadence_name,
    step: recovery.step_index,
    failureCategory: recovery.failure_category,
    currency: order.currency,
    total: computeCharge({ orderAmount: basis.orderAmount, coupon: basis.coupon, now }).total,
    now,
    periodMs: incentivePeriodMs ?? defaultIncentivePeriodMs,
  });
  return linkCharge({ ...basis, incentive: amount > 0 ? { amount, grantedAt: now } : basis.incentive }, now);
}

function basisOf(read: StepRead, orderAmount: string): ChargeBasis {
  return read.chargeBasis ?? { orderAmount: Number(orderAmount), coupon: null, incentive: null };
}
