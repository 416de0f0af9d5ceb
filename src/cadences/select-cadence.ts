import type { FailureCategory } from '../domain/vocabulary.js';
import type { Cadence } from './cadence.js';

/**
 * The best-matching cadence for an order that failed with `category`, or undefined
 * when none matches (then no recovery starts).
 *
 * A cadence matches when it lists the category (or `any`), the order's currency (or
 * `any`) and the amount is at least its `min_amount`. `any` never matches
 * `fraud_suspected`: a suspected fraud starts no reminders unless a cadence names it.
 *
 * Among matches the most specific wins: an explicit category over `any`, then an
 * explicit currency over `any`, then the higher `min_amount`, then the name
 * (code-point order, so the choice is the same on every machine).
 */
export function selectCadence<T extends { cadence: Cadence }>(
  candidates: T[],
  order: { amount: number; currency: string },
  category: FailureCategory,
): T | undefined {
  const currency = order.currency.toUpperCase();
  let best: { candidate: T; rank: Rank } | undefined;
  for (const candidate of candidates) {
    if (candidate.cadence.match.byNameOnly) continue;
    const rank = rankOf(candidate.cadence, order.amount, currency, category);
    if (rank && (!best || compare(rank, best.rank) < 0)) best = { candidate, rank };
  }
  return best?.candidate;
}

interface Rank {
  explicitCategory: boolean;
  explicitCurrency: boolean;
  minAmount: number;
  name: string;
}

function rankOf(cadence: Cadence, amount: number, currency: string, category: FailureCategory): Rank | undefined {
  const { match } = cadence;
  const explicitCategory = match.failureCategories.includes(category);
  const anyCategory = category !== 'fraud_suspected' && match.failureCategories.includes('any');
  if (!explicitCategory && !anyCategory) return undefined;
  const explicitCurrency = match.currencies.some((c) => c.toUpperCase() === currency);
  if (!explicitCurrency && !match.currencies.includes('any')) return undefined;
  if (amount < match.minAmount) return undefined;
  return { explicitCategory, explicitCurrency, minAmount: match.minAmount, name: cadence.name };
}

/** Negative when `a` is more specific than `b`. */
function compare(a: Rank, b: Rank): number {
  if (a.explicitCategory !== b.explicitCategory) return a.explicitCategory ? -1 : 1;
  if (a.explicitCurrency !== b.explicitCurrency) return a.explicitCurrency ? -1 : 1;
  if (a.minAmount !== b.minAmount) return b.minAmount - a.minAmount;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return 0;
}
