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
