import { describe, expect, it } from 'vitest';
import { pendingState, type SeedCadence } from '../../bench/seed.js';

const minute = 60_000;
const hour = 60 * minute;
// The bundled default cadence: steps at 15 min, 2 h and 24 h, expiry at 72 h.
const cadence: SeedCadence = {
  name: 'default',
  version: 1,
  firstStepAfterMs: 15 * minute,
  stepsAfterMs: [15 * minute, 2 * hour, 24 * hour],
  expireAfterMs: 72 * hour,
};
const startedAt = Date.UTC(2026, 11, 1, 12);

describe('pendingState: where a recovery of a given age stands in the bench backlog', () => {
  it.each([
    { age: 5 * minute, stepIndex: 0, next: 15 * minute },
    { age: 15 * minute, stepIndex: 1, next: 2 * hour },
    { age: 90 * minute, stepIndex: 1, next: 2 * hour },
    { age: 3 * hour, stepIndex: 2, next: 24 * hour },
    // After the last step only the expiry is left.
    { age: 30 * hour, stepIndex: 3, next: 72 * hour },
    { age: 71 * hour, stepIndex: 3, next: 72 * hour },
  ])('at $age ms: step $stepIndex, next wake-up $next ms after the start', ({ age, stepIndex, next }) => {
    expect(pendingState(cadence, startedAt, age)).toEqual({
      stepIndex,
      nextRunAt: startedAt + next,
      expiresAt: startedAt + 72 * hour,
    });
  });
});
