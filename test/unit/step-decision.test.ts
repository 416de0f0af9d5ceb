import { describe, expect, it } from 'vitest';
import type { Cadence } from '../../src/cadences/cadence.js';
import type { CircuitHold } from '../../src/circuits/circuit-hold.js';
import { jitterMs } from '../../src/cadences/send-window.js';
import {
  decideStep,
  nextStepOf,
  type StepContext,
  type StepDecision,
  type StepSnapshot,
} from '../../src/recoveries/step-decision.js';

// Every case starts from one active recovery at its second step, due now, with a pending order and
// a customer with both addresses, and changes only what the case is about.
const now = new Date('2026-03-10T12:00:00Z');
const minutes = (n: number) => new Date(now.getTime() + n * 60_000);
const started = new Date('2026-03-10T10:00:00Z');

const cadence: Cadence = {
  name: 'standard',
  match: { failureCategories: ['any'], minAmount: 0, currencies: ['any'] },
  quietHours: undefined,
  maxMessagesPerDay: undefined,
  expireAfterMs: 86_400_000,
  switchChannelOnFailure: true,
  steps: [
    { afterMs: 0, channel: 'email', template: 'first', offerMethods: ['card'] },
    { afterMs: 2 * 3_600_000, channel: 'sms', template: 'nudge', offerMethods: ['card', 'alipay'] },
    { afterMs: 6 * 3_600_000, channel: 'email', template: 'last', offerMethods: ['card'] },
  ],
};
const [, step] = cadence.steps;
const noSwitching: Cadence = { ...cadence, switchChannelOnFailure: false };
const capped: Cadence = { ...cadence, maxMessagesPerDay: 1 };

const base: StepSnapshot = {
  wakeSeq: 3,
  recovery: {
    id: 'rec_1',
    order_id: 'ord_1',
    cadence_name: 'standard',
    cadence_version: 1,
    failure_category: 'insufficient_funds',
    state: 'active',
    step_index: 1,
    next_run_at: now,
    wake_seq: 3,
    started_at: started,
    expires_at: new Date('2026-03-11T10:00:00Z'),
  },
  order: {
    id: 'ord_1',
    customer_id: 'cus_1',
    status: 'pending',
    amount: '129.00',
    currency: 'CNY',
    description: null,
    coupon_code: null,
  },
  cadence,
  message: undefined,
  customer: {
    email: 'li@example.com',
    phone: '+8613800138000',
    email_bad_reason: null,
    phone_bad_reason: null,
    timezone: 'UTC',
    locale: 'zh-CN',
  },
  suppressions: new Map(),
  recentSends: [],
  addressSends: new Map(),
  circuits: [],
};

// Card and Alipay go to two gateways: a link is held only while both are open.
const circuits: CircuitHold = {
  gatewayFor: (method) => (method === 'card' ? 'stripe' : 'alipay'),
  settings: { recheckMs: 60_000, releaseSpreadMs: 0 },
};
const spreadCircuits: CircuitHold = { ...circuits, settings: { recheckMs: 60_000, releaseSpreadMs: 1_200_000 } };

const context: StepContext = {
  now,
  defaultTimezone: 'UTC',
  defaultLocale: 'en',
  quietHoursSpreadMs: 0,
  circuits,
  templates: {
    has: (template) => template !== 'missing-restored',
    resolveLocale: (_template, requested, fallback) => (requested === 'zh-CN' ? 'zh-CN' : fallback),
  },
};

const customer = base.customer!;
const recovery = base.recovery!;
const order = base.order!;
/** The move to the third step, planned six hours after the start. */
const toNextStep = { index: 2, runAt: new Date(started.getTime() + 6 * 3_600_000) };
const plainSend: StepDecision = {
  kind: 'send',
  channel: 'sms',
  to: '+8613800138000',
  template: 'nudge',
  locale: 'zh-CN',
  step: step!,
  cadence,
  plannedAt: now,
  messageId: undefined,
};
const heldMessage = { id: 'msg_1', status: 'scheduled', template: 'gateway-restored', stale_in_ms: null };

const cases: Array<[string, Partial<StepSnapshot>, StepDecision, Partial<StepContext>?]> = [
  ['no recovery', { recovery: undefined }, { kind: 'nothing' }],
  ['recovery no longer active', { recovery: { ...recovery, state: 'recovered' } }, { kind: 'nothing' }],
  ['wake-up of an earlier sequence', { wakeSeq: 2 }, { kind: 'stale' }],
  ['order paid', { order: { ...order, status: 'paid' } }, { kind: 'end', state: 'recovered', reason: 'order_paid' }],
  [
    'order cancelled',
    { order: { ...order, status: 'cancelled' } },
    { kind: 'end', state: 'cancelled', reason: 'order_cancelled' },
  ],
  ['cadence version missing', { cadence: undefined }, { kind: 'end', state: 'stopped', reason: 'cadence_missing' }],
  ['expired', { recovery: { ...recovery, expires_at: now } }, { kind: 'end', state: 'exhausted', reason: 'expired' }],
  [
    'steps done: waits for expiry',
    { recovery: { ...recovery, step_index: 3 } },
    { kind: 'reschedule', reason: 'steps_done', next: { index: 3, runAt: recovery.expires_at } },
  ],
  [
    'fired early',
    { recovery: { ...recovery, next_run_at: minutes(5) } },
    { kind: 'reschedule', reason: 'fired_early', next: { index: 1, runAt: minutes(5) } },
  ],
  [
    'fired within the skew tolerance',
    { recovery: { ...recovery, next_run_at: new Date(now.getTime() + 900) } },
    {
      ...plainSend,
      plannedAt: new Date(now.getTime() + 900),
    },
  ],
  [
    'claim in flight, not stale yet',
    { message: { id: 'msg_1', status: 'sending', template: 'nudge', stale_in_ms: 30_000 } },
    { kind: 'reschedule', reason: 'claim_in_flight', next: { index: 1, runAt: new Date(now.getTime() + 30_000) } },
  ],
  [
    'claim of a lost worker: given up, never re-sent',
    { message: { id: 'msg_1', status: 'sending', template: 'nudge', stale_in_ms: 0 } },
    { kind: 'unknown', messageId: 'msg_1', next: toNextStep },
  ],
  [
    'message recorded already: moves on',
    { message: { id: 'msg_1', status: 'sent', template: 'nudge', stale_in_ms: null } },
    { kind: 'reschedule', reason: 'already_decided', next: toNextStep, messageId: 'msg_1' },
  ],
  [
    'no contact',
    { customer: { ...customer, email: null, phone: null } },
    {
      kind: 'skip',
      reason: 'no_contact',
      channel: 'sms',
      template: 'nudge',
      messageId: undefined,
      next: toNextStep,
    },
  ],
  [
    'no customer row',
    { customer: undefined },
    { kind: 'skip', reason: 'no_contact', channel: 'sms', template: 'nudge', messageId: undefined, next: toNextStep },
  ],
  [
    'bad number, switches to email',
    { customer: { ...customer, phone_bad_reason: 'invalid_number' } },
    { ...plainSend, channel: 'email', to: 'li@example.com' },
  ],
  [
    'bad number, no switching',
    { cadence: noSwitching, customer: { ...customer, phone_bad_reason: 'invalid_number' } },
    {
      kind: 'skip',
      reason: 'bad_contact',
      channel: 'sms',
      template: 'nudge',
      messageId: undefined,
      next: toNextStep,
    },
  ],
  [
    'suppressed number, switches to email',
    { suppressions: new Map([['sms', 'stop_reply']]) },
    { ...plainSend, channel: 'email', to: 'li@example.com' },
  ],
  [
    'suppressed number, no switching',
    {
      cadence: noSwitching,
      suppressions: new Map([['sms', 'stop_reply']]),
      message: { ...heldMessage, template: 'nudge' },
    },
    {
      kind: 'suppress',
      channel: 'sms',
      to: '+8613800138000',
      suppression: 'stop_reply',
      template: 'nudge',
      messageId: 'msg_1',
      next: toNextStep,
    },
  ],
  [
    'quiet hours in the customer timezone',
    {
      cadence: { ...cadence, quietHours: { start: '18:00', end: '09:00' } },
      customer: { ...customer, timezone: 'Asia/Shanghai' },
    },
    {
      kind: 'defer',
      reason: 'quiet_hours',
      until: new Date('2026-03-11T01:00:00Z'),
      channel: 'sms',
      to: '+8613800138000',
      template: 'nudge',
      messageId: undefined,
    },
  ],
  [
    'daily cap reached today',
    { cadence: capped, recentSends: [new Date('2026-03-10T10:00:05Z')] },
    {
      kind: 'defer',
      reason: 'daily_cap',
      until: new Date('2026-03-11T00:00:00Z'),
      channel: 'sms',
      to: '+8613800138000',
      template: 'nudge',
      messageId: undefined,
    },
  ],
  [
    "daily cap: yesterday's sends do not count",
    { cadence: capped, recentSends: [new Date('2026-03-09T23:59:00Z')] },
    { ...plainSend, cadence: capped },
  ],
  [
    'daily cap: a send to the same phone under another customer id counts',
    { cadence: capped, addressSends: new Map([['sms', [new Date('2026-03-10T10:00:05Z')]]]) },
    {
      kind: 'defer',
      reason: 'daily_cap',
      until: new Date('2026-03-11T00:00:00Z'),
      channel: 'sms',
      to: '+8613800138000',
      template: 'nudge',
      messageId: undefined,
    },
  ],
  [
    "daily cap: a send to the customer's email under another customer id does not count for an SMS",
    { cadence: capped, addressSends: new Map([['email', [new Date('2026-03-10T10:00:05Z')]]]) },
    { ...plainSend, cadence: capped },
  ],
  [
    'daily cap: a step switched to email counts the sends to that email under other customer ids',
    {
      cadence: capped,
      customer: { ...customer, phone_bad_reason: '21211' },
      addressSends: new Map([
        ['sms', []],
        ['email', [new Date('2026-03-10T10:00:05Z')]],
      ]),
    },
    {
      kind: 'defer',
      reason: 'daily_cap',
      until: new Date('2026-03-11T00:00:00Z'),
      channel: 'email',
      to: 'li@example.com',
      template: 'nudge',
      messageId: undefined,
    },
  ],
  [
    "daily cap: the customer's and the address's sends add up",
    {
      cadence: { ...cadence, maxMessagesPerDay: 2 },
      recentSends: [new Date('2026-03-10T09:00:00Z')],
      addressSends: new Map([['sms', [new Date('2026-03-10T10:00:05Z')]]]),
    },
    {
      kind: 'defer',
      reason: 'daily_cap',
      until: new Date('2026-03-11T00:00:00Z'),
      channel: 'sms',
      to: '+8613800138000',
      template: 'nudge',
      messageId: undefined,
    },
  ],
  [
    'no daily cap: sends to the address under other customer ids change nothing',
    { addressSends: new Map([['sms', [new Date('2026-03-10T10:00:05Z')]]]) },
    plainSend,
  ],
  [
    'every gateway of the link behind an open circuit',
    {
      circuits: [
        { gateway: 'stripe', state: 'open', closed_at: null },
        { gateway: 'alipay', state: 'open', closed_at: null },
      ],
    },
    {
      kind: 'hold',
      reason: 'gateway_circuit_open',
      until: minutes(1),
      channel: 'sms',
      to: '+8613800138000',
      gateways: ['alipay', 'stripe'],
      messageId: undefined,
    },
  ],
  [
    'one gateway of the link open, the other healthy',
    { circuits: [{ gateway: 'stripe', state: 'open', closed_at: null }] },
    plainSend,
  ],
  [
    'held before, circuit closed: goes out with the restored template',
    { message: heldMessage, circuits: [{ gateway: 'stripe', state: 'closed', closed_at: minutes(-5) }] },
    { ...plainSend, template: 'gateway-restored', messageId: 'msg_1' },
  ],
  [
    'held before, circuit closed, no restored template: its own template',
    { message: heldMessage, circuits: [{ gateway: 'stripe', state: 'closed', closed_at: minutes(-5) }] },
    { ...plainSend, messageId: 'msg_1' },
    { templates: { ...context.templates, has: () => false } },
  ],
  [
    'held before, circuit just closed: waits for its slot in the release spread',
    {
      message: heldMessage,
      circuits: [
        { gateway: 'stripe', state: 'closed', closed_at: now },
        { gateway: 'alipay', state: 'closed', closed_at: now },
      ],
    },
    {
      kind: 'hold',
      reason: 'gateway_circuit_released',
      until: new Date(now.getTime() + jitterMs('rec_1', 1_200_000)),
      channel: 'sms',
      to: '+8613800138000',
      gateways: ['alipay', 'stripe'],
      messageId: 'msg_1',
    },
    { circuits: spreadCircuits },
  ],
  [
    'circuits open but not checked',
    {
      circuits: [
        { gateway: 'stripe', state: 'open', closed_at: null },
        { gateway: 'alipay', state: 'open', closed_at: null },
      ],
    },
    plainSend,
    { circuits: undefined },
  ],
  [
    'deferred before: sent now into its message',
    { message: { id: 'msg_1', status: 'scheduled', template: 'nudge', stale_in_ms: null } },
    { ...plainSend, messageId: 'msg_1' },
  ],
  [
    'locale the template lacks: the default',
    { customer: { ...customer, locale: 'fr' } },
    { ...plainSend, locale: 'en' },
  ],
  ['plain send', {}, plainSend],
];

describe('decideStep', () => {
  it.each(cases)('%s', (_name, change, expected, contextChange) => {
    expect(decideStep({ ...base, ...change }, { ...context, ...contextChange })).toEqual(expected);
  });

  it('a release slot after the spread has begun is a real wait', () => {
    // Guards the release-spread row above: a zero jitter would make it the same as an immediate send.
    expect(jitterMs('rec_1', 1_200_000)).toBeGreaterThan(0);
  });
});

describe('nextStepOf', () => {
  const recovery = base.recovery!;

  it('plans the next step at its cadence time when this one went out on time', () => {
    // Step 1 (2 h) went out at 12:00, on time; step 2 is at 6 h: 16:00.
    expect(nextStepOf(recovery, cadence, now, { minGapMs: 2 * 3_600_000 })).toEqual({
      index: 2,
      runAt: new Date('2026-03-10T16:00:00Z'),
    });
  });

  it('keeps the next step away from one that went out late, by the spacing up to the minimum gap', () => {
    // Step 1 went out at 15:30 (deferred): step 2's cadence time, 16:00, would follow it within 30 min.
    const late = new Date('2026-03-10T15:30:00Z');
    expect(nextStepOf(recovery, cadence, late, { minGapMs: 2 * 3_600_000 }).runAt).toEqual(
      new Date('2026-03-10T17:30:00Z'),
    );
    expect(nextStepOf(recovery, cadence, late, { minGapMs: 45 * 60_000 }).runAt).toEqual(
      new Date('2026-03-10T16:15:00Z'),
    );
    // Nothing went out (skipped, suppressed): no distance to keep.
    expect(nextStepOf(recovery, cadence, late).runAt).toEqual(new Date('2026-03-10T16:00:00Z'));
  });

  it('runs an overdue step now, and goes to the expiry after the last step', () => {
    const overdue = new Date('2026-03-10T20:00:00Z');
    expect(nextStepOf(recovery, cadence, overdue).runAt).toEqual(overdue);
    expect(nextStepOf({ ...recovery, step_index: 2 }, cadence, now, { minGapMs: 3_600_000 })).toEqual({
      index: 3,
      runAt: recovery.expires_at,
    });
  });
});
