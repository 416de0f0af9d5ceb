import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Cadence } from '../../src/cadences/cadence.js';
import {
  cadenceToDocument,
  parseCadenceDocument,
  validateCadence,
  type CadenceValidationOptions,
} from '../../src/cadences/parse-cadence.js';
import { isRecoupError, type Issue } from '../../src/platform/errors.js';

const cadencesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cadences');
const readCadenceFile = (name: string) => fs.readFileSync(path.join(cadencesDir, name), 'utf8');

/** The issues of the validation error `run` throws; fails the test if it throws anything else. */
function issuesOf(run: () => unknown): Issue[] {
  try {
    run();
  } catch (err) {
    if (isRecoupError(err, 'validation')) return err.issues;
    throw err;
  }
  throw new Error('expected a validation error');
}

function paths(run: () => unknown): string[] {
  return issuesOf(run).map((issue) => issue.path);
}

/** A valid cadence document; tests override one field at a time. */
function doc(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'test',
    expire_after: '72h',
    steps: [
      { after: '15m', channel: 'sms', template: 'nudge' },
      { after: '2h', channel: 'email', template: 'alternative-methods' },
    ],
    ...overrides,
  };
}

describe('parseCadenceDocument', () => {
  it('parses the default cadence file', () => {
    const [cadence, ...rest] = parseCadenceDocument(readCadenceFile('default.yaml'));
    expect(rest).toEqual([]);
    expect(cadence).toMatchObject({
      name: 'default',
      match: { failureCategories: ['any'], minAmount: 0, currencies: ['any'] },
      quietHours: { start: '21:00', end: '09:00' },
      maxMessagesPerDay: 2,
      expireAfterMs: 72 * 3_600_000,
      switchChannelOnFailure: true,
    });
    expect(cadence?.steps).toEqual([
      { afterMs: 15 * 60_000, channel: 'sms', template: 'nudge', offerMethods: ['card', 'alipay', 'wechat_pay'] },
      {
        afterMs: 2 * 3_600_000,
        channel: 'email',
        template: 'alternative-methods',
        offerMethods: ['alipay', 'wechat_pay', 'card'],
      },
      {
        afterMs: 24 * 3_600_000,
        channel: 'sms',
        template: 'last-call',
        offerMethods: ['card', 'alipay', 'wechat_pay'],
      },
    ]);
  });

  it('parses the demo cadence file with second-level delays and no quiet hours', () => {
    const [cadence] = parseCadenceDocument(readCadenceFile('demo.yaml'));
    expect(cadence?.name).toBe('demo');
    expect(cadence?.steps.map((s) => s.afterMs)).toEqual([5_000, 15_000, 30_000]);
    expect(cadence?.expireAfterMs).toBe(120_000);
    expect(cadence?.quietHours).toBeUndefined();
    expect(cadence?.maxMessagesPerDay).toBeUndefined();
  });

  it('fills defaults for optional fields', () => {
    const [cadence] = parseCadenceDocument(stringify(doc()));
    expect(cadence).toEqual({
      name: 'test',
      match: { failureCategories: ['any'], minAmount: 0, currencies: ['any'] },
      quietHours: undefined,
      maxMessagesPerDay: undefined,
      expireAfterMs: 72 * 3_600_000,
      switchChannelOnFailure: true,
      steps: [
        { afterMs: 900_000, channel: 'sms', template: 'nudge', offerMethods: ['card', 'alipay', 'wechat_pay'] },
        {
          afterMs: 7_200_000,
          channel: 'email',
          template: 'alternative-methods',
          offerMethods: ['card', 'alipay', 'wechat_pay'],
        },
      ],
    });
  });

  it('accepts JSON and a list of cadences', () => {
    const cadences = parseCadenceDocument(JSON.stringify([doc({ name: 'a' }), doc({ name: 'b' })]));
    expect(cadences.map((c) => c.name)).toEqual(['a', 'b']);
  });

  it('keeps every duration unit, seconds included', () => {
    const [cadence] = parseCadenceDocument(
      stringify(
        doc({
          expire_after: '1d',
          steps: [
            { after: '90s', channel: 'sms', template: 'a' },
            { after: '1h30m', channel: 'sms', template: 'b' },
          ],
        }),
      ),
    );
    expect(cadence?.steps.map((s) => s.afterMs)).toEqual([90_000, 5_400_000]);
    expect(cadence?.expireAfterMs).toBe(86_400_000);
  });

  it('prefixes issue paths with the list index', () => {
    const text = stringify([doc({ name: 'a' }), doc({ name: 'b', expire_after: 'soon' })]);
    expect(paths(() => parseCadenceDocument(text))).toEqual(['[1].expire_after']);
  });

  it('reports duplicate names in a list', () => {
    const issues = issuesOf(() => parseCadenceDocument(stringify([doc(), doc()])));
    expect(issues).toEqual([{ path: '[1].name', message: 'duplicate cadence name "test" (also at [0])' }]);
  });

  it('reports YAML syntax errors with line and column', () => {
    const issues = issuesOf(() => parseCadenceDocument('name: test\nsteps: [\n  - after: 1m\n'));
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.message).toMatch(/^YAML syntax error: .* at line \d+, column \d+$/);
  });

  it('reports duplicate keys as YAML errors', () => {
    const issues = issuesOf(() => parseCadenceDocument('name: a\nname: b\n'));
    expect(issues[0]?.message).toContain('unique');
  });

  it('reads several YAML documents as one list, as `recoup cadences list` prints them', () => {
    const text = `# a header comment\n---\n${stringify(doc({ name: 'a' }))}---\n${stringify([doc({ name: 'b' }), doc({ name: 'c' })])}`;
    expect(parseCadenceDocument(text).map((c) => c.name)).toEqual(['a', 'b', 'c']);
    const bad = `${stringify(doc({ name: 'a' }))}---\n${stringify(doc({ name: 'b', expire_after: 'never' }))}`;
    expect(paths(() => parseCadenceDocument(bad))).toEqual(['[1].expire_after']);
  });

  it('rejects an empty document, an empty list and a scalar', () => {
    expect(issuesOf(() => parseCadenceDocument('# nothing here\n'))[0]?.message).toContain('empty');
    expect(issuesOf(() => parseCadenceDocument(''))[0]?.message).toContain('empty');
    expect(issuesOf(() => parseCadenceDocument('[]'))[0]?.message).toContain('no cadences');
    expect(paths(() => parseCadenceDocument('just a string'))).toEqual(['']);
  });

  it('reports every error at once', () => {
    const text = [
      'name: Default',
      'expires_after: 1h',
      'match: { currencies: [usd] }',
      'steps:',
      '  - { after: 2h, channel: fax, template: nudge }',
      '  - { after: 1h, channel: sms }',
    ].join('\n');
    expect(paths(() => parseCadenceDocument(text)).sort()).toEqual(
      [
        'name',
        'expires_after',
        'expire_after',
        'match.currencies[0]',
        'steps[0].channel',
        'steps[1].template',
        'steps[1].after',
      ].sort(),
    );
  });
});

describe('validateCadence rules', () => {
  const cases: Array<{ rule: string; input: Record<string, unknown>; path: string; message: RegExp }> = [
    { rule: 'name is required', input: doc({ name: undefined }), path: 'name', message: /required/ },
    { rule: 'name is a slug', input: doc({ name: 'Big Sale' }), path: 'name', message: /lowercase slug/ },
    { rule: 'description is a string', input: doc({ description: 5 }), path: 'description', message: /string/ },
    { rule: 'unknown top-level key', input: doc({ colour: 'red' }), path: 'colour', message: /unknown key/ },
    {
      rule: 'misspelt key gets a suggestion',
      input: doc({ max_message_per_day: 2 }),
      path: 'max_message_per_day',
      message: /did you mean "max_messages_per_day"/,
    },
    {
      rule: 'unknown failure category',
      input: doc({ match: { failure_categories: ['fraud'] } }),
      path: 'match.failure_categories[0]',
      message: /must be one of: .*fraud_suspected/,
    },
    {
      rule: 'failure categories not empty',
      input: doc({ match: { failure_categories: [] } }),
      path: 'match.failure_categories',
      message: /at least one/,
    },
    {
      rule: 'min_amount is a whole number',
      input: doc({ match: { min_amount: 9.99 } }),
      path: 'match.min_amount',
      message: /whole number/,
    },
    {
      rule: 'min_amount is not negative',
      input: doc({ match: { min_amount: -1 } }),
      path: 'match.min_amount',
      message: /0 or more/,
    },
    {
      rule: 'currencies are uppercase ISO codes',
      input: doc({ match: { currencies: ['EUR', 'usd'] } }),
      path: 'match.currencies[1]',
      message: /3-letter uppercase/,
    },
    {
      rule: 'unknown key in match',
      input: doc({ match: { currency: ['EUR'] } }),
      path: 'match.currency',
      message: /did you mean "currencies"/,
    },
    {
      rule: 'quiet hours are HH:MM',
      input: doc({ quiet_hours: { start: '9pm', end: '09:00' } }),
      path: 'quiet_hours.start',
      message: /HH:MM/,
    },
    {
      rule: 'quiet hours hour in range',
      input: doc({ quiet_hours: { start: '21:00', end: '24:00' } }),
      path: 'quiet_hours.end',
      message: /HH:MM/,
    },
    {
      rule: 'quiet hours start differs from end',
      input: doc({ quiet_hours: { start: '21:00', end: '21:00' } }),
      path: 'quiet_hours.end',
      message: /differ from start/,
    },
    {
      rule: 'quiet hours need both ends',
      input: doc({ quiet_hours: { start: '21:00' } }),
      path: 'quiet_hours.end',
      message: /required/,
    },
    {
      rule: 'max messages per day is positive',
      input: doc({ max_messages_per_day: 0 }),
      path: 'max_messages_per_day',
      message: /1 or more/,
    },
    {
      rule: 'max messages per day is whole',
      input: doc({ max_messages_per_day: 1.5 }),
      path: 'max_messages_per_day',
      message: /whole number/,
    },
    {
      rule: 'expire_after is required',
      input: doc({ expire_after: undefined }),
      path: 'expire_after',
      message: /required/,
    },
    {
      rule: 'expire_after is a duration',
      input: doc({ expire_after: '3 days' }),
      path: 'expire_after',
      message: /not a duration/,
    },
    {
      rule: 'expire_after is a string, not a number',
      input: doc({ expire_after: 72 }),
      path: 'expire_after',
      message: /string/,
    },
    {
      rule: 'expire_after above zero',
      input: doc({ expire_after: '0s' }),
      path: 'expire_after',
      message: /longer than 0s/,
    },
    {
      rule: 'switch_channel_on_failure is boolean',
      input: doc({ switch_channel_on_failure: 'yes' }),
      path: 'switch_channel_on_failure',
      message: /true or false/,
    },
    { rule: 'steps are required', input: doc({ steps: undefined }), path: 'steps', message: /required/ },
    { rule: 'at least one step', input: doc({ steps: [] }), path: 'steps', message: /at least one step/ },
    {
      rule: 'step after is a duration',
      input: doc({ steps: [{ after: '15 minutes', channel: 'sms', template: 'nudge' }] }),
      path: 'steps[0].after',
      message: /not a duration/,
    },
    {
      rule: 'steps are in increasing order',
      input: doc({
        steps: [
          { after: '2h', channel: 'sms', template: 'a' },
          { after: '30m', channel: 'sms', template: 'b' },
        ],
      }),
      path: 'steps[1].after',
      message: /30m must be later than steps\[0\]\.after \(2h\)/,
    },
    {
      rule: 'two steps at the same time',
      input: doc({
        steps: [
          { after: '1h', channel: 'sms', template: 'a' },
          { after: '60m', channel: 'email', template: 'b' },
        ],
      }),
      path: 'steps[1].after',
      message: /later than steps\[0\]\.after/,
    },
    {
      rule: 'steps before expiry',
      input: doc({ expire_after: '1h', steps: [{ after: '1h', channel: 'sms', template: 'a' }] }),
      path: 'steps[0].after',
      message: /earlier than expire_after \(1h\)/,
    },
    {
      rule: 'channel is sms or email',
      input: doc({ steps: [{ after: '1m', channel: 'whatsapp', template: 'a' }] }),
      path: 'steps[0].channel',
      message: /must be one of: sms, email/,
    },
    {
      rule: 'template is a slug',
      input: doc({ steps: [{ after: '1m', channel: 'sms', template: 'Last Call' }] }),
      path: 'steps[0].template',
      message: /lowercase slug/,
    },
    {
      rule: 'offer methods are known',
      input: doc({ steps: [{ after: '1m', channel: 'sms', template: 'a', offer_methods: ['paypal'] }] }),
      path: 'steps[0].offer_methods[0]',
      message: /card, alipay, wechat_pay/,
    },
    {
      rule: 'offer methods not repeated',
      input: doc({ steps: [{ after: '1m', channel: 'sms', template: 'a', offer_methods: ['card', 'card'] }] }),
      path: 'steps[0].offer_methods',
      message: /twice/,
    },
    {
      rule: 'offer methods not empty',
      input: doc({ steps: [{ after: '1m', channel: 'sms', template: 'a', offer_methods: [] }] }),
      path: 'steps[0].offer_methods',
      message: /at least one/,
    },
    {
      rule: 'unknown key in a step',
      input: doc({ steps: [{ after: '1m', channel: 'sms', template: 'a', delay: '1m' }] }),
      path: 'steps[0].delay',
      message: /unknown key/,
    },
    {
      rule: 'a step is a mapping',
      input: doc({ steps: ['send sms'] }),
      path: 'steps[0]',
      message: /mapping/,
    },
  ];

  it.each(cases)('$rule → $path', ({ input, path: expectedPath, message }) => {
    const issues = issuesOf(() => validateCadence(input));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe(expectedPath);
    expect(issues[0]?.message).toMatch(message);
  });

  it('accepts null as "none" for quiet hours and the daily cap', () => {
    const cadence = validateCadence(doc({ quiet_hours: null, max_messages_per_day: null }));
    expect(cadence.quietHours).toBeUndefined();
    expect(cadence.maxMessagesPerDay).toBeUndefined();
  });

  it('accepts overnight and same-day quiet hours', () => {
    expect(validateCadence(doc({ quiet_hours: { start: '21:00', end: '09:00' } })).quietHours).toEqual({
      start: '21:00',
      end: '09:00',
    });
    expect(validateCadence(doc({ quiet_hours: { start: '12:00', end: '14:30' } })).quietHours?.end).toBe('14:30');
  });

  it('accepts explicit categories, including fraud_suspected next to any', () => {
    const cadence = validateCadence(
      doc({ match: { failure_categories: ['any', 'fraud_suspected'], currencies: ['EUR', 'CNY'], min_amount: 500 } }),
    );
    expect(cadence.match).toEqual({
      failureCategories: ['any', 'fraud_suspected'],
      currencies: ['EUR', 'CNY'],
      minAmount: 500,
    });
  });

  it('names the out-of-order step even when other fields are invalid', () => {
    const issues = issuesOf(() =>
      validateCadence(
        doc({
          name: 'Bad',
          steps: [
            { after: '2h', channel: 'fax', template: 'a' },
            { after: '1h', channel: 'sms', template: 'b' },
          ],
        }),
      ),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['name', 'steps[0].channel', 'steps[1].after']);
  });

  it('throws a validation RecoupError that is not retryable', () => {
    try {
      validateCadence(42);
      expect.unreachable();
    } catch (err) {
      expect(isRecoupError(err, 'validation')).toBe(true);
      expect((err as { retryable: boolean }).retryable).toBe(false);
    }
  });
});

describe('template checks', () => {
  const catalogue = {
    templates: new Map<string, string[]>([
      ['nudge', ['en', 'de', 'zh-CN']],
      ['alternative-methods', ['en']],
      ['last-call', ['en', 'de']],
    ]),
    has(name: string) {
      return this.templates.has(name);
    },
    locales(name: string) {
      return this.templates.get(name) ?? [];
    },
  };
  const options: CadenceValidationOptions = { templates: catalogue, requiredLocales: ['en', 'de'] };

  it('passes when every template exists in every required locale', () => {
    const input = doc({
      steps: [
        { after: '1m', channel: 'sms', template: 'nudge' },
        { after: '2m', channel: 'sms', template: 'last-call' },
      ],
    });
    expect(validateCadence(input, options).steps).toHaveLength(2);
  });

  it('reports unknown templates and missing locales with the step path', () => {
    const input = doc({
      steps: [
        { after: '1m', channel: 'sms', template: 'nudge' },
        { after: '2m', channel: 'email', template: 'alternative-methods' },
        { after: '3m', channel: 'sms', template: 'x' },
      ],
    });
    expect(issuesOf(() => validateCadence(input, options))).toEqual([
      { path: 'steps[1].template', message: 'template "alternative-methods" is missing locale de' },
      { path: 'steps[2].template', message: 'unknown template "x"' },
    ]);
  });

  it('checks only existence without required locales', () => {
    const input = doc({ steps: [{ after: '1m', channel: 'email', template: 'alternative-methods' }] });
    expect(validateCadence(input, { templates: catalogue }).steps[0]?.template).toBe('alternative-methods');
  });

  it('checks nothing without a catalogue', () => {
    const input = doc({ steps: [{ after: '1m', channel: 'email', template: 'no-such-template' }] });
    expect(validateCadence(input, { requiredLocales: ['fr'] }).steps[0]?.template).toBe('no-such-template');
  });

  it('checks templates of the shipped cadence files against the agreed template names', () => {
    const shipped = {
      has: (name: string) => ['nudge', 'alternative-methods', 'last-call'].includes(name),
      locales: () => ['en'],
    };
    for (const file of ['default.yaml', 'demo.yaml']) {
      expect(parseCadenceDocument(readCadenceFile(file), { templates: shipped, requiredLocales: ['en'] })).toHaveLength(
        1,
      );
    }
  });
});

describe('cadenceToDocument', () => {
  const roundTrip = (cadence: Cadence) => parseCadenceDocument(stringify(cadenceToDocument(cadence)));

  it('round-trips the shipped cadences exactly', () => {
    for (const file of ['default.yaml', 'demo.yaml']) {
      const cadences = parseCadenceDocument(readCadenceFile(file));
      for (const cadence of cadences) expect(roundTrip(cadence)).toStrictEqual([cadence]);
    }
  });

  it('round-trips a cadence using every field', () => {
    const cadence = validateCadence({
      name: 'vip_cny',
      description: 'Big orders in CNY',
      match: {
        failure_categories: ['insufficient_funds', 'fraud_suspected'],
        min_amount: 100_000,
        currencies: ['CNY'],
      },
      quiet_hours: { start: '22:30', end: '07:15' },
      max_messages_per_day: 1,
      expire_after: '2d12h',
      switch_channel_on_failure: false,
      steps: [
        { after: '45s', channel: 'email', template: 'nudge', offer_methods: ['wechat_pay'] },
        { after: '1d1h1m1s', channel: 'sms', template: 'last-call' },
      ],
    });
    expect(roundTrip(cadence)).toStrictEqual([cadence]);
  });

  it('writes snake_case with duration strings', () => {
    const [cadence] = parseCadenceDocument(readCadenceFile('default.yaml'));
    if (!cadence) throw new Error('no cadence');
    const document = cadenceToDocument(cadence);
    expect(document).toMatchObject({
      name: 'default',
      quiet_hours: { start: '21:00', end: '09:00' },
      max_messages_per_day: 2,
      expire_after: '3d',
      switch_channel_on_failure: true,
    });
    expect(document.steps).toEqual([
      { after: '15m', channel: 'sms', template: 'nudge', offer_methods: ['card', 'alipay', 'wechat_pay'] },
      {
        after: '2h',
        channel: 'email',
        template: 'alternative-methods',
        offer_methods: ['alipay', 'wechat_pay', 'card'],
      },
      { after: '1d', channel: 'sms', template: 'last-call', offer_methods: ['card', 'alipay', 'wechat_pay'] },
    ]);
  });

  it('omits the optional fields that are unset', () => {
    const document = cadenceToDocument(validateCadence(doc()));
    expect(Object.keys(document)).toEqual(['name', 'match', 'expire_after', 'switch_channel_on_failure', 'steps']);
  });
});

describe('step incentives', () => {
  const withIncentive = (incentive: string, extra = '') => `
name: winback
expire_after: 3d
${extra}
steps:
  - { after: 1h, channel: sms, template: nudge }
  - { after: 1d, channel: email, template: last-call, incentive: ${incentive} }
`;

  it('parses percent with a cap, a fixed amount and a monthly budget, and round-trips them', () => {
    const [cadence] = parseCadenceDocument(
      withIncentive('{ percent: 10, max_amount: 2000 }', 'incentive_monthly_budget: 100000'),
    );
    expect(cadence?.steps[1]?.incentive).toEqual({ percent: 10, maxAmount: 2000 });
    expect(cadence?.incentiveMonthlyBudget).toBe(100000);
    expect(parseCadenceDocument(stringify(cadenceToDocument(cadence!)))).toEqual([cadence]);
    expect(parseCadenceDocument(withIncentive('{ amount: 500 }'))[0]?.steps[1]?.incentive).toEqual({ amount: 500 });
  });

  it('reports an incentive that is both, neither, or out of range, with its path', () => {
    expect(paths(() => parseCadenceDocument(withIncentive('{ percent: 10, amount: 500 }')))).toEqual([
      'steps[1].incentive',
    ]);
    expect(paths(() => parseCadenceDocument(withIncentive('{ max_amount: 500 }')))).toEqual(['steps[1].incentive']);
    expect(paths(() => parseCadenceDocument(withIncentive('{ percent: 150 }')))).toEqual([
      'steps[1].incentive.percent',
    ]);
  });
});
