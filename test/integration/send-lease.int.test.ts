import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { rows } from '../../src/db/rows.js';
import { sendLeaseFor } from '../../src/recoveries/send-lease.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

const cadence = `
name: default
expire_after: 2h
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 1h, channel: sms, template: last-call }
`;
// A 1.5 s window to start the provider call, a 3.5 s lease in all (src/recoveries/send-lease.ts).
const env = { PROVIDER_TIMEOUT: '1s', JOB_LOCK_DURATION: '3s', SEND_RETRY_BACKOFF: '1s' };
const lease = sendLeaseFor(1_000, 3_000);

/** An SMS provider whose client takes `handOverMs` to get the message out (a slow connect, say). */
class SlowHandOverSender implements SmsSender {
  readonly transport = 'slow';
  readonly accepted: Array<{ to: string; at: number }> = [];
  readonly calls: SmsMessage[] = [];
  onCall: ((message: SmsMessage) => void) | undefined;
  constructor(private readonly handOverMs: number) {}
  async send(message: SmsMessage) {
    this.calls.push(message);
    this.onCall?.(message);
    await new Promise((resolve) => setTimeout(resolve, this.handOverMs));
    const at = Date.now();
    this.accepted.push({ to: message.to, at });
    return { providerId: `SM${message.messageId}`, acceptedAt: new Date(at) };
  }
  async close() {}
}

describe('the send lease', () => {
  let svc: TestService | undefined;
  let second: TestService | undefined;
  let admin: pg.Client | undefined;
  afterEach(async () => {
    await admin?.end();
    await second?.close();
    await svc?.close();
    admin = undefined;
    second = undefined;
    svc = undefined;
  });

  it('answers a payment only after a reminder in flight reached the provider, even with its sender cut off', async () => {
    const sender = new SlowHandOverSender(300);
    svc = await startTestService({ cadences: cadence, env, overrides: { sms: sender } });
    admin = new pg.Client({ connectionString: svc.database.url });
    await admin.connect();
    const failed = makeEvent({}, { customer: { ...makeEvent().order.customer, phone: '+8613800138001' } });
    let paidAckAt: number | undefined;
    let payment: Promise<Response> | undefined;
    sender.onCall = () => {
      sender.onCall = undefined;
      // Cut every session of the service, as a network blip or a database failover would, then
      // pay while the message is still on its way: only the committed claim tells of it now.
      payment = (async () => {
        await admin!.query(
          `select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database() and pid <> pg_backend_pid()`,
        );
        // The cut may also hit the pooled connection the payment is given: the shop then sends the
        // same event again, as it does for any answer that is not a 2xx. The first 2xx counts.
        const paid = makeEvent({ type: 'payment.succeeded', occurred_at: new Date().toISOString() }, failed.order);
        let response = await svc!.post(paid);
        for (let tries = 1; response.status >= 500 && tries < 5; tries += 1) response = await svc!.post(paid);
        paidAckAt = Date.now();
        return response;
      })();
    };

    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => paidAckAt, { what: 'the payment to be answered' });
    expect((await payment!).status).toBeLessThan(300);
    const accepted = await waitFor(() => sender.accepted[0], { what: 'the reminder to reach the provider' });
    expect(accepted.at).toBeLessThanOrEqual(paidAckAt!);
    expect(sender.accepted).toHaveLength(1);
  });

  it('answers a payment after the reminder in flight even when the sending host’s clock is 12 s behind', async () => {
    // The lease is measured on Postgres's clock and the sender's monotonic one, never on a host's wall
    // clock: a worker whose clock is 12 s slow does not make its claims look older to the server.
    const sender = new SlowHandOverSender(6_000);
    const skewedEnv = { PROVIDER_TIMEOUT: '10s', JOB_LOCK_DURATION: '30s' };
    svc = await startTestService({ cadences: cadence, env: skewedEnv, roles: { http: true, worker: false } });
    second = await startTestService({
      env: skewedEnv,
      database: svc.database,
      prefix: svc.prefix,
      roles: { http: false, worker: true },
      overrides: { sms: sender, clock: { now: () => new Date(Date.now() - 12_000) } },
    });
    admin = new pg.Client({ connectionString: svc.database.url });
    await admin.connect();
    const failed = makeEvent();
    let paidAckAt: number | undefined;
    sender.onCall = () => {
      sender.onCall = undefined;
      void (async () => {
        // Whatever sessions the sender had are cut: only the committed claim tells of the message.
        await admin!.query(
          `select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database() and pid <> pg_backend_pid() and state like 'idle in transaction%'`,
        );
        const paid = makeEvent({ type: 'payment.succeeded', occurred_at: new Date().toISOString() }, failed.order);
        let response = await svc!.post(paid);
        for (let tries = 1; response.status >= 500 && tries < 5; tries += 1) response = await svc!.post(paid);
        expect(response.status).toBeLessThan(300);
        paidAckAt = Date.now();
      })();
    };
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => paidAckAt, { what: 'the payment to be answered', timeoutMs: 30_000 });
    expect(sender.accepted).toHaveLength(1);
    expect(sender.accepted[0]!.at).toBeLessThanOrEqual(paidAckAt!);
  }, 45_000);

  it('answers a payment while its sender is frozen between claim and call, and the sender then sends nothing', async () => {
    const sender = new SlowHandOverSender(0);
    let paid: ((value: void) => void) | undefined;
    const paymentAnswered = new Promise<void>((resolve) => (paid = resolve));
    let frozen = false;
    svc = await startTestService({
      cadences: cadence,
      env,
      overrides: {
        sms: sender,
        // A worker stopped (SIGSTOP, a long GC pause) right after its claim, until the payment was answered.
        faultPoint: async (point) => {
          if (point !== 'after_claim' || frozen) return;
          frozen = true;
          await paymentAnswered;
        },
      },
    });
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(() => (frozen ? true : undefined), { what: 'the sender to claim the step' });
    const answer = await svc.post(
      makeEvent({ type: 'payment.succeeded', occurred_at: new Date().toISOString() }, failed.order),
    );
    expect(answer.status).toBe(202);
    paid?.();
    const message = await waitFor(
      async () => {
        const order = await svc!.getOrder(failed.order.id);
        const step = order.messages.find((m) => m.step === 0);
        return step && step.status !== 'sending' ? step : undefined;
      },
      { what: 'the frozen sender to record its step' },
    );
    expect(message).toMatchObject({ status: 'skipped' });
    expect(sender.accepted).toEqual([]);
  });

  it('answers a payment only after the accept grace of a reminder whose provider call timed out', async () => {
    // A provider that gives no answer within PROVIDER_TIMEOUT (the message is recorded unknown) and
    // accepts the request 4 s after it came: past the 3.5 s lease, within PROVIDER_ACCEPT_GRACE.
    const lateAcceptances: number[] = [];
    const timingOut: SmsSender = {
      transport: 'late',
      async send() {
        setTimeout(() => lateAcceptances.push(Date.now()), 4_000);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        throw new ProviderError('unknown', 'ETIMEDOUT', 'no answer in time');
      },
      async close() {},
    };
    svc = await startTestService({
      cadences: cadence,
      env: { ...env, PROVIDER_ACCEPT_GRACE: '3s' },
      overrides: { sms: timingOut },
    });
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    await waitFor(
      async () =>
        (await svc!.getOrder(failed.order.id)).messages.some((m) => m.status === 'unknown') ? true : undefined,
      { what: 'the reminder to be recorded unknown' },
    );
    const payment = await svc.post(
      makeEvent({ type: 'payment.succeeded', occurred_at: new Date().toISOString() }, failed.order),
    );
    const answeredAt = Date.now();
    expect(payment.status).toBe(202);
    expect(lateAcceptances).toHaveLength(1);
    expect(lateAcceptances[0]).toBeLessThanOrEqual(answeredAt);
  });

  it('does not start a provider call once the window after the claim has passed: the step is retried', async () => {
    const sender = new SlowHandOverSender(0);
    let stalled = false;
    svc = await startTestService({
      cadences: cadence,
      env,
      overrides: {
        sms: sender,
        // A worker that stalls between its claim and the provider call for longer than the window.
        faultPoint: async (point) => {
          if (point !== 'after_claim' || stalled) return;
          stalled = true;
          await new Promise((resolve) => setTimeout(resolve, lease.startWithinMs + 200));
        },
      },
    });
    const failed = makeEvent();
    expect((await svc.post(failed)).status).toBe(202);
    const sent = await waitFor(
      async () => {
        const order = await svc!.getOrder(failed.order.id);
        const message = order.messages.find((m) => m.step === 0 && m.status === 'sent');
        return message;
      },
      { what: 'the step to be sent on its retry' },
    );
    expect(stalled).toBe(true);
    expect(sent.attempts).toBe(2);
    expect(sender.accepted).toHaveLength(1);
    // The SMS went out with its hand-over deadline, for the adapter to check as the request leaves:
    // the lease after the claim, less the hand-over margin (counted on the sender's monotonic clock).
    const [claim] = await rows<{ claimed_at: Date }>(
      svc.database.db,
      sql`select claimed_at from messages where order_id = ${failed.order.id} and step = 0`,
    );
    const expected = claim!.claimed_at.getTime() + lease.leaseMs - 1_000;
    expect(sender.calls).toHaveLength(1);
    expect(Math.abs((sender.calls[0]?.notAfter?.getTime() ?? 0) - expected)).toBeLessThan(50);
  });
});
