import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { OutboxEmailSender } from '../../src/channels/outbox-email-sender.js';
import { OutboxSmsSender, type OutboxSmsFile } from '../../src/channels/outbox-sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import {
  freshLinkIntervalMs,
  freshLinksPerCustomerPerDay,
  sendFreshLink,
  type FreshLinkDeps,
} from '../../src/recoveries/fresh-link.js';
import { issueRetryLink } from '../../src/recoveries/ops-actions.js';
import { lookupRetryToken } from '../../src/retry-links/retry-token.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { makeEvent } from '../helpers/service.js';

const publicUrl = 'https://pay.example-shop.com';
const ttlMs = 86_400_000;
const cadencesYaml = `
- name: texts
  expire_after: 3d
  steps:
    - { after: 1m, channel: sms, template: nudge }
- name: mails
  expire_after: 3d
  steps:
    - { after: 1m, channel: email, template: nudge }
- name: nightly-quiet
  expire_after: 3d
  quiet_hours: { start: '21:00', end: '08:00' }
  steps:
    - { after: 1m, channel: sms, template: nudge }
- name: one-a-day
  expire_after: 3d
  max_messages_per_day: 1
  steps:
    - { after: 1m, channel: sms, template: nudge }
`;

interface Link {
  token: string;
  messageId: string;
  orderId: string;
  customerId: string;
  event: ReturnType<typeof parseEvent>;
}

interface MessageRow {
  id: string;
  step: number | null;
  channel: string;
  template: string;
  status: string;
  to_address: string;
  provider_id: string | null;
  link_token: string;
  link_expires_at: Date;
}

describe('sendFreshLink', () => {
  const clock = new FixedClock('2026-11-25T12:00:00Z');
  const outbox = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-fresh-'));
  let database: TestDatabase;
  let intake: ApplyEventDeps;
  let dispatch: DispatchDeps;
  let deps: FreshLinkDeps;

  beforeAll(async () => {
    database = await createTestDatabase();
    const renderer = TemplateRenderer.load('templates');
    await applyCadences(database.db, parseCadenceDocument(cadencesYaml, { templates: renderer }));
    const cadences = new CadenceBook(database.db);
    const logger = createLogger('silent');
    const sms = new OutboxSmsSender({ dir: outbox, clock });
    const email = new OutboxEmailSender({ dir: outbox, from: 'Example Shop <shop@example-shop.com>', clock });
    intake = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
    dispatch = {
      db: database.db,
      cadences,
      renderer,
      sms,
      email,
      clock,
      logger,
      settings: {
        publicUrl,
        shopName: 'Example Shop',
        defaultTimezone: 'UTC',
        defaultLocale: 'en',
        retryLinkTtlMs: ttlMs,
        quietHoursSpreadMs: 0,
        sendMaxAttempts: 3,
        sendRetryBaseMs: 1_000,
        claimStaleAfterMs: 60_000,
      },
    };
    deps = {
      db: database.db,
      sms,
      email,
      renderer,
      clock,
      publicUrl,
      shopName: 'Example Shop',
      retryLinkTtlMs: ttlMs,
      logger,
      cadences,
      defaultTimezone: 'UTC',
    };
  });

  afterAll(async () => {
    await database?.drop();
    fs.rmSync(outbox, { recursive: true, force: true });
  });

  /** A failed payment whose first reminder went out with a link, which has since expired. */
  async function expiredLink(
    cadence: 'texts' | 'mails' | 'nightly-quiet' | 'one-a-day',
    customer: Record<string, unknown> = {},
    order: Record<string, unknown> = {},
  ): Promise<Link> {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    const event = parseEvent({
      ...base,
      order: { ...base.order, ...order, cadence, customer: { ...base.order.customer, ...customer } },
    });
    const result = await applyEvent(intake, event, clock.now());
    const [wakeup] = result.status === 'accepted' ? result.wakeups : [];
    if (!wakeup) throw new Error('the recovery did not start');
    if (wakeup.runAt > clock.now()) clock.set(wakeup.runAt);
    const sent = await dispatchStep(dispatch, { recoveryId: wakeup.recoveryId, wakeSeq: wakeup.wakeSeq });
    if (sent.action !== 'sent' || !sent.messageId) throw new Error(`the reminder was not sent: ${sent.action}`);
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() - 1)} where id = ${sent.messageId}`,
    );
    const [row] = await rows<{ link_token: string; order_id: string; customer_id: string }>(
      database.db,
      sql`select link_token, order_id, customer_id from messages where id = ${sent.messageId}`,
    );
    return {
      token: row!.link_token,
      messageId: sent.messageId,
      orderId: row!.order_id,
      customerId: row!.customer_id,
      event,
    };
  }

  async function freshMessages(link: Link): Promise<MessageRow[]> {
    return rows<MessageRow>(
      database.db,
      sql`select id, step, channel, template, status, to_address, provider_id, link_token, link_expires_at
          from messages where order_id = ${link.orderId} and step is null order by created_at`,
    );
  }

  /** The SMS files in the outbox addressed to `phone`. */
  function smsTo(phone: string): OutboxSmsFile[] {
    return fs
      .readdirSync(outbox)
      .filter((name) => name.endsWith('.sms.json'))
      .map((name) => JSON.parse(fs.readFileSync(path.join(outbox, name), 'utf8')) as OutboxSmsFile)
      .filter((file) => file.to === phone);
  }

  it('sends a new link, by SMS, to the customer’s current phone', async () => {
    const link = await expiredLink('texts');
    // The customer changed their number since the reminder went out.
    await database.db.execute(sql`update customers set phone = '+8613900139000' where id = ${link.customerId}`);

    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'sent' });

    const [fresh] = await freshMessages(link);
    expect(fresh).toMatchObject({
      step: null,
      channel: 'sms',
      template: 'nudge',
      status: 'sent',
      to_address: '+8613900139000',
      provider_id: `outbox-${fresh!.id}`,
    });
    expect(fresh!.link_token).not.toBe(link.token);
    expect(fresh!.link_expires_at).toEqual(new Date(clock.now().getTime() + ttlMs));
    const file = JSON.parse(fs.readFileSync(path.join(outbox, `${fresh!.id}.sms.json`), 'utf8')) as OutboxSmsFile;
    expect(file.to).toBe('+8613900139000');
    expect(file.body).toContain(`${publicUrl}/r/${fresh!.link_token}`);
    expect(file.body).not.toContain(link.token);
    // The new link works; the old one stays expired.
    expect(await lookupRetryToken(database.db, fresh!.link_token, clock.now())).toMatchObject({ valid: true });
    expect(await lookupRetryToken(database.db, link.token, clock.now())).toMatchObject({ reason: 'expired' });
  });

  it('sends a new link by SMS for an expired link ops issued by hand (which came by no channel)', async () => {
    const base = makeEvent({ occurred_at: clock.now().toISOString() });
    expect((await applyEvent(intake, parseEvent(base), clock.now())).status).toBe('accepted');
    const issued = await issueRetryLink(
      database.db,
      base.order.id,
      { actor: 'key:ops', at: clock.now(), reason: 'support call' },
      { publicUrl, ttlMs },
    );
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() - 1)} where id = ${issued.messageId}`,
    );

    expect(await sendFreshLink(deps, issued.messageId)).toEqual({ kind: 'sent' });
    const fresh = await rows<MessageRow>(
      database.db,
      sql`select id, step, channel, template, status, to_address from messages
          where order_id = ${base.order.id} and id <> ${issued.messageId}`,
    );
    expect(fresh).toEqual([
      expect.objectContaining({ channel: 'sms', template: 'nudge', status: 'sent', to_address: '+8613800138000' }),
    ]);
  });

  it('sends at most one fresh link per recovery per 10 minutes, even to two clicks at once', async () => {
    const link = await expiredLink('texts');
    const results = await Promise.all([sendFreshLink(deps, link.messageId), sendFreshLink(deps, link.messageId)]);
    expect(results.map((r) => r.kind).sort()).toEqual(['sent', 'too_soon']);
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'too_soon' });
    expect(await freshMessages(link)).toHaveLength(1);

    clock.advance(freshLinkIntervalMs + 1_000);
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'sent' });
    const sent = await freshMessages(link);
    expect(sent).toHaveLength(2);
    expect(new Set(sent.map((m) => m.link_token)).size).toBe(2);
  });

  it('sends an email link to the current address for a reminder that went by email', async () => {
    const link = await expiredLink('mails', { locale: 'en-GB' });
    await database.db.execute(sql`update customers set email = 'new-li@example.com' where id = ${link.customerId}`);
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'sent' });
    const [fresh] = await freshMessages(link);
    expect(fresh).toMatchObject({ channel: 'email', status: 'sent', to_address: 'new-li@example.com' });
    const eml = fs.readFileSync(path.join(outbox, `${fresh!.id}.eml`), 'utf8');
    expect(eml).toMatch(/^To: new-li@example\.com\r?$/m);
    expect(eml.replace(/=\r?\n/g, '')).toContain(`/r/${fresh!.link_token}`);
  });

  it("lists the order's lines in a fresh link sent by email", async () => {
    const items = [{ name: 'Longjing tea', quantity: 2, amount: 9800 }];
    const link = await expiredLink('mails', { locale: 'en' }, { items });
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'sent' });
    const [fresh] = await freshMessages(link);
    const mail = await simpleParser(fs.readFileSync(path.join(outbox, `${fresh!.id}.eml`)));
    expect(mail.text).toContain('Longjing tea × 2  CN¥98.00\n');
  });

  it('is not possible for a paid order, a suppressed address, a link that still works or an unknown message', async () => {
    const paid = await expiredLink('texts');
    const succeeded = makeEvent({ type: 'payment.succeeded', occurred_at: clock.now().toISOString() });
    await applyEvent(intake, parseEvent({ ...succeeded, order: paid.event.order }), clock.now());
    expect(await sendFreshLink(deps, paid.messageId)).toEqual({ kind: 'not_possible' });
    expect(await freshMessages(paid)).toEqual([]);

    const phone = '+8613700137000';
    const stopped = await expiredLink('texts', { phone });
    await database.db.execute(
      sql`insert into suppressions (channel, address, reason) values ('sms', ${phone}, 'stop_reply')`,
    );
    expect(await sendFreshLink(deps, stopped.messageId)).toEqual({ kind: 'not_possible' });
    expect(await freshMessages(stopped)).toEqual([]);

    const working = await expiredLink('texts');
    await database.db.execute(
      sql`update messages set link_expires_at = ${new Date(clock.now().getTime() + 60_000)} where id = ${working.messageId}`,
    );
    expect(await sendFreshLink(deps, working.messageId)).toEqual({ kind: 'not_possible' });

    expect(await sendFreshLink(deps, 'msg_000000000000000000000000')).toEqual({ kind: 'not_possible' });
  });

  it('sends a customer at most a few fresh links a local day, however far apart they are asked for', async () => {
    const phone = '+8613600136001';
    const link = await expiredLink('texts', { phone, timezone: 'UTC' });
    for (let i = 0; i < freshLinksPerCustomerPerDay; i++) {
      expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'sent' });
      clock.advance(freshLinkIntervalMs + 1_000);
    }
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'daily_limit' });
    expect(await freshMessages(link)).toHaveLength(freshLinksPerCustomerPerDay);
    // The reminder and the fresh links, and nothing more.
    expect(smsTo(phone)).toHaveLength(1 + freshLinksPerCustomerPerDay);
  });

  it('sends no fresh link in the cadence’s quiet hours and says when it can be asked for again', async () => {
    const phone = '+8613600136002';
    const link = await expiredLink('nightly-quiet', { phone, timezone: 'UTC' });
    // It is past 21:00 in Tokyo now.
    await database.db.execute(sql`update customers set timezone = 'Asia/Tokyo' where id = ${link.customerId}`);
    const local = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Tokyo', hour: '2-digit', minute: '2-digit' });
    expect(local.format(clock.now()) >= '21:00').toBe(true);

    const tokyoMorning = new Date(`${clock.now().toISOString().slice(0, 10)}T23:00:00Z`);
    expect(await sendFreshLink(deps, link.messageId)).toEqual({
      kind: 'quiet_hours',
      until: tokyoMorning,
      timezone: 'Asia/Tokyo',
    });
    expect(await freshMessages(link)).toEqual([]);
    expect(smsTo(phone)).toHaveLength(1);
  });

  it('sends no fresh link once the cadence’s daily cap is reached', async () => {
    const phone = '+8613600136003';
    const link = await expiredLink('one-a-day', { phone, timezone: 'UTC' });
    expect(await sendFreshLink(deps, link.messageId)).toEqual({ kind: 'daily_limit' });
    expect(await freshMessages(link)).toEqual([]);
    expect(smsTo(phone)).toHaveLength(1);
  });
});
