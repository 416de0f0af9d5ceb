import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 60s
steps:
  - { after: 1s, channel: sms, template: nudge }
`;
const orders = 10;
const limit = { max: 2, windowMs: 2_000 };

/**
 * SEND_RATE_LIMIT is one budget for all workers together (BullMQ's limiter keeps it in Redis):
 * two worker processes' worth of services share 2 sends per 2 s, so ten messages due at once
 * go out over at least four more windows, and each goes out once, on its first attempt.
 */
describe('send rate limit across workers', () => {
  let twilio: FakeTwilio;
  let first: TestService;
  let second: TestService;

  beforeAll(async () => {
    twilio = await startFakeTwilio();
    const env = {
      SMS_TRANSPORT: 'twilio',
      TWILIO_ACCOUNT_SID: twilio.accountSid,
      TWILIO_AUTH_TOKEN: twilio.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_URL: twilio.url,
      SEND_RATE_LIMIT: String(limit.max),
      SEND_RATE_WINDOW: `${limit.windowMs}ms`,
    };
    first = await startTestService({ cadences: cadence, env });
    second = await startTestService({
      env,
      database: first.database,
      prefix: first.prefix,
      roles: { http: false, worker: true },
    });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
    await twilio?.close();
  });

  it('makes limited jobs wait instead of failing them', async () => {
    for (let i = 0; i < orders; i += 1) {
      const event = makeEvent({}, { customer: { id: `cus_rl_${i}`, phone: `+1415555${2000 + i}`, locale: 'en' } });
      expect((await first.post(event)).status).toBe(202);
    }
    const sent = await waitFor(
      async () => {
        const list = await rows<{ status: string; attempts: number }>(
          first.database.db,
          sql`select status, attempts from messages`,
        );
        return list.length === orders && list.every((m) => m.status === 'sent') ? list : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 250, what: 'every message to be sent' },
    );
    // Waiting is not failing: one provider call per message, no retry.
    expect(sent.map((m) => m.attempts)).toEqual(Array(orders).fill(1));
    expect(twilio.messages).toHaveLength(orders);

    // Ten sends at two per window need five windows: the last starts four windows after the first
    // (less the time the first took to reach the provider). Unlimited, all ten go out at once.
    const times = twilio.messages.map((m) => m.acceptedAt.getTime()).sort((a, b) => a - b);
    const span = (times.at(-1) ?? 0) - (times[0] ?? 0);
    expect(span).toBeGreaterThanOrEqual(3 * limit.windowMs);
  }, 60_000);
});
