import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { dispatchSettings } from '../../src/deps.js';
import { callDeadline, handOverDeadline, sendLeaseFor } from '../../src/recoveries/send-lease.js';

describe('the send lease', () => {
  it('under the defaults: a call starts within 5 s of its claim, and nothing is handed over after 15 s', () => {
    const lease = sendLeaseFor(10_000, 30_000);
    expect(lease).toEqual({ startWithinMs: 5_000, leaseMs: 16_000 });
    const claimedAt = new Date('2026-12-05T08:00:00Z');
    expect(callDeadline(claimedAt, lease)).toEqual(new Date('2026-12-05T08:00:05Z'));
    expect(handOverDeadline(claimedAt, lease)).toEqual(new Date('2026-12-05T08:00:15Z'));
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
