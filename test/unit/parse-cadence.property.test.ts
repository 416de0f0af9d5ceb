import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { isRecoupError } from '../../src/platform/errors.js';

const runs = Number(process.env.PROPERTY_RUNS ?? 2_000);

/**
 * Whatever YAML (or not-YAML) arrives through `recoup cadences apply` or the cadences API, the
 * parser answers with cadences or with one validation error whose every issue names a path;
 * never another exception.
 */
function outcome(text: string): 'ok' | 'refused' {
  try {
    const cadences = parseCadenceDocument(text);
    for (const c of cadences) expect(c.steps.length).toBeGreaterThan(0);
    return 'ok';
  } catch (err) {
    if (!isRecoupError(err, 'validation')) throw err;
    expect(err.issues.length).toBeGreaterThan(0);
    for (const issue of err.issues) expect(typeof issue.path).toBe('string');
    return 'refused';
  }
}

const valid = () => ({
  name: 'hostile',
  match: { failure_categories: ['any'], min_amount: 0, currencies: ['any'] },
  quiet_hours: { start: '21:00', end: '09:00' },
  max_messages_per_day: 2,
  expire_after: '72h',
  steps: [
    { after: '15m', channel: 'sms', template: 'nudge' },
    { after: '2h', channel: 'email', template: 'alternative-methods', offer_methods: ['alipay', 'card'] },
  ],
});

const keys = [
  'name',
  'match',
  'quiet_hours',
  'max_messages_per_day',
  'expire_after',
  'steps',
  'switch_channel_on_failure',
  'description',
];
const stepKeys = ['after', 'channel', 'template', 'offer_methods'];

describe('cadence YAML under generated input', () => {
  it('arbitrary text: cadences or a validation error with paths, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' })), (text) => {
        outcome(text);
      }),
      { numRuns: runs },
    );
  });

  it('a valid cadence with fields replaced by anything: refusals name the field they are about', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...keys),
        fc.constantFrom(...stepKeys),
        fc.jsonValue({ maxDepth: 3 }),
        fc.boolean(),
        fc.boolean(),
        (key, stepKey, value, inStep, asList) => {
          const doc = valid();
          if (inStep) (doc.steps[0] as Record<string, unknown>)[stepKey] = value;
          else (doc as Record<string, unknown>)[key] = value;
          const text = asList ? stringify([doc]) : stringify(doc);
          if (outcome(text) === 'refused' && !asList) {
            try {
              parseCadenceDocument(text);
            } catch (err) {
              if (!isRecoupError(err)) throw err;
              const paths = err.issues.map((i) => i.path);
              const mutated = inStep ? `steps.0.${stepKey}` : key;
              const head = mutated.split('.')[0] ?? mutated;
              expect(
                paths.some((p) => p === '' || p.includes(head) || mutated.startsWith(p)),
                `${mutated} vs ${paths.join(', ')}`,
              ).toBe(true);
            }
          }
        },
      ),
      { numRuns: runs },
    );
  });
});
