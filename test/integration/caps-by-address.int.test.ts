import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, waitFor, type TestService } from '../helpers/service.js';

// Guest checkouts: every order comes with a new customer id, the person behind them is one address.
const cadences = `
- name: sms-capped
  match: { by_name_only: true }
  max_messages_per_day: 1
  expire_after: 3d
  steps:
    - { after: 1s, channel: sms, template: nudge }
- name: email-capped
  match: { by_name_only: true }
  max_messages_per_day: 1
  expire_after: 3d
  steps:
    - { after: 1s, channel: email, template: nudge }
`;

interface Decided {
  order_id: string;
  channel: string;
  status: string;
  reason: string | null;
  planned_at: Date;
}

describe('the daily cap counts by address across guest customer ids', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ cadences });
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** Two guest orders, due at the same instant, whose customers differ only in id (and the address's form). */
  async function twoGuestOrders(cadence: string, customers: Array<Record<string, unknown>>): Promise<string[]> {
    const occurredAt = new Date().toISOString();
    const events = customers.map((customer) => {
      const base = makeEvent({ occurred_at: occurredAt });
      return { ...base, order: { ...base.order, cadence, customer: { ...base.order.customer, ...customer } } };
    });
    const responses = await Promise.all(events.map((event) => svc.post(event)));
    expect(responses.map((r) => r.status)).toEqual([202, 202]);
    return events.map((event) => event.order.id);
  }

  /** The step messages of the orders once neither is in flight any more. */
  function decided(orderIds: string[]): Promise<Decided[]> {
    return waitFor(
      async () => {
        const found = await rows<Decided>(
          svc.database.db,
          sql`select order_id, channel, status, reason, planned_at from messages
              where order_id in (${sql.join(
                orderIds.map((id) => sql`${id}`),
                sql`, `,
              )})
              order by status desc`,
        );
        return found.length === orderIds.length && found.every((m) => m.status !== 'sending') ? found : undefined;
      },
      { what: 'both steps decided' },
    );
  }

  function outbox(suffix: string): string[] {
    return fs
      .readdirSync(svc.outboxDir)
      .filter((f) => f.endsWith(suffix))
      .map((f) => fs.readFileSync(path.join(svc.outboxDir, f), 'utf8'));
  }

  it('sends one SMS a day to a phone two guest customers share; the other step waits for the next day', async () => {
    const phone = '+8613900139001';
    const orderIds = await twoGuestOrders('sms-capped', [
      { id: 'guest_sms_1', phone, email: 'one@example.com' },
      { id: 'guest_sms_2', phone, email: 'two@example.com' },
    ]);

    const [sent, deferred] = await decided(orderIds);
    expect(sent).toMatchObject({ channel: 'sms', status: 'sent', reason: null });
    expect(deferred).toMatchObject({ channel: 'sms', status: 'scheduled', reason: 'daily_cap' });
    expect(deferred!.planned_at.getTime()).toBeGreaterThan(Date.now());
    const smsTo = () => outbox('.sms.json').filter((file) => (JSON.parse(file) as { to: string }).to === phone);
    expect(smsTo()).toHaveLength(1);

    // Nothing else goes out today.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(smsTo()).toHaveLength(1);
  }, 30_000);

  it('sends one email a day to an address two guest customers give in different case', async () => {
    const orderIds = await twoGuestOrders('email-capped', [
      { id: 'guest_email_1', phone: '+8613900139002', email: 'Guest.Buyer@Example.com' },
      { id: 'guest_email_2', phone: '+8613900139003', email: 'guest.buyer@example.COM' },
    ]);

    const [sent, deferred] = await decided(orderIds);
    expect(sent).toMatchObject({ channel: 'email', status: 'sent', reason: null });
    expect(deferred).toMatchObject({ channel: 'email', status: 'scheduled', reason: 'daily_cap' });
    const mails = await Promise.all(outbox('.eml').map((file) => simpleParser(file)));
    const to = mails.map((mail) => (mail.to && 'text' in mail.to ? mail.to.text : '').toLowerCase());
    expect(to.filter((address) => address.includes('guest.buyer@example.com'))).toHaveLength(1);
  }, 30_000);
});
