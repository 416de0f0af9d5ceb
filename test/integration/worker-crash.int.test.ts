import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { testRedisUrl } from '../helpers/redis.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// Three SMS steps with different templates, so the fake provider can tell them apart.
const cadence = `
name: default
expire_after: 30s
steps:
  - { after: 1s, channel: sms, template: nudge }
  - { after: 3s, channel: sms, template: alternative-methods }
  - { after: 5s, channel: sms, template: last-call }
`;
const orders = 8;
const steps = 3;

/**
 * Kills `recoup worker` processes mid-cadence (once right after a provider accepted a
 * message but before it was recorded — the worst moment — and once at a random moment),
 * restarts them, and checks that every step of every recovery ended exactly once:
 * nothing lost, nothing sent twice.
 */
describe('worker killed mid-cadence', () => {
  let svc: TestService;
  let twilio: FakeTwilio;
  let outbox: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    twilio = await startFakeTwilio();
    svc = await startTestService({ cadences: cadence, roles: { http: true, worker: false } });
    outbox = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-crash-'));
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await svc.close();
    await twilio.close();
    fs.rmSync(outbox, { recursive: true, force: true });
  });

  function startWorker(faults?: string): { child: ChildProcess; exited: Promise<number | null> } {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'worker'], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: svc.database.url,
        REDIS_URL: testRedisUrl(),
        QUEUE_PREFIX: svc.prefix,
        PUBLIC_URL: 'https://pay.example-shop.com',
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: twilio.accountSid,
        TWILIO_AUTH_TOKEN: twilio.authToken,
        TWILIO_FROM: '+15005550006',
        TWILIO_API_URL: twilio.url,
        OUTBOX_DIR: outbox,
        DATA_DIR: outbox,
        LOG_LEVEL: 'error',
        RECONCILE_INTERVAL: '200ms',
        RECONCILE_GRACE: '2s',
        JOB_LOCK_DURATION: '2s',
        PROVIDER_TIMEOUT: '1s',
        ...(faults ? { FAULT_INJECTION: faults } : {}),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, exited };
  }

  it('loses no step and sends none twice', async () => {
    // This worker kills itself right after the provider accepted its third message.
    const first = startWorker('after_provider_answer_nth=3');
    for (let i = 0; i < orders; i += 1) {
      const event = makeEvent(
        {},
        { customer: { id: `cus_crash_${i}`, phone: `+1415555${String(1000 + i)}`, locale: 'en' } },
      );
      expect((await svc.post(event)).status).toBe(202);
    }
    await waitFor(async () => ((await first.exited) === null ? true : undefined), {
      timeoutMs: 20_000,
      what: 'the worker to crash at its fault point',
    });

    // Restart; then kill that one too at an arbitrary moment, and restart again.
    const second = startWorker();
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    second.child.kill('SIGKILL');
    await second.exited;
    startWorker();

    await waitFor(
      async () => {
        const [row] = await rows<{ n: number }>(
          svc.database.db,
          sql`select count(*)::int as n from recoveries where state = 'active'`,
        );
        return row?.n === 0 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500, what: 'every recovery to end' },
    );

    const messages = await rows<{
      recovery_id: string;
      step: number;
      status: string;
      to_address: string;
      provider_id: string | null;
    }>(
      svc.database.db,
      sql`select recovery_id, step, status, to_address, provider_id from messages order by recovery_id, step`,
    );
    // Nothing lost: every step of every recovery has its one message, decided.
    expect(messages).toHaveLength(orders * steps);
    for (const m of messages) expect(['sent', 'unknown']).toContain(m.status);
    // The message whose answer was never recorded is `unknown`, not re-sent.
    expect(messages.filter((m) => m.status === 'unknown').length).toBeGreaterThanOrEqual(1);

    // Nothing sent twice, as the provider saw it: one acceptance per recipient and step.
    const perStep = new Map<string, number>();
    for (const accepted of twilio.messages) {
      const key = `${accepted.to}|${accepted.body.replace(/https:\/\/\S+/g, '')}`;
      perStep.set(key, (perStep.get(key) ?? 0) + 1);
    }
    expect([...perStep.values()].filter((n) => n > 1)).toEqual([]);
    // Every message recorded as sent was accepted by the provider under that SID.
    for (const m of messages.filter((x) => x.status === 'sent')) {
      expect(twilio.message(m.provider_id ?? '')?.to).toBe(m.to_address);
    }
  }, 120_000);
});
