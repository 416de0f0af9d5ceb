/** What the customer will be charged, exactly as the retry page shows it before they confirm. */
export interface Charge {
  /** The order amount as the shop sent it (coupon already applied, if it had one). */
  orderAmount: number;
  coupon: {
    code: string;
    /** applied: still valid, already in orderAmount; expired: no longer applies, its discount is added back. */
    status: 'applied' | 'expired';
    discountAmount: number;
  } | null;
  /** Discount from a cadence step's incentive, taken off the total. */
  incentiveAmount: number;
  /** What the gateway is asked to charge: minor units, never below 0. */
  total: number;
}

export interface ChargeInput {
  orderAmount: number;
  coupon: { code: string; discountAmount: number | null; expiresAt: Date | null } | null;
  incentiveAmount?: number;
  now: Date;
}

/**
 * The shop's amount already includes its coupon. A coupon that expired before the customer
 * pays no longer applies: its discount is added back, and the page says so plainly.
 */
export function computeCharge(input: ChargeInput): Charge {
  let total = input.orderAmount;
  let coupon: Charge['coupon'] = null;
  if (input.coupon) {
    const discountAmount = input.coupon.discountAmount ?? 0;
    const expired = input.coupon.expiresAt !== null && input.coupon.expiresAt <= input.now;
    coupon = { code: input.coupon.code, status: expired ? 'expired' : 'applied', discountAmount };
    if (expired) total += discountAmount;
  }
  const incentiveAmount = Math.min(Math.max(0, input.incentiveAmount ?? 0), total);
  return { orderAmount: input.orderAmount, coupon, incentiveAmount, total: total - incentiveAmount };
}

/** What a retry link's charge is computed from, besides the moment it was issued. */
export interface ChargeBasis {
  /** The order's amount as the shop sent it (minor units). */
  orderAmount: number;
  coupon: ChargeInput['coupon'];
  /** The order's incentive (at most one per order) and when it was granted, or null. */
  incentive: { amount: number; grantedAt: Date } | null;
}

/**
 * What a retry link charges: what its reminder quoted, for as long as the link works. The coupon
 * counts as it stood when the link was issued (one still valid then is honoured for the link's
 * lifetime), and the incentive only if it was granted by then, as the reminder that quoted it
 * was sent (src/pricing/incentives.ts). So the amount in a reminder and on its page never differ,
 * however late the customer opens it.
 */
export function linkCharge(basis: ChargeBasis, issuedAt: Date): Charge {
  const incentive = basis.incentive && basis.incentive.grantedAt <= issuedAt ? basis.incentive.amount : 0;
  return computeCharge({
    orderAmount: basis.orderAmount,
    coupon: basis.coupon,
    incentiveAmount: incentive,
    now: issuedAt,
  });
}

/**
 * The order's and its incentive's columns a link's charge is read from, as SQL returns them:
 * `o.amount::text`, `o.coupon_code`, `o.coupon_discount_amount::text`, `o.coupon_expires_at`,
 * `i.amount::text as incentive_amount`, `i.granted_at as incentive_granted_at` (incentives `i` left
 * joined on the order).
 */
export interface ChargeRow {
  amount: string;
  coupon_code: string | null;
  coupon_discount_amount: string | null;
  coupon_expires_at: Date | null;
  incentive_amount: string | null;
  incentive_granted_at: Date | null;
}

export function chargeBasisOf(row: ChargeRow): ChargeBasis {
  return {
    orderAmount: Number(row.amount),
    coupon: row.coupon_code
      ? {
          code: row.coupon_code,
          discountAmount: row.coupon_discount_amount === null ? null : Number(row.coupon_discount_amount),
          expiresAt: row.coupon_expires_at,
        }
      : null,
    incentive:
      row.incentive_amount !== null && row.incentive_granted_at !== null
        ? { amount: Number(row.incentive_amount), grantedAt: row.incentive_granted_at }
        : null,
  };
}
