import type { OrderItem } from '../db/schema.js';
import type { FailureCategory, FailureDetail, PaymentMethod } from '../domain/vocabulary.js';

/** Everything a reminder template may refer to. Built by the dispatcher; rendered in strict mode. */
export interface MessageContext {
  shop: { name: string };
  customer: { name: string };
  order: {
    id: string;
    description: string;
    /**
     * What the message's retry link charges, integer minor units: the order's amount with an expired
     * coupon's discount added back and its incentive taken off (linkCharge, src/pricing/charge.ts).
     */
    amount: number;
    /** ISO 4217. */
    currency: string;
    couponCode?: string | undefined;
    /** Cart lines as the shop sent them (event `order.items`); missing or null when it sent none. */
    items?: readonly OrderItem[] | null | undefined;
  };
  failureCategory: FailureCategory;
  /** What the last failure's code tells beyond its category (an expired card), when anything. */
  failureDetail?: FailureDetail | undefined;
  offerMethods: PaymentMethod[];
  retryUrl: string;
  /** Set on emails: where the customer can stop reminders. */
  unsubscribeUrl?: string | undefined;
}
