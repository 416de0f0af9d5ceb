import { sql } from 'drizzle-orm';
import type { Cadence, StepIncentive } from '../cadences/cadence.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';

/** The discount a step's incentive gives on `total` (minor units): never more than the total. */
export function incentiveAmount(incentive: StepIncentive, total: number): number {
  let amount =
    incentive.percent !== undefined ? Math.floor((total * incentive.percent) / 100) : (incentive.amount ?? 0);
  if (incentive.maxAmount !== undefined) amount = Math.min(amount, incentive.maxAmount);
  return Math.max(0, Math.min(amount, total));
}

export interface IncentiveContext {
  orderId: string;
  customerId: string;
  recoveryId: string;
  cadence: Cadence;
  cadenceName: string;
  step: number | null;
  failureCategory: FailureCategory;
  currency: string;
  /** What would be charged without an incentive. */
  total: number;
  now: Date;
  /** At most one incentive per customer within this period. */
  periodMs: number;
}

/**
 * Incentives are granted when the reminder of a step that carries one is sent (its claim's
 * transaction, src/recoveries/dispatch-step.ts), so that the reminder can quote the discounted
 * amount and its link charge exactly that (linkCharge, src/pricing/charge.ts). A reminder sent
 * without one never gets one later; the order keeps one once granted.
 */

/**
 * The incentive this order may have, guarded against abuse: never for suspected fraud, one
 * per customer per period (an order that already has one keeps it), and within the
 * cadence's monthly budget per currency. Takes the customer's and the budget's locks, held until
 * the transaction commits, so two grants never both read "nothing granted yet".
 */
async function eligibleIncentive(db: Tx, ctx: IncentiveContext): Promise<number> {
  const [granted] = await rows<{ amount: string }>(
    db,
    sql`select amount::text as amount from incentives where order_id = ${ctx.orderId}`,
  );
  if (granted) return Math.min(Number(granted.amount), ctx.total);
  const incentive = ctx.step === null ? undefined : ctx.cadence.steps[ctx.step]?.incentive;
  if (!incentive || ctx.failureCategory === 'fraud_suspected') return 0;
  const amount = incentiveAmount(incentive, ctx.total);
  if (amount === 0) return 0;

  const monthStart = new Date(Date.UTC(ctx.now.getUTCFullYear(), ctx.now.getUTCMonth(), 1));
  await lockIncentiveScope(db, ctx, monthStart);
  const [recent] = await rows<{ id: string }>(
    db,
    sql`select id from incentives where customer_id = ${ctx.customerId}
          and granted_at > ${new Date(ctx.now.getTime() - ctx.periodMs)} limit 1`,
  );
  if (recent) return 0;
  if (ctx.cadence.incentiveMonthlyBudget !== undefined) {
    const [spent] = await rows<{ total: string }>(
      db,
      sql`select coalesce(sum(amount), 0)::text as total from incentives
          where cadence_name = ${ctx.cadenceName} and currency = ${ctx.currency} and granted_at >= ${monthStart}`,
    );
    if (Number(spent?.total ?? 0) + amount > ctx.cadence.incentiveMonthlyBudget) return 0;
  }
  return amount;
}

/**
 * Two orders of one customer hold different order locks, so without these both could read "no
 * incentive yet" (or "budget left") before either grants, and both would grant. Transaction
 * advisory locks serialise the read-then-grant per customer and per (cadence, currency, month)
 * budget until the granting transaction commits; under read committed the reads that follow see
 * whatever the previous holder granted. Only a step's claim takes them, always after the order's
 * row lock and the daily cap's locks, then the customer's, then the budget's.
 */
async function lockIncentiveScope(db: Tx, ctx: IncentiveContext, monthStart: Date): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(hashtext(${`recoup:incentive:customer:${ctx.customerId}`}))`);
  if (ctx.cadence.incentiveMonthlyBudget === undefined) return;
  const month = monthStart.toISOString().slice(0, 7);
  await db.execute(
    sql`select pg_advisory_xact_lock(
          hashtext(${`recoup:incentive:budget:${ctx.cadenceName}:${ctx.currency}:${month}`}))`,
  );
}

/**
 * Grants the step's incentive if the order may have it, in the transaction that claims the step's
 * reminder under the order's row lock; returns what the order has then (0: none). Granted at
 * `ctx.now`, the moment the reminder's link is issued.
 */
export async function grantStepIncentive(tx: Tx, ctx: IncentiveContext): Promise<number> {
  const amount = await eligibleIncentive(tx, ctx);
  if (amount <= 0) return 0;
  await tx.execute(
    sql`insert into incentives (id, customer_id, order_id, recovery_id, cadence_name, step, amount, currency, status,
                                granted_at)
        values (${newId('inc')}, ${ctx.customerId}, ${ctx.orderId}, ${ctx.recoveryId}, ${ctx.cadenceName},
                ${ctx.step ?? -1}, ${amount}, ${ctx.currency}, 'offered', ${ctx.now})
        on conflict (order_id) do nothing`,
  );
  return amount;
}
