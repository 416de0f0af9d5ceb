import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { FailureCategory, OrderStatus } from '../domain.js';
import { newId } from '../ids.js';
import type { Wakeup } from '../queue/queues.js';
import { classifyFailure } from '../recoveries/classify-failure.js';
import { recordPayment } from '../payments/record-payment.js';
import { startRecovery } from '../recoveries/start-recovery.js';
import type { CustomerInput, EventInput } from './event-schema.js';

/** What an event did, stored on its row and returned to the caller. */
export type EventOutcome =
  | 'order_recorded'
  | 'recovery_started'
  | 'recovery_not_started'
  | 'recovery_already_exists'
  | 'order_paid'
  | 'duplicate_payment'
  | 'order_cancelled'
  | 'customer_updated'
  | 'payment_recorded'
  | 'stale'
  | 'order_already_final';

export type ApplyResult =
  | { status: 'duplicate' }
  | {
      status: 'accepted';
      outcome: EventOutcome;
      /** Wake-ups to add once the transaction committed. */
      wakeups: Wakeup[];
      /** Recoveries this event ended: their pending wake-ups may be removed (best effort). */
      ended: Array<{ recoveryId: string; wakeSeq: number }>;
    };

export interface ApplyEventDeps {
  db: Db;
  cadences: CadenceBook;
  abandonAfterMs: number;
  /** A payment within this long after a retry-link click counts as `clicked`. */
  clickWindowMs: number;
}

interface OrderRow {
  id: string;
  status: OrderStatus;
  state_at: Date;
}

/**
 * Applies one shop event in one transaction: the idempotency record, the customer,
 * the order (never moved backwards by an older event), and the recovery it starts or ends.
 * Concurrent deliveries of the same event id serialise on the events primary key, so
 * exactly one of them has an effect.
 */
export async function applyEvent(deps: ApplyEventDeps, event: EventInput, now: Date): Promise<ApplyResult> {
  return deps.db.transaction(async (tx) => {
    const occurredAt = new Date(event.occurred_at);
    const customer = event.order?.customer ?? event.customer;
    const claimed = await rows<{ id: string }>(
      tx,
      sql`insert into events (id, type, order_id, customer_id, occurred_at, received_at, outcome, payload)
          values (${event.id}, ${event.type}, ${event.order?.id ?? null}, ${customer?.id ?? null},
                  ${occurredAt}, ${now}, 'pending', ${JSON.stringify(event)}::jsonb)
          on conflict (id) do nothing
          returning id`,
    );
    if (claimed.length === 0) return { status: 'duplicate' };

    const result = await applyClaimedEvent(tx, deps, event, occurredAt, now);
    await tx.execute(sql`update events set outcome = ${result.outcome} where id = ${event.id}`);
    return { status: 'accepted', ...result };
  });
}

async function applyClaimedEvent(
  tx: Tx,
  deps: ApplyEventDeps,
  event: EventInput,
  occurredAt: Date,
  now: Date,
): Promise<{ outcome: EventOutcome; wakeups: Wakeup[]; ended: Array<{ recoveryId: string; wakeSeq: number }> }> {
  const none = { wakeups: [], ended: [] };
  const customer = event.order?.customer ?? event.customer;
  if (customer) await upsertCustomer(tx, customer, occurredAt);
  const input = event.order;
  if (event.type === 'customer.updated' || !input) return { outcome: 'customer_updated', ...none };

  const order = await lockOrder(tx, input, occurredAt);
  const payment = event.payment ?? undefined;
  const category: FailureCategory | undefined =
    event.type === 'payment.failed'
      ? classifyFailure({
          gateway: payment?.gateway ?? undefined,
          code: payment?.failure_code ?? undefined,
          message: payment?.failure_message ?? undefined,
        })
      : undefined;

  if (event.type === 'payment.failed' || event.type === 'payment.succeeded') {
    // The shop's own attempts, for the order's story; money received is recorded in payments.
    await tx.execute(
      sql`insert into payment_attempts (id, order_id, event_id, gateway, method, status, amount, currency,
                                        failure_code, failure_category, failure_message, occurred_at)
          values (${newId('att')}, ${input.id}, ${event.id}, ${payment?.gateway ?? null}, ${payment?.method ?? null},
                  ${event.type === 'payment.failed' ? 'failed' : 'succeeded'}, ${payment?.amount ?? input.amount},
                  ${input.currency}, ${payment?.failure_code ?? null}, ${category ?? null},
                  ${payment?.failure_message ?? null}, ${occurredAt})`,
    );
  }

  if (event.type === 'payment.succeeded') {
    const recorded = await recordPayment(
      tx,
      {
        orderId: input.id,
        gateway: 'shop',
        externalId: event.id,
        method: payment?.method ?? null,
        amount: payment?.amount ?? input.amount,
        currency: input.currency,
        paidAt: occurredAt,
      },
      { now, clickWindowMs: deps.clickWindowMs },
    );
    await tx.execute(sql`update orders set state_at = greatest(state_at, ${occurredAt}) where id = ${input.id}`);
    if (recorded.kind === 'duplicate') return { outcome: 'duplicate_payment', ...none };
    if (order.status !== 'pending') return { outcome: 'order_already_final', ...none };
    const ended = recorded.kind === 'recorded' && recorded.endedRecovery ? [recorded.endedRecovery] : [];
    return { outcome: 'order_paid', wakeups: [], ended: ended.map((r) => ({ recoveryId: r.id, wakeSeq: r.wakeSeq })) };
  }

  if (order.status !== 'pending') return { outcome: 'order_already_final', ...none };

  // A cancellation is a fact that applies whenever it arrives; the other events carry
  // state that an older event must not overwrite.
  if (event.type === 'order.cancelled') {
    const ended = await rows<{ id: string; wake_seq: number }>(
      tx,
      sql`update recoveries
          set state = 'cancelled', ended_at = ${now}, ended_reason = 'order_cancelled', next_run_at = null
          where order_id = ${input.id} and state = 'active'
          returning id, wake_seq`,
    );
    // Deferred or retrying reminders will never go out now.
    await tx.execute(
      sql`update messages set status = 'skipped', reason = 'order_cancelled', updated_at = ${now}
          where order_id = ${input.id} and status = 'scheduled'`,
    );
    await tx.execute(
      sql`update orders
          set status = 'cancelled', cancelled_at = ${occurredAt}, state_at = greatest(state_at, ${occurredAt}),
              abandon_check_at = null, updated_at = ${now}
          where id = ${input.id}`,
    );
    return {
      outcome: 'order_cancelled',
      wakeups: [],
      ended: ended.map((r) => ({ recoveryId: r.id, wakeSeq: r.wake_seq })),
    };
  }

  if (occurredAt < order.state_at) return { outcome: 'stale', ...none };

  await tx.execute(
    sql`update orders
        set amount = ${input.amount}, currency = ${input.currency}, description = ${input.description ?? null},
            coupon_code = ${couponCode(input)}, customer_id = ${input.customer.id},
            coupon_discount_amount = ${input.coupon?.discount_amount ?? null},
            coupon_expires_at = ${input.coupon?.expires_at ? new Date(input.coupon.expires_at) : null},
            requested_cadence = coalesce(${input.cadence ?? null}, requested_cadence),
            state_at = ${occurredAt}, updated_at = ${now},
            last_failure_code = case when ${event.type} = 'payment.failed' then ${payment?.failure_code ?? null} else last_failure_code end,
            last_failure_category = coalesce(${category ?? null}, last_failure_category),
            last_failure_message = case when ${event.type} = 'payment.failed' then ${payment?.failure_message ?? null} else last_failure_message end,
            last_gateway = coalesce(${payment?.gateway ?? null}, last_gateway),
            last_method = coalesce(${payment?.method ?? null}, last_method)
        where id = ${input.id}`,
  );

  if (event.type === 'order.created') {
    // Abandonment is decided later by the reconciler, unless a recovery already exists.
    await tx.execute(
      sql`update orders set abandon_check_at = ${new Date(occurredAt.getTime() + deps.abandonAfterMs)}
          where id = ${input.id} and not exists (select 1 from recoveries where order_id = ${input.id})`,
    );
    return { outcome: 'order_recorded', ...none };
  }

  // payment.failed
  await tx.execute(sql`update orders set abandon_check_at = null where id = ${input.id}`);
  const started = await startRecovery(
    tx,
    deps.cadences,
    {
      id: input.id,
      customerId: input.customer.id,
      amount: input.amount,
      currency: input.currency,
      failedMethod: payment?.method ?? null,
    },
    category ?? 'unknown',
    now,
    input.cadence,
  );
  if (started.started) return { outcome: 'recovery_started', wakeups: [started.wakeup], ended: [] };
  return {
    outcome: started.reason === 'already_exists' ? 'recovery_already_exists' : 'recovery_not_started',
    ...none,
  };
}

/**
 * Creates the order if it is new, then takes its row lock: the lock every path that
 * changes an order's recovery or sends for it holds (payment, cancellation, step dispatch).
 */
async function lockOrder(tx: Tx, input: NonNullable<EventInput['order']>, occurredAt: Date): Promise<OrderRow> {
  await tx.execute(
    sql`insert into orders (id, customer_id, amount, currency, description, coupon_code, coupon_discount_amount,
                            coupon_expires_at, requested_cadence, status, state_at)
        values (${input.id}, ${input.customer.id}, ${input.amount}, ${input.currency}, ${input.description ?? null},
                ${couponCode(input)}, ${input.coupon?.discount_amount ?? null},
                ${input.coupon?.expires_at ? new Date(input.coupon.expires_at) : null}, ${input.cadence ?? null},
                'pending', ${occurredAt})
        on conflict (id) do nothing`,
  );
  const [order] = await rows<OrderRow>(
    tx,
    sql`select id, status, state_at from orders where id = ${input.id} for update`,
  );
  if (!order) throw new Error(`order ${input.id} vanished inside its own transaction`);
  return order;
}

async function upsertCustomer(tx: Tx, customer: CustomerInput, occurredAt: Date): Promise<void> {
  // Fields the event omits keep their value; an older event never overwrites newer details.
  // A changed address forgets that the old one was bad.
  await tx.execute(
    sql`insert into customers (id, name, email, phone, locale, timezone, updated_at)
        values (${customer.id}, ${customer.name ?? null}, ${customer.email ?? null}, ${customer.phone ?? null},
                ${customer.locale ?? null}, ${customer.timezone ?? null}, ${occurredAt})
        on conflict (id) do update set
          name = coalesce(excluded.name, customers.name),
          email = coalesce(excluded.email, customers.email),
          phone = coalesce(excluded.phone, customers.phone),
          locale = coalesce(excluded.locale, customers.locale),
          timezone = coalesce(excluded.timezone, customers.timezone),
          email_bad_reason = case when excluded.email is distinct from customers.email and excluded.email is not null
                                  then null else customers.email_bad_reason end,
          phone_bad_reason = case when excluded.phone is distinct from customers.phone and excluded.phone is not null
                                  then null else customers.phone_bad_reason end,
          updated_at = excluded.updated_at
        where customers.updated_at <= excluded.updated_at`,
  );
}

function couponCode(order: NonNullable<EventInput['order']>): string | null {
  return order.coupon?.code ?? order.coupon_code ?? null;
}
