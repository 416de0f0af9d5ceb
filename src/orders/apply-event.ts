import { sql } from 'drizzle-orm';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import { writeBackEndpointId } from '../webhooks/endpoints.js';
import { retryingTransaction, type Tx } from '../db/tx.js';
import type { FailureCategory, OrderStatus } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import type { Wakeup } from '../queue/queues.js';
import { Batcher } from '../platform/batcher.js';
import { classifyFailure } from '../recoveries/classify-failure.js';
import { recordPayment } from '../payments/record-payment.js';
import { planRecovery } from '../recoveries/start-recovery.js';
import type { CustomerInput, EventInput } from '../domain/event-schema.js';

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
  /** A platform confirming a payment recoup collected and told it of (its write-back): not a second payment. */
  | 'payment_confirmed'
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
export async function applyEvent(
  deps: ApplyEventDeps,
  event: EventInput,
  now: Date,
  platform: string | null = null,
): Promise<ApplyResult> {
  if (oneStatementTypes.has(event.type)) return applyOrderEvent(deps, event, now, platform);
  // payment.succeeded and order.cancelled wait for the order's lock, which a sender may hold.
  return retryingTransaction(deps.db, async (tx) => {
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

    const result = await applyClaimedEvent(tx, deps, event, occurredAt, now, platform);
    await tx.execute(sql`update events set outcome = ${result.outcome} where id = ${event.id}`);
    return { status: 'accepted', ...result };
  });
}

/** The events of a flash sale: applied by one SQL function call, so one round trip each. */
const oneStatementTypes = new Set<EventInput['type']>(['order.created', 'payment.failed', 'customer.updated']);

/**
 * order.created, payment.failed and customer.updated in one statement: `recoup_apply_order_event`
 * (migrations/0004_perf.sql) does what applyClaimedEvent does for them, in the same order and under
 * the same order row lock, in the statement's own transaction. The cadence is chosen here beforehand
 * (the function starts a recovery with it only if the order has none); the failure is classified here.
 */
async function applyOrderEvent(
  deps: ApplyEventDeps,
  event: EventInput,
  now: Date,
  platform: string | null,
): Promise<ApplyResult> {
  const [result] = await applyOrderEvents(deps, [await prepareOrderEvent(deps, event, now, platform)]);
  if (!result) throw new Error('applyOrderEvents returned no result');
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}

/** One event's arguments for recoup_apply_order_event, and the recovery it would start. */
interface PreparedOrderEvent {
  params: Record<(typeof orderEventColumns)[number][0], unknown>;
  plan: { recoveryId: string; runAt: Date } | undefined;
}

/** recoup_apply_order_event's arguments (without the `p_` prefix) and their SQL types. */
const orderEventColumns = [
  ['event_id', 'text'],
  ['type', 'text'],
  ['occurred_at', 'timestamptz'],
  ['now', 'timestamptz'],
  ['payload', 'jsonb'],
  ['customer_id', 'text'],
  ['customer_name', 'text'],
  ['customer_email', 'text'],
  ['customer_phone', 'text'],
  ['customer_locale', 'text'],
  ['customer_timezone', 'text'],
  ['order_id', 'text'],
  ['amount', 'bigint'],
  ['currency', 'text'],
  ['description', 'text'],
  ['coupon_code', 'text'],
  ['coupon_discount_amount', 'bigint'],
  ['coupon_expires_at', 'timestamptz'],
  ['requested_cadence', 'text'],
  ['attempt_id', 'text'],
  ['gateway', 'text'],
  ['method', 'text'],
  ['failure_code', 'text'],
  ['failure_category', 'text'],
  ['failure_message', 'text'],
  ['payment_amount', 'bigint'],
  ['abandon_check_at', 'timestamptz'],
  ['recovery_id', 'text'],
  ['cadence_name', 'text'],
  ['cadence_version', 'integer'],
  ['holdout', 'boolean'],
  ['step_index', 'integer'],
  ['recovery_run_at', 'timestamptz'],
  ['recovery_expires_at', 'timestamptz'],
  ['items', 'jsonb'],
  ['payment_url', 'text'],
  ['platform', 'text'],
] as const;

const orderEventRecord = sql.raw(
  `j(i integer, ${orderEventColumns.map(([name, type]) => `${name} ${type}`).join(', ')})`,
);
const orderEventArguments = sql.raw(orderEventColumns.map(([name]) => `p_${name} => j.${name}`).join(', '));

async function prepareOrderEvent(
  deps: ApplyEventDeps,
  event: EventInput,
  now: Date,
  platform: string | null,
): Promise<PreparedOrderEvent> {
  const occurredAt = new Date(event.occurred_at);
  const customer = event.order?.customer ?? event.customer;
  const input = event.order;
  const payment = event.payment ?? undefined;
  const failed = event.type === 'payment.failed' && input !== undefined;
  const category: FailureCategory | undefined = failed
    ? classifyFailure({
        gateway: payment?.gateway ?? undefined,
        code: payment?.failure_code ?? undefined,
        message: payment?.failure_message ?? undefined,
      })
    : undefined;
  const plan = failed
    ? planRecovery(
        await deps.cadences.active(deps.db),
        { id: input.id, amount: input.amount, currency: input.currency },
        category ?? 'unknown',
        now,
        input.cadence,
        deps.cadences.defaultHoldoutPercent,
      )
    : undefined;
  const orderEvent = event.type !== 'customer.updated' && input !== undefined;
  return {
    params: {
      event_id: event.id,
      type: event.type,
      occurred_at: occurredAt,
      now,
      payload: event,
      customer_id: customer?.id ?? null,
      customer_name: customer?.name ?? null,
      customer_email: customer?.email ?? null,
      customer_phone: customer?.phone ?? null,
      customer_locale: customer?.locale ?? null,
      customer_timezone: customer?.timezone ?? null,
      order_id: input?.id ?? null,
      amount: input?.amount ?? null,
      currency: input?.currency ?? null,
      description: input?.description ?? null,
      coupon_code: input ? couponCode(input) : null,
      coupon_discount_amount: input?.coupon?.discount_amount ?? null,
      coupon_expires_at: input?.coupon?.expires_at ? new Date(input.coupon.expires_at) : null,
      requested_cadence: input?.cadence ?? null,
      attempt_id: failed ? newId('att') : null,
      gateway: payment?.gateway ?? null,
      method: payment?.method ?? null,
      failure_code: payment?.failure_code ?? null,
      failure_category: category ?? null,
      failure_message: payment?.failure_message ?? null,
      payment_amount: payment?.amount ?? null,
      abandon_check_at: orderEvent ? new Date(occurredAt.getTime() + deps.abandonAfterMs) : null,
      recovery_id: plan?.recoveryId ?? null,
      cadence_name: plan?.chosen.name ?? null,
      cadence_version: plan?.chosen.version ?? null,
      holdout: plan?.holdout ?? null,
      step_index: plan?.stepIndex ?? null,
      recovery_run_at: plan?.runAt ?? null,
      recovery_expires_at: plan?.expiresAt ?? null,
      items: input?.items ?? null,
      payment_url: input?.payment_url ?? null,
      platform,
    },
    plan: plan ? { recoveryId: plan.recoveryId, runAt: plan.runAt } : undefined,
  };
}

/**
 * Several prepared events in one statement, so in one transaction: the events a server receives at
 * the same moment share a round trip and a commit. They are applied customer by customer (the
 * function locks the customer before the order, so every batch takes its locks in one order), a
 * customer's events in the order they came. Results in the input's order. If the statement fails,
 * nothing of it was written: each event is then applied alone, so one event cannot fail another.
 */
async function applyOrderEvents(
  deps: ApplyEventDeps,
  events: PreparedOrderEvent[],
): Promise<Array<PromiseSettledResult<ApplyResult>>> {
  const key = (e: PreparedOrderEvent) => String(e.params.customer_id ?? '');
  const ordered = events
    .map((event, i) => ({ i, event }))
    .sort((a, b) => {
      const ka = key(a.event);
      const kb = key(b.event);
      return ka < kb ? -1 : ka > kb ? 1 : a.i - b.i;
    });
  const run = (batch: typeof ordered) =>
    rows<{ i: number; o_outcome: EventOutcome | 'duplicate'; o_recovery_id: string | null }>(
      deps.db,
      sql`select j.i, r.o_outcome, r.o_recovery_id
          from jsonb_to_recordset(${JSON.stringify(batch.map(({ i, event }) => ({ i, ...event.params })))}::jsonb)
            as ${orderEventRecord}
          cross join lateral recoup_apply_order_event(${orderEventArguments}) r`,
    );
  type Row = Awaited<ReturnType<typeof run>>[number];
  const applied = new Map<number, PromiseSettledResult<Row | undefined>>();
  try {
    for (const row of await run(ordered)) applied.set(row.i, { status: 'fulfilled', value: row });
  } catch (err) {
    if (ordered.length === 1) {
      applied.set(0, { status: 'rejected', reason: err });
    } else {
      // Alone, one after the other, in the batch's order.
      for (const entry of ordered) {
        try {
          const [row] = await run([entry]);
          applied.set(entry.i, { status: 'fulfilled', value: row });
        } catch (failure) {
          applied.set(entry.i, { status: 'rejected', reason: failure });
        }
      }
    }
  }
  return events.map((event, i): PromiseSettledResult<ApplyResult> => {
    const settled = applied.get(i);
    if (settled?.status === 'rejected') return settled;
    const row = settled?.value;
    if (!row || row.o_outcome === 'duplicate') return { status: 'fulfilled', value: { status: 'duplicate' } };
    const wakeups: Wakeup[] =
      row.o_outcome === 'recovery_started' && event.plan && row.o_recovery_id === event.plan.recoveryId
        ? [{ recoveryId: event.plan.recoveryId, wakeSeq: 0, runAt: event.plan.runAt }]
        : [];
    return { status: 'fulfilled', value: { status: 'accepted', outcome: row.o_outcome, wakeups, ended: [] } };
  });
}

/**
 * Applies events as applyEvent does, gathering the one-statement kinds that arrive together
 * (a flash sale's bursts) into one statement: see applyOrderEvents.
 */
export class EventApplier {
  readonly #deps: ApplyEventDeps;
  readonly #batcher: Batcher<PreparedOrderEvent, PromiseSettledResult<ApplyResult>>;

  constructor(
    deps: ApplyEventDeps,
    options: { maxBatch: number; maxRunning: number } = { maxBatch: 32, maxRunning: 4 },
  ) {
    this.#deps = deps;
    this.#batcher = new Batcher((events) => applyOrderEvents(deps, events), options);
  }

  /** `platform`: the connector the event came through (src/connectors/), null for /v1/events. */
  async apply(event: EventInput, now: Date, platform: string | null = null): Promise<ApplyResult> {
    if (!oneStatementTypes.has(event.type)) return applyEvent(this.#deps, event, now, platform);
    const settled = await this.#batcher.submit(await prepareOrderEvent(this.#deps, event, now, platform));
    if (settled.status === 'rejected') throw settled.reason;
    return settled.value;
  }
}

async function applyClaimedEvent(
  tx: Tx,
  deps: ApplyEventDeps,
  event: EventInput,
  occurredAt: Date,
  now: Date,
  platform: string | null,
): Promise<{ outcome: EventOutcome; wakeups: Wakeup[]; ended: Array<{ recoveryId: string; wakeSeq: number }> }> {
  const none = { wakeups: [], ended: [] };
  const customer = event.order?.customer ?? event.customer;
  if (customer) await upsertCustomer(tx, customer, occurredAt);
  const input = event.order;
  if (event.type === 'customer.updated' || !input) return { outcome: 'customer_updated', ...none };

  const order = await lockOrder(tx, input, occurredAt, platform);
  const payment = event.payment ?? undefined;

  if (event.type === 'payment.succeeded') {
    if (platform && order.status === 'paid' && (await platformWasTold(tx, input.id, platform))) {
      return { outcome: 'payment_confirmed', ...none };
    }
    // The shop's own attempts, for the order's story; money received is recorded in payments.
    await tx.execute(
      sql`insert into payment_attempts (id, order_id, event_id, gateway, method, status, amount, currency,
                                        failure_code, failure_category, failure_message, occurred_at)
          values (${newId('att')}, ${input.id}, ${event.id}, ${payment?.gateway ?? null}, ${payment?.method ?? null},
                  'succeeded', ${payment?.amount ?? input.amount}, ${input.currency}, ${payment?.failure_code ?? null},
                  null, ${payment?.failure_message ?? null}, ${occurredAt})`,
    );
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

  // order.created, payment.failed and customer.updated take applyOrderEvent's one statement.
  throw new Error(`${event.type} is not applied in a transaction`);
}

/**
 * Whether recoup told `platform` (its connector's write-back) of a payment it collected for this
 * order. The platform's own "paid" that follows (WooCommerce's `processing` after set_paid,
 * Shopify's `orders/paid` after orderMarkAsPaid) confirms that payment: the customer did not pay
 * twice. The delivery exists from before its first attempt, so an echo the platform sends while
 * that attempt is still waiting for its answer is recognised too.
 */
async function platformWasTold(tx: Tx, orderId: string, platform: string): Promise<boolean> {
  const [told] = await rows<{ told: boolean }>(
    tx,
    sql`select exists (
          select 1 from outbound_events e join webhook_deliveries d on d.event_id = e.id
          where e.order_id = ${orderId} and e.type = 'payment.succeeded' and e.data->>'collected_by' = 'recoup'
            and d.endpoint_id = ${writeBackEndpointId(platform)}) as told`,
  );
  return told?.told ?? false;
}

/**
 * Creates the order if it is new, then takes its row lock: the lock every path that
 * changes an order's recovery or sends for it holds (payment, cancellation, step dispatch).
 */
async function lockOrder(
  tx: Tx,
  input: NonNullable<EventInput['order']>,
  occurredAt: Date,
  platform: string | null,
): Promise<OrderRow> {
  await tx.execute(
    sql`insert into orders (id, customer_id, amount, currency, description, coupon_code, coupon_discount_amount,
                            coupon_expires_at, requested_cadence, status, state_at, items, payment_url, platform)
        values (${input.id}, ${input.customer.id}, ${input.amount}, ${input.currency}, ${input.description ?? null},
                ${couponCode(input)}, ${input.coupon?.discount_amount ?? null},
                ${input.coupon?.expires_at ? new Date(input.coupon.expires_at) : null}, ${input.cadence ?? null},
                'pending', ${occurredAt}, ${input.items ? JSON.stringify(input.items) : null}::jsonb,
                ${input.payment_url ?? null}, ${platform})
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
