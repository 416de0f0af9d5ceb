import { describe, expect, it } from 'vitest';
import type { EmailMessage, EmailSender } from '../../src/channels/email-sender.js';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SendReceipt, SmsSender } from '../../src/channels/sms-sender.js';
import { MeteredEmailSender, MeteredSmsSender } from '../../src/ops/metered-senders.js';
import { bearerMatches } from '../../src/ops/metrics-server.js';
import { OpsMetrics } from '../../src/ops/metrics.js';

const at = (iso: string) => new Date(iso);
const receipt: SendReceipt = { providerId: 'SM1', acceptedAt: at('2024-05-10T06:00:00Z') };

/** A stopwatch that moves by `stepMs` on every read. */
function stopwatch(stepMs: number): () => number {
  let now = 0;
  return () => (now += stepMs);
}

function smsSender(send: SmsSender['send']): SmsSender {
  return { transport: 'twilio', send, close: async () => undefined };
}

/** The value of one series, e.g. `recoup_provider_errors_total{channel="sms",…}`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const matches = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (matches) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('OpsMetrics.observeDispatch', () => {
  it('observes send lateness in seconds for sent messages only', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    metrics.observeDispatch({
      action: 'sent',
      channel: 'sms',
      plannedAt: at('2024-05-10T06:00:00Z'),
      sentAt: at('2024-05-10T06:00:45Z'),
    });
    metrics.observeDispatch({ action: 'deferred' });
    const text = await metrics.text();
    expect(sample(text, 'recoup_send_lateness_seconds_count', { channel: 'sms' })).toBe(1);
    expect(sample(text, 'recoup_send_lateness_seconds_sum', { channel: 'sms' })).toBe(45);
    expect(sample(text, 'recoup_send_lateness_seconds_bucket', { channel: 'sms', le: '30' })).toBe(0);
    expect(sample(text, 'recoup_send_lateness_seconds_bucket', { channel: 'sms', le: '60' })).toBe(1);
    expect(sample(text, 'recoup_step_jobs_total', { action: 'sent' })).toBe(1);
    expect(sample(text, 'recoup_step_jobs_total', { action: 'deferred' })).toBe(1);
  });

  it('counts a wake-up that fired a little early as on time, not negative', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    metrics.observeDispatch({
      action: 'sent',
      channel: 'email',
      plannedAt: at('2024-05-10T06:00:01Z'),
      sentAt: at('2024-05-10T06:00:00.500Z'),
    });
    const text = await metrics.text();
    expect(sample(text, 'recoup_send_lateness_seconds_sum', { channel: 'email' })).toBe(0);
    expect(sample(text, 'recoup_send_lateness_seconds_bucket', { channel: 'email', le: '0.5' })).toBe(1);
  });

  it('includes Node.js process metrics unless told not to', async () => {
    expect(await new OpsMetrics().text()).toMatch(/^process_cpu_user_seconds_total /m);
    expect(await new OpsMetrics({ defaultMetrics: false }).text()).not.toMatch(/process_cpu_user_seconds_total/);
  });
});

describe('metered senders', () => {
  it('times a successful call and answers with the provider receipt', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const sms = new MeteredSmsSender(
      smsSender(async () => receipt),
      metrics,
      stopwatch(250),
    );
    expect(sms.transport).toBe('twilio');
    expect(await sms.send({ messageId: 'msg_1', to: '+8613800138000', body: 'hi' })).toBe(receipt);
    const text = await metrics.text();
    const ok = { channel: 'sms', transport: 'twilio', outcome: 'ok' };
    expect(sample(text, 'recoup_provider_request_duration_seconds_count', ok)).toBe(1);
    expect(sample(text, 'recoup_provider_request_duration_seconds_sum', ok)).toBe(0.25);
    expect(sample(text, 'recoup_provider_errors_total')).toBeUndefined();
  });

  it('counts a provider error by its code and rethrows the very same error', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const refused = new ProviderError('failed', '21211', "The 'To' number is not valid", {
      badAddress: 'invalid_address',
    });
    const sms = new MeteredSmsSender(
      smsSender(async () => {
        throw refused;
      }),
      metrics,
      stopwatch(1),
    );
    await expect(sms.send({ messageId: 'msg_1', to: '+8613800138000', body: 'hi' })).rejects.toBe(refused);
    const text = await metrics.text();
    expect(sample(text, 'recoup_provider_errors_total', { channel: 'sms', code: '21211', outcome: 'failed' })).toBe(1);
    expect(sample(text, 'recoup_provider_request_duration_seconds_count', { channel: 'sms', outcome: 'failed' })).toBe(
      1,
    );
  });

  it("passes the inner sender's lookup through, and has none when the inner sender has none", async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const inner: SmsSender = { ...smsSender(async () => receipt), lookup: async () => ({ kind: 'not_found' }) };
    const query = { messageId: 'msg_1', to: '+8613800138000', claimedAt: at('2024-05-10T06:00:00Z'), bodyMarker: 'x' };
    expect(await new MeteredSmsSender(inner, metrics).lookup?.(query)).toEqual({ kind: 'not_found' });
    expect(
      new MeteredSmsSender(
        smsSender(async () => receipt),
        metrics,
      ).lookup,
    ).toBeUndefined();
  });

  it('counts an adapter bug (not a ProviderError) as outcome unknown, code unexpected_error', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const inner: EmailSender = {
      transport: 'smtp',
      send: async (_message: EmailMessage) => {
        throw new TypeError('cannot read properties of undefined');
      },
      close: async () => undefined,
    };
    const email = new MeteredEmailSender(inner, metrics, stopwatch(1));
    await expect(
      email.send({ messageId: 'msg_2', to: 'li@example.com', subject: 's', html: '<p>h</p>', text: 't' }),
    ).rejects.toThrow(TypeError);
    const labels = { channel: 'email', transport: 'smtp', code: 'unexpected_error', outcome: 'unknown' };
    expect(sample(await metrics.text(), 'recoup_provider_errors_total', labels)).toBe(1);
  });

  it('keeps label values tame whatever code a provider answers with', async () => {
    const metrics = new OpsMetrics({ defaultMetrics: false });
    const sms = new MeteredSmsSender(
      smsSender(async () => {
        throw new ProviderError('retry', 'weird code "with quotes" and spaces', 'odd');
      }),
      metrics,
      stopwatch(1),
    );
    await expect(sms.send({ messageId: 'm', to: '+8613800138000', body: 'x' })).rejects.toThrow('odd');
    expect(sample(await metrics.text(), 'recoup_provider_errors_total', { code: 'other', outcome: 'retry' })).toBe(1);
  });

  it('closes the wrapped sender', async () => {
    let closed = false;
    const sms = new MeteredSmsSender(
      { transport: 'outbox', send: async () => receipt, close: async () => void (closed = true) },
      new OpsMetrics({ defaultMetrics: false }),
    );
    await sms.close();
    expect(closed).toBe(true);
  });
});

describe('bearerMatches', () => {
  it('accepts exactly the token, as a bearer credential', () => {
    expect(bearerMatches('Bearer s3cret-token', 's3cret-token')).toBe(true);
    expect(bearerMatches('bearer s3cret-token', 's3cret-token')).toBe(true);
    expect(bearerMatches('Bearer s3cret-tokem', 's3cret-token')).toBe(false);
    expect(bearerMatches('Basic s3cret-token', 's3cret-token')).toBe(false);
    expect(bearerMatches(undefined, 's3cret-token')).toBe(false);
  });
});
