import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { dispatchSettings } from '../../src/app/deps.js';
import { defaultInFlightWait } from '../../src/messages/in-flight.js';
import { defaultSendLease, handOverDeadline, mayStartCall, sendLeaseFor } from '../../src/recoveries/send-lease.js';

describe('the send lease', () => {
  it('under the defaults: a call starts within 5 s of its claim, and nothing is handed over after 15 s', () => {
    const lease = sendLeaseFor(10_000, 30_000);
    expect(lease).toEqual({ startWithinMs: 5_000, leaseMs: 16_000 });
    // Deadlines count on the sender's monotonic clock from its claim; wall clocks do not enter.
    const claimedAt = 1_000_000;
    expect(mayStartCall(claimedAt, lease, claimedAt + 4_999)).toBe(true);
    expect(mayStartCall(claimedAt, lease, claimedAt + 5_000)).toBe(false);
    const wall = Date.parse('2026-12-05T08:00:02Z');
    expect(handOverDeadline(claimedAt, lease, claimedAt + 2_000, wall)).toEqual(new Date('2026-12-05T08:00:15Z'));
  });

  it('is the default wait of answers for messages in flight, with the default accept grace after it', () => {
    expect(defaultInFlightWait).toEqual({
      leaseMs: defaultSendLease.leaseMs,
      acceptGraceMs: loadConfig({}).providerAcceptGraceMs,
    });
  });

  it('is never outlived by the stale-claim takeover, whatever the timeouts', () => {
    for (const providerTimeout of ['100ms', '1s', '10s', '60s']) {
      for (const jobLock of ['1s', '3s', '30s', '5m']) {
        const settings = dispatchSettings(
          loadConfig({ PROVIDER_TIMEOUT: providerTimeout, JOB_LOCK_DURATION: jobLock }),
        );
        expect(settings.claimStaleAfterMs, `${providerTimeout} / ${jobLock}`).toBeGreaterThan(
          settings.sendLease.leaseMs,
        );
      }
    }
  });
});
