import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage } from '../../src/channels/email-sender.js';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SendReceipt, SmsMessage } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { UnsubscribeLinks } from '../../src/compliance/unsubscribe-links.js';
import { createLogger } from '../../src/platform/logger.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const cadencesYaml = `
- name: masked
  expire_after: 1h
  switch_channel_on_failure: false
  steps:
    - { after: 1m, channel: sms,   template: nudge }
    - { after: 2m, channel: email, template: alternative-methods }
    - { after: 3m, channel: email, template: last-call }
`;

describe('log masking during dispatch', () => {
  let database: TestDatabase;
  const lines: string[] = [];
  const clock = new FixedClock('2026-11-25T02:00:00Z');

  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('never writes a raw phone number or email address, even inside provider errors', async () => {
    const phone = `+86135${String(randomInt(10_000_000, 99_999_999))}`;
    const email = `Mask.${randomBytes(4).toString('hex')}@example.com`;
    // The real logger configuration, writing into `lines` at the most verbose level.
    const logger = createLogger('trace', 'recoup-test', { write: (line: string) => void lines.push(line) });

    // Providers that echo the address back, as Twilio and SMTP servers do in their errors.
    let emailCalls = 0;
    const sms = {
      transport: 'fake',
      async send(message: SmsMessage): Promise<SendReceipt> {
        throw new ProviderError('unknown', 'ETIMEDOUT', `no answer from Twilio for ${message.to}`, {
          cause: Object.assign(new Error(`socket hang up (${message.to})`), { to: message.to, body: message.body }),
        });
      },
      async close() {},
    };
    const mail = {
      transport: 'fake',
      async send(message: EmailMessage): Promise<SendReceipt> {
        emailCalls += 1;
        if (emailCalls === 1) {
          throw new ProviderError('unknown', 'ETIMEDOUT', `timeout after RCPT TO:<${message.to}>`, {
            cause: Object.assign(new Error(`450 <${message.to}> try later`), { rejected: [message.to] }),
          });
        }
        return { providerId: `fake-${message.messageId}`, acceptedAt: clock.now() };
      },
      async close() {},
    };

    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    const deps: DispatchDeps = {
      db: database.db,
      cadences,
      renderer,
      sms,
      email: mail,
      clock,
      logger,
      settings: {
        publicUrl: 'https://pay.example-shop.com',
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: 86_400_000,
        quietHoursSpreadMs: 0,
        sendMaxAttempts: 3,
        sendRetryBaseMs: 60_000,
        claimStaleAfterMs: 120_000,
      },
      unsubscribe: new UnsubscribeLinks({
        publicUrl: 'https://pay.example-shop.com',
        secret: 's',
        from: 'a@shop.example',
      }),
    };

    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const event = parseEvent({
      ...base,
      order: { ...base.order, cadence: 'masked', customer: { ...base.order.customer, phone, email } },
    });
    const started = await applyEvent(
      { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 },
      event,
      clock.now(),
    );
    if (started.status !== 'accepted') throw new Error('the recovery did not start');
    let wakeup = started.wakeups[0];
    const actions: string[] = [];
    for (let step = 0; step < 3 && wakeup; step++) {
      if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
      const result = await dispatchStep(deps, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
      actions.push(result.action);
      wakeup = result.wakeups[0];
    }
    // Logged directly too: a field the redact paths do not name.
    logger.warn({ detail: `Key (address)=(${phone}) already exists`, nested: { list: [email] } }, 'duplicate');

    expect(actions).toEqual(['unknown', 'unknown', 'sent']);
    const output = lines.join('');
    expect(output).toContain('provider outcome unknown; not re-sending');
    expect(output).toContain('socket hang up');
    const masked = `${phone.slice(0, 3)}${'*'.repeat(phone.length - 7)}${phone.slice(-4)}`;
    expect(output).toContain(masked);
    expect(output).toContain('M***@example.com');
    for (const raw of [phone, phone.slice(1), email, email.toLowerCase()]) {
      expect(output).not.toContain(raw);
    }
  });
});
