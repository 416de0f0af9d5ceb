import { describe, expect, it } from 'vitest';
import { planMigration, type StepMessage } from '../../src/cadences/migration-plan.js';

const m = (id: string, step: number, template: string, status = 'sent'): StepMessage => ({
  id,
  step,
  template,
  status,
});

describe('planMigration', () => {
  it('keeps an unchanged cadence where it was, repeated templates and failed steps included', () => {
    const messages = [m('a', 0, 'nudge', 'failed'), m('b', 1, 'nudge'), m('c', 2, 'last-call', 'skipped')];
    const plan = planMigration(messages, ['nudge', 'nudge', 'last-call', 'nudge']);
    expect(plan).toEqual({ stepIndex: 3, renumber: new Map(), dropped: [] });
  });

  it('continues at the first step none of its messages stands for, past every one it was sent', () => {
    const plan = planMigration([m('a', 0, 'nudge'), m('b', 1, 'last-call', 'unknown')], ['last-call', 'new', 'nudge']);
    expect(plan.stepIndex).toBe(1);
    expect(plan.renumber).toEqual(
      new Map([
        ['a', 2],
        ['b', 0],
      ]),
    );
  });

  it('moves a removed step past the end and goes to expiry once every step is done', () => {
    const plan = planMigration([m('a', 0, 'gone', 'delivered'), m('b', 1, 'nudge')], ['nudge']);
    expect(plan.stepIndex).toBe(1);
    expect(plan.renumber).toEqual(
      new Map([
        ['a', 1],
        ['b', 0],
      ]),
    );
  });

  it('gives a deferred message the template of the step it now stands for, or drops it', () => {
    const deferred = [m('a', 0, 'nudge'), m('b', 1, 'last-call', 'scheduled')];
    expect(planMigration(deferred, ['last-call', 'nudge'])).toEqual({
      stepIndex: 0,
      renumber: new Map([
        ['a', 1],
        ['b', 0],
      ]),
      deferred: { id: 'b', template: 'last-call' },
      dropped: [],
    });
    expect(planMigration(deferred, ['nudge'])).toEqual({ stepIndex: 1, renumber: new Map(), dropped: ['b'] });
  });
});
