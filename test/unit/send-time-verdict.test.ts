import { describe, expect, it } from 'vitest';
import { sendTimeVerdict, type GuardedClaim, type SendTimeState } from '../../src/recoveries/guarded-send.js';

const claim: GuardedClaim = {
  messageId: 'msg_1',
  claimId: 'c0ffee',
  orderId: 'ord_1',
  recoveryId: 'rec_1',
  step: 0,
  channel: 'sms',
  to: '+8613800138000',
  claimedAt: 0,
};

/** Everything as it was when the step was claimed. */
const unchanged: SendTimeState = {
  message_status: 'sending',
  claim_id: 'c0ffee',
  order_status: 'pending',
  recovery_state: 'active',
  phone: '+8613800138000',
  email: 'li@example.com',
  phone_bad_reason: null,
  email_bad_reason: null,
  suppression: null,
};

describe('sendTimeVerdict: may a claimed message still be handed to its provider?', () => {
  const cases: Array<[string, Partial<GuardedClaim>, Partial<SendTimeState> | undefined, unknown]> = [
    ['nothing changed', {}, {}, { kind: 'go' }],
    ['the message row is gone', {}, undefined, { kind: 'stale' }],
    ['another sender took the claim over', {}, { claim_id: 'beef' }, { kind: 'stale' }],
    ['the claim was given up as unknown', {}, { message_status: 'unknown', claim_id: null }, { kind: 'stale' }],
    ['the order was paid', {}, { order_status: 'paid' }, { kind: 'blocked', status: 'skipped', reason: 'order_paid' }],
    [
      'the order was cancelled',
      {},
      { order_status: 'cancelled' },
      { kind: 'blocked', status: 'skipped', reason: 'order_cancelled' },
    ],
    [
      'ops stopped the recovery',
      {},
      { recovery_state: 'stopped' },
      { kind: 'blocked', status: 'skipped', reason: 'recovery_stopped' },
    ],
    ['a fresh link of an exhausted recovery', { step: null }, { recovery_state: 'exhausted' }, { kind: 'go' }],
    [
      'a fresh link of a recovered recovery',
      { step: null },
      { recovery_state: 'recovered' },
      { kind: 'blocked', status: 'skipped', reason: 'recovery_recovered' },
    ],
    [
      'the shop changed the number',
      {},
      { phone: '+8613900139000' },
      { kind: 'blocked', status: 'skipped', reason: 'address_changed' },
    ],
    ['the number was removed', {}, { phone: null }, { kind: 'blocked', status: 'skipped', reason: 'address_changed' }],
    ['the same number written differently', {}, { phone: ' +86 138-0013-8000 ' }, { kind: 'go' }],
    ['the same email in another case', { channel: 'email', to: 'Li@Example.com' }, {}, { kind: 'go' }],
    [
      'the number was found bad meanwhile',
      {},
      { phone_bad_reason: 'unsubscribed' },
      { kind: 'blocked', status: 'skipped', reason: 'address_unsubscribed' },
    ],
    [
      'the customer replied STOP',
      {},
      { suppression: 'stop_reply' },
      { kind: 'blocked', status: 'suppressed', reason: 'stop_reply' },
    ],
    [
      'the order was paid and the customer replied STOP: the payment decides',
      {},
      { order_status: 'paid', suppression: 'stop_reply' },
      { kind: 'blocked', status: 'skipped', reason: 'order_paid' },
    ],
  ];

  it.each(cases)('%s', (_name, claimChanges, stateChanges, verdict) => {
    const state = stateChanges === undefined ? undefined : { ...unchanged, ...stateChanges };
    expect(sendTimeVerdict({ ...claim, ...claimChanges }, state)).toEqual(verdict);
  });
});
