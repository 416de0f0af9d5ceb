import { sql } from 'drizzle-orm';
import type { Cadence, StepIncentive } from '../cadences/cadence.js';
import type { Db } from '../db/client.js';
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

export interface EligibleOptions {
  /**
   * Set by the transaction that goes on to `grantIncentive`: it holds the customer's and the
   * budget's locks until it commits, so two of them never both read "nothing granted yet".
   * Default false (a page view only reads).
   */
  forGrant?: boolean;
}

/**
 * The incentive this order may have, guarded against abuse: never for suspected fraud, one
 * per customer per period (an order that already has one keeps it), and within the
 * cadence's monthly budget per currency. Reads only (with `forGrant` it also locks);
 * `grantIncentive` records it.
 */
export async function eligibleIncentive(
  db: Db | Tx,
  ctx: IncentiveContext,
  options: EligibleOptions = {},
): Promise<number> {
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
  if (options.forGrant) await lockIncentiveScope(db, ctx, monthStart);
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
 * whatever the previous holder granted. Only payment initiation takes them, always in this
 * order: the order's row lock, then the customer's, then the budget's (and only then the
 * customers row, when the contact details change). The keys are distinct from dispatch's
 * per-customer lock so a send in progress does not hold up a payment.
 */
async function lockIncentiveScope(db: Db | Tx, ctx: IncentiveContext, monthStart: Date): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(hashtext(${`recoup:incentive:customer:${ctx.customerId}`}))`);
  if (ctx.cadence.incentiveMonthlyBudget === undefined) return;
  const month = monthStart.toISOString().slice(0, 7);
  await db.execute(
    sql`select pg_advisory_xact_lock(
          hashtext(${`recoup:incentive:budget:${ctx.cadenceName}:${ctx.currency}:${month}`}))`,
  );
}

/**
 * Records an incentive as granted (once per order). Runs in the transaction whose
 * `eligibleIncentive` call, with `forGrant`, took the locks.
 */
export async function grantIncentive(tx: Tx, ctx: IncentiveContext, amount: number): Promise<void> {
  if (amount <= 0) return;
  await tx.execute(
    sql`insert into incentives (id, customer_id, order_id, recovery_id, cadence_name, step, amount, currency, status,
                                granted_at)
        values (${newId('inc')}, ${ctx.customerId}, ${ctx.orderId}, ${ctx.recoveryId}, ${ctx.cadenceName},
                ${ctx.step ?? -1}, ${amount}, ${ctx.currency}, 'offered', ${ctx.now})
        on conflict (order_id) do nothing`,
  );
}
