import { describe, expect, it } from 'vitest';
import type { Cadence, CadenceMatch } from '../../src/cadences/cadence.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { selectCadence } from '../../src/cadences/select-cadence.js';
import { failureCategories } from '../../src/domain/vocabulary.js';

function candidate(
  name: string,
  match: Partial<CadenceMatch> = {},
): { name: string; version: number; cadence: Cadence } {
  return {
    name,
    version: 1,
    cadence: {
      name,
      match: { failureCategories: ['any'], minAmount: 0, currencies: ['any'], ...match },
      quietHours: undefined,
      maxMessagesPerDay: undefined,
      expireAfterMs: 3_600_000,
      switchChannelOnFailure: true,
      steps: [{ afterMs: 60_000, channel: 'sms', template: 'nudge', offerMethods: ['card'] }],
    },
  };
}

const order = { amount: 5_000, currency: 'EUR' };

describe('selectCadence', () => {
  it('returns undefined without candidates', () => {
    expect(selectCadence([], order, 'insufficient_funds')).toBeUndefined();
  });

  it('matches every category except fraud_suspected with any', () => {
    const candidates = [candidate('default')];
    for (const category of failureCategories) {
      const chosen = selectCadence(candidates, order, category);
      if (category === 'fraud_suspected') expect(chosen).toBeUndefined();
      else expect(chosen?.name).toBe('default');
    }
  });

  it('starts a recovery for fraud only when a cadence lists it explicitly', () => {
    const candidates = [candidate('default'), candidate('fraud-review', { failureCategories: ['fraud_suspected'] })];
    expect(selectCadence(candidates, order, 'fraud_suspected')?.name).toBe('fraud-review');
    const withAny = [candidate('default', { failureCategories: ['any', 'fraud_suspected'] })];
    expect(selectCadence(withAny, order, 'fraud_suspected')?.name).toBe('default');
  });

  it('skips cadences for other categories', () => {
    const candidates = [candidate('cards', { failureCategories: ['card_data'] })];
    expect(selectCadence(candidates, order, 'insufficient_funds')).toBeUndefined();
    expect(selectCadence(candidates, order, 'card_data')?.name).toBe('cards');
  });

  it('matches currencies explicitly (case-insensitively) or with any', () => {
    const candidates = [candidate('cny', { currencies: ['CNY'] })];
    expect(selectCadence(candidates, order, 'network')).toBeUndefined();
    expect(selectCadence(candidates, { amount: 100, currency: 'cny' }, 'network')?.name).toBe('cny');
  });

  it('requires the amount to reach min_amount (inclusive)', () => {
    const candidates = [candidate('big', { minAmount: 5_000 })];
    expect(selectCadence(candidates, { amount: 4_999, currency: 'EUR' }, 'network')).toBeUndefined();
    expect(selectCadence(candidates, { amount: 5_000, currency: 'EUR' }, 'network')?.name).toBe('big');
  });

  it('prefers an explicit category over any, even with any currency and a lower min_amount', () => {
    const candidates = [
      candidate('any-eur-big', { currencies: ['EUR'], minAmount: 1_000 }),
      candidate('funds', { failureCategories: ['insufficient_funds'] }),
    ];
    expect(selectCadence(candidates, order, 'insufficient_funds')?.name).toBe('funds');
    expect(selectCadence(candidates, order, 'network')?.name).toBe('any-eur-big');
  });

  it('then prefers an explicit currency over any', () => {
    const candidates = [
      candidate('any-currency', { minAmount: 4_000 }),
      candidate('eur', { currencies: ['USD', 'EUR'] }),
    ];
    expect(selectCadence(candidates, order, 'network')?.name).toBe('eur');
  });

  it('then prefers the higher min_amount', () => {
    const candidates = [
      candidate('small'),
      candidate('large', { minAmount: 2_000 }),
      candidate('mid', { minAmount: 1_000 }),
    ];
    expect(selectCadence(candidates, order, 'network')?.name).toBe('large');
    expect(selectCadence(candidates, { amount: 1_500, currency: 'EUR' }, 'network')?.name).toBe('mid');
  });

  it('breaks remaining ties by name, whatever the input order', () => {
    const a = candidate('alpha');
    const b = candidate('beta');
    const dash = candidate('x-late');
    const underscore = candidate('x_early');
    expect(selectCadence([b, a], order, 'network')?.name).toBe('alpha');
    expect(selectCadence([a, b], order, 'network')?.name).toBe('alpha');
    // Code-point order, not locale order: the result never depends on the machine.
    expect(selectCadence([underscore, dash], order, 'network')?.name).toBe('x-late');
  });

  it('returns the candidate object itself, keeping its extra fields', () => {
    const chosen = candidate('default');
    expect(selectCadence([chosen], order, 'abandoned')).toBe(chosen);
  });
});

describe('cadences chosen by name only', () => {
  it('are never picked by matching, however well they match', () => {
    const [manual] = parseCadenceDocument(`
name: aaa-manual
match: { failure_categories: [card_data], currencies: [CNY], by_name_only: true }
expire_after: 1h
steps: [{ after: 1m, channel: sms, template: nudge }]
`);
    const [fallback] = parseCadenceDocument(`
name: zzz-fallback
expire_after: 1h
steps: [{ after: 1m, channel: sms, template: nudge }]
`);
    const candidates = [{ cadence: manual! }, { cadence: fallback! }];
    expect(selectCadence(candidates, { amount: 100, currency: 'CNY' }, 'card_data')?.cadence.name).toBe('zzz-fallback');
    expect(selectCadence([{ cadence: manual! }], { amount: 100, currency: 'CNY' }, 'card_data')).toBeUndefined();
  });
});
