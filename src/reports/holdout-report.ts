import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { periodBounds, type ReportQuery } from './recovery-report.js';

export interface HoldoutGroup {
  orders: number;
  /** Orders paid while in recovery, however (clicked, influenced or organic). */
  paid: number;
  /** paid / orders, 4 decimals; null for an empty group. */
  rate: number | null;
  /** Order value of those payments (paid + incentives), minor units. */
  paid_amount: number;
}

/**
 * Treated vs control for orders that entered recovery in the period (a cohort: each order
 * counts once, whenever it paid), per currency. Only cadences that had control orders in the
 * period are compared, so a cadence without holdout does not dilute the treated group.
 */
export interface HoldoutRow {
  currency: string;
  treated: HoldoutGroup;
  control: HoldoutGroup;
  /** treated.rate − control.rate. */
  rate_difference: number | null;
  /** 95 % confidence interval of the difference (normal approximation, unpooled). */
  ci95: [number, number] | null;
  /** True when the interval excludes 0. */
  significant: boolean;
  /** What the reminders added: treated paid amount − control paid amount scaled to the treated group's size. */
  incremental_amount: number | null;
}

export async function holdoutReport(
  db: Db,
  query: Pick<ReportQuery, 'from' | 'to' | 'timezone' | 'currency'>,
): Promise<HoldoutRow[]> {
  const { start, end } = periodBounds(query);
  const currencyFilter = query.currency ? sql`and r.currency = ${query.currency}` : sql``;
  const found = await rows<{ holdout: boolean; currency: string; orders: string; paid: string; amount: string }>(
    db,
    sql`select r.holdout, r.currency, count(*)::text as orders,
               count(*) filter (where r.state = 'recovered')::text as paid,
               coalesce(sum(r.recovered_value) filter (where r.state = 'recovered'), 0)::text as amount
          from recoveries r
         where r.started_at >= ${start} and r.started_at < ${end} and r.currency is not null ${currencyFilter}
           and r.cadence_name in (select distinct c.cadence_name from recoveries c
                                   where c.holdout and c.started_at >= ${start} and c.started_at < ${end})
         group by 1, 2`,
  );
  const currencies = [...new Set(found.map((f) => f.currency))].sort();
  return currencies.map((currency) => {
    const group = (holdout: boolean): HoldoutGroup => {
      const f = found.find((g) => g.currency === currency && g.holdout === holdout);
      const orders = Number(f?.orders ?? 0);
      const paid = Number(f?.paid ?? 0);
      return { orders, paid, rate: orders > 0 ? round4(paid / orders) : null, paid_amount: Number(f?.amount ?? 0) };
    };
    const treated = group(false);
    const control = group(true);
    return { currency, treated, control, ...compare(treated, control) };
  });
}

/** The difference of two proportions with its 95 % Wald interval. */
export function compare(
  treated: HoldoutGroup,
  control: HoldoutGroup,
): Pick<HoldoutRow, 'rate_difference' | 'ci95' | 'significant' | 'incremental_amount'> {
  if (treated.orders === 0 || control.orders === 0) {
    return { rate_difference: null, ci95: null, significant: false, incremental_amount: null };
  }
  const p1 = treated.paid / treated.orders;
  const p2 = control.paid / control.orders;
  const diff = p1 - p2;
  const se = Math.sqrt((p1 * (1 - p1)) / treated.orders + (p2 * (1 - p2)) / control.orders);
  const low = diff - 1.96 * se;
  const high = diff + 1.96 * se;
  return {
    rate_difference: round4(diff),
    ci95: [round4(low), round4(high)],
    significant: low > 0 || high < 0,
    incremental_amount: Math.round(treated.paid_amount - (control.paid_amount * treated.orders) / control.orders),
  };
}

function round4(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}
