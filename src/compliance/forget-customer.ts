import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { eraseOutboxFiles } from '../channels/outbox-erasure.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';
import type { Tx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';
import { RecoupError } from '../platform/errors.js';
import { addressForms, addressHash, isHashedAddress, normaliseAddress } from './suppressions.js';

/** Fields of a customer object (in event payloads and audit entries) that identify a person. */
const personalFields = ['name', 'email', 'phone', 'locale', 'timezone'] as const;

export interface ForgetResult {
  customerId: string;
  /** `forgotten`: something was erased now; `already_forgotten`: nothing was left to erase. */
  status: 'forgotten' | 'already_forgotten';
  forgottenAt: Date;
  /** Rows changed per table (zero everywhere when already forgotten). */
  erased: {
    customer: number;
    messages: number;
    events: number;
    suppressions: number;
    consentEvents: number;
    auditEntries: number;
    clicks: number;
    recoveriesStopped: number;
    /** Events for the shop whose masked address was removed. */
    outboundEvents: number;
    /** Files deleted from the outbox (OUTBOX_DIR): the customer's messages, and any file addressed to them. */
    outboxFiles: number;
  };
}

export interface ForgetDeps {
  db: Db;
  clock: Clock;
  inFlightWait?: InFlightWait | undefined;
  /** The outbox transports' folder (OUTBOX_DIR). None: there is no outbox to erase. */
  outboxDir?: string | undefined;
}

/**
 * Erases a customer's personal data and keeps the anonymised financial records:
 *
 * - customers: name, email, phone, locale, timezone (and the bad-address marks) nulled, `forgotten_at` set;
 * - messages: `to_address` nulled, retry links revoked;
 * - events: the customer objects in payloads lose their personal fields, and any text holding one of
 *   the customer's addresses has it replaced (ids, amounts, currencies and timestamps stay);
 * - suppressions and the consent ledger keep `sha256:` of the address instead of the address, so an
 *   opted-out number or email stays opted out (dispatch matches hashes too);
 * - audit entries about the customer (contact changes on a retry page) lose the addresses;
 * - clicks lose their user agent; active recoveries stop (no address is left to remind);
 * - outbox files (`outboxDir`) of the customer's messages, or addressed to one of their addresses
 *   (a cadence test send, say), are deleted;
 * - orders, payment attempts, payments and refunds are kept as they are.
 *
 * Idempotent: running it again finds nothing to erase, changes nothing and writes no audit
 * entry. A customer that came back with new details (a later shop event) is erased again.
 * Locks the customer's orders first, as dispatch and the payment path do, then the customer.
 */
export async function forgetCustomer(deps: ForgetDeps, customerId: string, actor: string): Promise<ForgetResult> {
  const { result, inFlight } = await erase(deps, customerId, actor);
  // A reminder already on its way to the customer: answer once its provider answered it.
  await settleInFlightSends(deps.db, { customerId }, deps.inFlightWait);
  // The outbox file of a reminder that was on its way is written after the erasure committed.
  if (deps.outboxDir && inFlight.size > 0) {
    result.erased.outboxFiles += await eraseOutboxFiles(deps.outboxDir, { messageIds: inFlight });
  }
  return result;
}

/** The erasure in one transaction, and the customer's messages that were on their way meanwhile. */
async function erase(
  deps: ForgetDeps,
  customerId: string,
  actor: string,
): Promise<{ result: ForgetResult; inFlight: Set<string> }> {
  return deps.db.transaction(async (tx) => {
    const now = deps.clock.now();
    const orderIds = (
      await rows<{ id: string }>(
        tx,
        sql`select id from orders where customer_id = ${customerId} order by id for update`,
      )
    ).map((o) => o.id);
    const [customer] = await rows<{
      id: string;
      name: string | null;
      email: string | null;
      phone: string | null;
      locale: string | null;
      timezone: string | null;
      email_bad_reason: string | null;
      phone_bad_reason: string | null;
      forgotten_at: Date | null;
    }>(tx, sql`select * from customers where id = ${customerId} for update`);
    if (!customer) throw new RecoupError('not_found', `No customer ${customerId}`);

    const addresses = await knownAddresses(tx, customerId, customer);
    const messages = await rows<{ id: string; status: string }>(
      tx,
      sql`select id, status from messages where customer_id = ${customerId}`,
    );
    const inFlight = new Set(messages.filter((m) => m.status === 'sending' || m.status === 'unknown').map((m) => m.id));
    const erased: ForgetResult['erased'] = {
      customer: 0,
      messages: 0,
      events: 0,
      suppressions: 0,
      consentEvents: 0,
      auditEntries: 0,
      clicks: 0,
      recoveriesStopped: 0,
      outboundEvents: 0,
      outboxFiles: 0,
    };

    erased.recoveriesStopped = await count(
      tx,
      sql`update recoveries set state = 'stopped', ended_reason = 'customer_forgotten', ended_at = ${now},
                                next_run_at = null
          where customer_id = ${customerId} and state = 'active' returning id`,
    );
    erased.messages = await count(
      tx,
      sql`update messages set to_address = null, link_revoked_at = coalesce(link_revoked_at, ${now}), updated_at = ${now}
          where customer_id = ${customerId} and (to_address is not null or (link_token is not null and link_revoked_at is null))
          returning id`,
    );
    erased.suppressions = await hashSuppressions(tx, addresses);
    erased.consentEvents = await hashConsentEvents(tx, customerId, addresses);
    erased.events = await scrubEvents(tx, customerId, orderIds, addresses);
    erased.auditEntries = await scrubAudit(tx, customerId, addresses);
    // Events for the shop keep ids and amounts; the masked address goes (also from deliveries still to retry).
    erased.outboundEvents = await count(
      tx,
      sql`update outbound_events set data = data - 'to' - 'address'
          where (${
            orderIds.length > 0
              ? sql`order_id in (${sql.join(
                  orderIds.map((id) => sql`${id}`),
                  sql`, `,
                )})`
              : sql`false`
          } or (order_id is null and customer_id = ${customerId}))
            and (data ? 'to' or data ? 'address')
          returning id`,
    );
    if (orderIds.length > 0) {
      erased.clicks = await count(
        tx,
        sql`update clicks set user_agent = null
            where order_id in (${sql.join(
              orderIds.map((id) => sql`${id}`),
              sql`, `,
            )}) and user_agent is not null
            returning id`,
      );
    }
    if (deps.outboxDir) {
      // Inside the transaction: a file that cannot be deleted undoes the erasure, so that running it
      // again still knows the addresses to look for.
      erased.outboxFiles = await eraseOutboxFiles(deps.outboxDir, {
        messageIds: new Set(messages.map((m) => m.id)),
        isAddressee: addresseeTest(addresses),
      });
    }
    const personal = (
      ['name', 'email', 'phone', 'locale', 'timezone', 'email_bad_reason', 'phone_bad_reason'] as const
    ).filter((field) => customer[field] !== null);
    if (personal.length > 0 || !customer.forgotten_at) {
      // updated_at moves to now so that a replayed older shop event cannot bring the details back.
      erased.customer = await count(
        tx,
        sql`update customers set name = null, email = null, phone = null, locale = null, timezone = null,
                                 email_bad_reason = null, phone_bad_reason = null, forgotten_at = ${now},
                                 updated_at = greatest(updated_at, ${now})
            where id = ${customerId} returning id`,
      );
    }

    const changed = Object.values(erased).some((n) => n > 0);
    if (!changed) {
      return {
        result: { customerId, status: 'already_forgotten', forgottenAt: customer.forgotten_at ?? now, erased },
        inFlight,
      };
    }
    // What was erased, never the values.
    await tx.execute(
      sql`insert into audit_log (id, at, actor, action, subject, before, after)
          values (${`aud_${randomBytes(12).toString('hex')}`}, ${now}, ${actor}, 'customer.forget',
                  ${`customer:${customerId}`},
                  ${JSON.stringify({ fields: personal, forgottenAt: customer.forgotten_at })}::jsonb,
                  ${JSON.stringify({ forgottenAt: now, erased })}::jsonb)`,
    );
    return { result: { customerId, status: 'forgotten', forgottenAt: now, erased }, inFlight };
  });
}

interface Address {
  channel: Channel;
  address: string;
}

/** Every address recoup holds for the customer: on the record, on messages, in the consent ledger. */
async function knownAddresses(
  tx: Tx,
  customerId: string,
  customer: { email: string | null; phone: string | null },
): Promise<Address[]> {
  const found = new Map<string, Address>();
  const add = (channel: Channel, address: string | null) => {
    if (address && !isHashedAddress(address)) found.set(`${channel}:${address}`, { channel, address });
  };
  add('email', customer.email);
  add('sms', customer.phone);
  const used = await rows<{ channel: Channel; address: string }>(
    tx,
    sql`select distinct channel, to_address as address from messages
        where customer_id = ${customerId} and to_address is not null
        union
        select distinct channel, address from consent_events where customer_id = ${customerId}`,
  );
  for (const row of used) add(row.channel, row.address);
  return [...found.values()];
}

/** Whether an address is one of `addresses`, compared in their normalised forms. */
function addresseeTest(addresses: readonly Address[]): (channel: Channel, address: string) => boolean {
  const known = new Set(addresses.map(({ channel, address }) => `${channel}:${normaliseAddress(channel, address)}`));
  return (channel, address) => known.has(`${channel}:${normaliseAddress(channel, address)}`);
}

async function hashSuppressions(tx: Tx, addresses: Address[]): Promise<number> {
  let changed = 0;
  for (const { channel, address } of addresses) {
    const forms = addressForms(channel, address).filter((form) => !isHashedAddress(form));
    const removed = await rows<{ reason: string; created_at: Date }>(
      tx,
      sql`delete from suppressions where channel = ${channel} and address in (${sql.join(
        forms.map((f) => sql`${f}`),
        sql`, `,
      )}) returning reason, created_at`,
    );
    const [first] = removed;
    if (!first) continue;
    changed += removed.length;
    await tx.execute(
      sql`insert into suppressions (channel, address, reason, created_at)
          values (${channel}, ${addressHash(channel, address)}, ${first.reason}, ${first.created_at})
          on conflict (channel, address) do nothing`,
    );
  }
  return changed;
}

async function hashConsentEvents(tx: Tx, customerId: string, addresses: Address[]): Promise<number> {
  const targets = await rows<{ id: string; channel: Channel; address: string }>(
    tx,
    sql`select id, channel, address from consent_events
        where customer_id = ${customerId} and address not like 'sha256:%'`,
  );
  // The same address recorded under no customer (a STOP from a number we could not match yet).
  for (const { channel, address } of addresses) {
    const forms = addressForms(channel, address).filter((form) => !isHashedAddress(form));
    targets.push(
      ...(await rows<{ id: string; channel: Channel; address: string }>(
        tx,
        sql`select id, channel, address from consent_events
            where customer_id is null and channel = ${channel} and address in (${sql.join(
              forms.map((f) => sql`${f}`),
              sql`, `,
            )})`,
      )),
    );
  }
  for (const row of targets) {
    await tx.execute(
      sql`update consent_events set address = ${addressHash(row.channel, row.address)} where id = ${row.id}`,
    );
  }
  return targets.length;
}

async function scrubEvents(tx: Tx, customerId: string, orderIds: string[], addresses: Address[]): Promise<number> {
  const events = await rows<{ id: string; payload: unknown }>(
    tx,
    orderIds.length > 0
      ? sql`select id, payload from events where customer_id = ${customerId} or order_id in (${sql.join(
          orderIds.map((id) => sql`${id}`),
          sql`, `,
        )})`
      : sql`select id, payload from events where customer_id = ${customerId}`,
  );
  let changed = 0;
  for (const event of events) {
    const scrubbed = scrubPayload(event.payload, addresses);
    if (JSON.stringify(scrubbed) === JSON.stringify(event.payload)) continue;
    await tx.execute(sql`update events set payload = ${JSON.stringify(scrubbed)}::jsonb where id = ${event.id}`);
    changed += 1;
  }
  return changed;
}

async function scrubAudit(tx: Tx, customerId: string, addresses: Address[]): Promise<number> {
  const subject = `customer:${customerId}`;
  const entries = await rows<{ id: string; before: unknown; after: unknown }>(
    tx,
    sql`select id, before, after from audit_log where (subject = ${subject} or actor = ${subject})
          and action <> 'customer.forget'`,
  );
  let changed = 0;
  for (const entry of entries) {
    // Audit entries about a customer are shaped like the customer: `{ email: …, phone: … }`.
    const before = scrubPayload(entry.before, addresses, true);
    const after = scrubPayload(entry.after, addresses, true);
    if (JSON.stringify([before, after]) === JSON.stringify([entry.before, entry.after])) continue;
    await tx.execute(
      sql`update audit_log set before = ${JSON.stringify(before)}::jsonb, after = ${JSON.stringify(after)}::jsonb
          where id = ${entry.id}`,
    );
    changed += 1;
  }
  return changed;
}

/**
 * A copy of `value` without the customer's personal data: the personal fields of every object
 * under a `customer` key (or of the value itself when `isCustomer`) become null, and every
 * string containing one of the addresses gets `[erased]` in its place. Everything else, ids,
 * amounts, currencies and timestamps included, is kept.
 */
export function scrubPayload(value: unknown, addresses: readonly Address[], isCustomer = false): unknown {
  if (typeof value === 'string') return scrubText(value, addresses);
  if (Array.isArray(value)) return value.map((item) => scrubPayload(item, addresses));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (isCustomer && (personalFields as readonly string[]).includes(key)) {
      out[key] = item === undefined ? item : null;
    } else {
      out[key] = scrubPayload(item, addresses, key === 'customer');
    }
  }
  return out;
}

function scrubText(text: string, addresses: readonly Address[]): string {
  let out = text;
  for (const { address } of addresses) {
    if (address.length < 5) continue;
    const pattern = new RegExp(address.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi');
    out = out.replace(pattern, '[erased]');
  }
  return out;
}

async function count(tx: Tx, query: ReturnType<typeof sql>): Promise<number> {
  return (await rows<unknown>(tx, query)).length;
}
