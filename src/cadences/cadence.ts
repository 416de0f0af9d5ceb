import type { Channel, FailureCategory, PaymentMethod } from '../domain/vocabulary.js';

/** One reminder of a cadence. `afterMs` counts from the start of the recovery. */
export interface CadenceStep {
  afterMs: number;
  channel: Channel;
  template: string;
  /** Payment methods the retry page offers for this step, in order of preference. */
  offerMethods: PaymentMethod[];
  /** A discount to win back a hesitant customer (granted as its reminder is sent; see src/pricing/incentives.ts for the guards). */
  incentive?: StepIncentive;
}

/** Either a percentage of the total (optionally capped) or a fixed amount, in the order's minor units. */
export interface StepIncentive {
  percent?: number;
  amount?: number;
  maxAmount?: number;
}

export interface QuietHours {
  /** Local wall-clock time `HH:MM` when quiet hours begin, e.g. `21:00`. */
  start: string;
  /** Local wall-clock time `HH:MM` when they end, e.g. `09:00` (may be before start: overnight). */
  end: string;
}

export interface CadenceMatch {
  /** Categories this cadence handles; `any` matches every category except fraud_suspected. */
  failureCategories: Array<FailureCategory | 'any'>;
  /** Smallest order amount (minor units) this cadence handles. */
  minAmount: number;
  /** ISO 4217 codes, or `any`. */
  currencies: string[];
  /** Never chosen by matching: only for orders whose events name it (`order.cadence`), e.g. the demo. */
  byNameOnly?: boolean;
}

/** A validated cadence definition, as ops wrote it (durations in ms). */
export interface Cadence {
  name: string;
  description?: string;
  match: CadenceMatch;
  quietHours: QuietHours | undefined;
  /**
   * Per local day: the customer's messages across channels, plus those to the step's address on its
   * channel under other customer ids (guest checkouts). Undefined: no cap.
   */
  maxMessagesPerDay: number | undefined;
  /** After this long from the start the recovery ends as `exhausted`. */
  expireAfterMs: number;
  /** When a channel fails permanently (bad number, hard bounce), later steps use the other channel. Default true. */
  switchChannelOnFailure: boolean;
  /** Incentives granted per calendar month (UTC) and currency, minor units; beyond it steps go out without. */
  incentiveMonthlyBudget?: number;
  /**
   * Share of this cadence's orders (0–50 %) kept as a control group that gets no messages,
   * so finance can measure what the reminders add. Overrides the global HOLDOUT_PERCENT.
   */
  holdoutPercent?: number;
  steps: CadenceStep[];
}

/** A stored, immutable version of a cadence. */
export interface CadenceVersion {
  name: string;
  version: number;
  cadence: Cadence;
  active: boolean;
  createdAt: Date;
}
