import type { Redis } from 'ioredis';
import { DateTime } from 'luxon';
import type pg from 'pg';
import { formatAmount } from '../../src/platform/format-amount.js';
import { stepJobId, stepQueueName } from '../../src/queue/queues.js';
import { isQuietTime } from '../../src/cadences/send-window.js';
import type { FakeSmtp } from '../helpers/fake-smtp.js';
import type { FakeTwilio } from '../helpers/fake-twilio.js';
import { maxMessagesPerDay, quietHours, stepOffsetsMs, wakeupHorizonMs, type OrderPlan } from './options.js';

/** What the fault harness checks once every recovery has ended: the guarantees, from the providers' records. */

/**
 * A step with no outcome this long after it was due, while its recovery still ran, is overdue:
 * well past the reconciler's bound for a lost wake-up (3.5 s) and a stalled job's lock (3 s).
 */
const missStepGraceMs = 10_000;
/** Message states that record what became of a step. */
const recordedOutcomes = ['sent', 'delivered', 'failed', 'unknown', 'skipped', 'suppressed', 'deferred'];

export interface CheckInput {
  db: pg.Pool;
  redis: Redis;
  prefix: string;
  plans: OrderPlan[];
  twilio: FakeTwilio;
  smtp: FakeSmtp;
  /** When each email address's unsubscribe was answered. */
  unsubscribedAt: ReadonlyMap<string, number>;
  readyTimeline: ReadonlyArray<{ at: number; ready: number }>;
}

export type CheckReport = Awaited<ReturnType<typeof check>>;

export async function check(input: CheckInput) {
  const { db, redis, prefix, plans, twilio, smtp, unsubscribedAt, readyTimeline } = input;
  const examples: string[] = [];
  const note = (line: string) => {
    if (examples.length < 20) examples.push(line);
  };

  const { rows: statusRows } = await db.query<{ status: string; n: number }>(
    `select status, count(*)::int as n from messages group by status`,
  );
  const count = (...statuses: string[]) =>
    statusRows.filter((r) => statuses.includes(r.status)).reduce((sum, r) => sum + r.n, 0);

  // Which order each accepted message was for. Customers with several orders share a phone and an
  // email: an SMS is told apart by the amount it names (unique per customer), an email by recoup's
  // message id.
  const byPhone = new Map<string, OrderPlan[]>();
  for (const p of plans) {
    for (const phone of [p.phone, p.newPhone]) {
      if (phone) byPhone.set(phone, [...(byPhone.get(phone) ?? []), p]);
    }
  }
  const byOrder = new Map(plans.map((p) => [p.orderId, p]));
  const { rows: emailRows } = await db.query<{ id: string; order_id: string }>(
    `select id, order_id from messages where channel = 'email'`,
  );
  const emailOrder = new Map(emailRows.map((m) => [m.id, m.order_id]));
  // The first STOP answered for each number: it stops SMS to that number for every order.
  const stoppedAt = new Map<string, number>();
  for (const p of plans) {
    if (p.stopAckAt !== undefined) stoppedAt.set(p.phone, Math.min(p.stopAckAt, stoppedAt.get(p.phone) ?? Infinity));
  }

  // Duplicates: one step of one recovery accepted twice by a provider. An SMS step is told apart
  // by its text (the retry link changes per claim), an email by recoup's message id, which is the
  // same for every claim of one step.
  const seen = new Map<string, number>();
  const accepted: Array<{
    key: string;
    plan: OrderPlan | undefined;
    at: Date;
    sms: string | undefined;
    email?: string;
  }> = [];
  for (const m of twilio.messages) {
    const candidates = byPhone.get(m.to) ?? [];
    accepted.push({
      key: `sms|${m.to}|${m.body.replace(/https?:\/\/\S+/g, '<link>')}`,
      plan:
        candidates.length === 1
          ? candidates[0]
          : candidates.find((p) => m.body.includes(formatAmount(p.amount, 'USD', 'en'))),
      at: m.acceptedAt,
      sms: m.to,
    });
  }
  for (const m of smtp.messages) {
    const to = m.rcptTo[0] ?? '';
    accepted.push({
      key: `email|${m.recoupMessageId ?? to}`,
      plan: byOrder.get(emailOrder.get(m.recoupMessageId ?? '') ?? ''),
      at: m.acceptedAt,
      sms: undefined,
      email: to,
    });
  }
  let duplicates = 0;
  let sentAfterPayment = 0;
  let acceptedAfterPayment = 0;
  let sentAfterStop = 0;
  let sentAfterCancel = 0;
  let sentToReplacedAddress = 0;
  let sentInQuietHours = 0;
  let unattributed = 0;
  // Shows the races were run: SMS to those numbers in the seconds before the answer.
  let smsShortlyBeforeStop = 0;
  let smsShortlyBeforeChange = 0;
  let acceptedShortlyBeforePayment = 0;
  let acceptedShortlyBeforeOtherStop = 0;
  const perCustomerDay = new Map<string, number>();
  for (const a of accepted) {
    const n = (seen.get(a.key) ?? 0) + 1;
    seen.set(a.key, n);
    if (n > 1) {
      duplicates += 1;
      note(`duplicate: ${a.key.slice(0, 120)}`);
    }
    const at = a.at.getTime();
    const shortlyBefore = (answeredAt: number | undefined) =>
      answeredAt !== undefined && at <= answeredAt && at > answeredAt - 3_000;
    const stopAt = a.sms !== undefined ? stoppedAt.get(a.sms) : undefined;
    if (stopAt !== undefined && at > stopAt) {
      sentAfterStop += 1;
      note(`sent after STOP: ${a.sms} accepted ${at - stopAt} ms after the STOP was answered`);
    }
    const unsubscribeAt = a.email !== undefined ? unsubscribedAt.get(a.email) : undefined;
    if (shortlyBefore(unsubscribeAt)) acceptedShortlyBeforeOtherStop += 1;
    if (unsubscribeAt !== undefined && at > unsubscribeAt) {
      sentAfterStop += 1;
      note(`sent after unsubscribe: ${a.email} accepted ${at - unsubscribeAt} ms after the unsubscribe was answered`);
    }
    const plan = a.plan;
    if (!plan) {
      unattributed += 1;
      note(`accepted message for no known order: ${a.key.slice(0, 120)}`);
      continue;
    }
    // Both measured against the moment the harness received the payment's answer, by either path.
    if (plan.paidAckAt !== undefined && at > plan.paidAckAt) {
      acceptedAfterPayment += 1;
      if (!plan.payViaGateway) sentAfterPayment += 1;
      note(
        `accepted after payment: ${plan.orderId} accepted ${at - plan.paidAckAt} ms after the payment's 2xx` +
          ` (${plan.payViaGateway ? 'gateway webhook' : 'shop event'})`,
      );
    }
    if (shortlyBefore(plan.paidAckAt)) acceptedShortlyBeforePayment += 1;
    if (a.sms === plan.phone && shortlyBefore(plan.stopAckAt)) smsShortlyBeforeStop += 1;
    if (a.sms === plan.phone && shortlyBefore(plan.changeAckAt)) smsShortlyBeforeChange += 1;
    if (shortlyBefore(plan.opsStopAckAt) || shortlyBefore(plan.cancelAckAt)) acceptedShortlyBeforeOtherStop += 1;
    if (a.sms === plan.phone && plan.changeAckAt !== undefined && at > plan.changeAckAt) {
      sentToReplacedAddress += 1;
      note(
        `sent to a replaced number: ${plan.phone} accepted ${at - plan.changeAckAt} ms after the change was answered`,
      );
    }
    if (plan.opsStopAckAt !== undefined && at > plan.opsStopAckAt) {
      sentAfterStop += 1;
      note(`sent after ops stop: ${plan.orderId} accepted ${at - plan.opsStopAckAt} ms after the stop was answered`);
    }
    if (plan.cancelAckAt !== undefined && at > plan.cancelAckAt) {
      sentAfterCancel += 1;
      note(`sent after cancellation: ${plan.orderId} accepted ${at - plan.cancelAckAt} ms after it was answered`);
    }
    if (isQuietTime(quietHours, plan.timezone, a.at)) {
      sentInQuietHours += 1;
      note(`sent in quiet hours: ${plan.orderId} (${plan.timezone}) at ${a.at.toISOString()}`);
    }
    const day = DateTime.fromMillis(at, { zone: plan.timezone }).toISODate() ?? '';
    const dayKey = `${plan.customerId}|${day}`;
    perCustomerDay.set(dayKey, (perCustomerDay.get(dayKey) ?? 0) + 1);
  }
  let capExceeded = 0;
  let customersAtCap = 0;
  for (const [key, n] of perCustomerDay) {
    if (n >= maxMessagesPerDay) customersAtCap += 1;
    if (n > maxMessagesPerDay) {
      capExceeded += n - maxMessagesPerDay;
      note(`daily cap exceeded: ${key} got ${n} messages (cap ${maxMessagesPerDay})`);
    }
  }
  const { rows: deferredRows } = await db.query<{ reason: string; n: number }>(
    `select reason, count(*)::int as n from messages where reason in ('quiet_hours', 'daily_cap') group by reason`,
  );
  const deferred = (reason: string) => deferredRows.find((r) => r.reason === reason)?.n ?? 0;

  // Every message recoup recorded as sent was accepted by the provider under that id.
  const { rows: sentRows } = await db.query<{ id: string; channel: string; provider_id: string | null }>(
    `select id, channel, provider_id from messages where status in ('sent', 'delivered')`,
  );
  const twilioSids = new Set(twilio.messages.map((m) => m.sid));
  const smtpIds = new Set(smtp.messages.map((m) => m.recoupMessageId));
  let sentNotAccepted = 0;
  for (const m of sentRows) {
    const ok = m.channel === 'sms' ? twilioSids.has(m.provider_id ?? '') : smtpIds.has(m.id);
    if (!ok) {
      sentNotAccepted += 1;
      note(`recorded sent but not accepted: ${m.id} (${m.channel})`);
    }
  }

  // Lost: an accepted payment.failed without a recovery, or an active recovery due within the wake-up
  // horizon whose wake-up is not in Redis.
  const { rows: recoveryRows } = await db.query<{
    order_id: string;
    id: string;
    state: string;
    wake_seq: number;
    beyond_horizon: boolean;
  }>(
    `select order_id, id, state, wake_seq,
            next_run_at > clock_timestamp() + $1::float8 * interval '1 millisecond' as beyond_horizon
     from recoveries`,
    [wakeupHorizonMs],
  );
  const recoveryOf = new Map(recoveryRows.map((r) => [r.order_id, r]));
  let lostRecoveries = 0;
  let stillActive = 0;
  for (const plan of plans) {
    if (!plan.failedAccepted) continue;
    const recovery = recoveryOf.get(plan.orderId);
    if (!recovery) {
      // Paid before its recovery started is fine only if the payment came first; here it never does.
      lostRecoveries += 1;
      note(`no recovery for ${plan.orderId}`);
      continue;
    }
    if (recovery.state !== 'active') continue;
    stillActive += 1;
    if (recovery.beyond_horizon) continue;
    const exists = await redis.exists(`${prefix}:${stepQueueName}:${stepJobId(recovery.id, recovery.wake_seq)}`);
    if (exists === 0) {
      lostRecoveries += 1;
      note(`active recovery ${recovery.id} has no wake-up`);
    }
  }
  const { rows: endings } = await db.query<{ reason: string; n: number }>(
    `select coalesce(ended_reason, state) as reason, count(*)::int as n from recoveries group by 1 order by 2 desc`,
  );
  const { rows: stuck } = await db.query<{ n: number }>(
    `select count(*)::int as n from messages where status = 'sending'`,
  );

  // The ledger holds exactly the payments the shop reported, once each.
  const { rows: ledger } = await db.query<{ order_id: string; total: string; n: number }>(
    `select order_id, sum(amount)::text as total, count(*)::int as n from payments group by order_id`,
  );
  const ledgerOf = new Map(ledger.map((l) => [l.order_id, l]));
  let ledgerMismatch = 0;
  let ledgerTotal = 0;
  let paymentsTotal = 0;
  for (const plan of plans) {
    const row = ledgerOf.get(plan.orderId);
    const expected = plan.paidAckAt !== undefined ? plan.amount : 0;
    paymentsTotal += expected;
    const actual = row ? Number(row.total) : 0;
    ledgerTotal += actual;
    // A payment whose POST never got an answer may still have committed: then it must be there once.
    const uncertain = plan.payAfterMs !== undefined && plan.paidAckAt === undefined;
    if (actual !== expected && !(uncertain && actual === plan.amount)) {
      ledgerMismatch += 1;
      note(`ledger: ${plan.orderId} holds ${actual}, expected ${expected}`);
    }
  }

  // Lost payments: an order the harness paid (a 2xx on either path) that is not paid now. A
  // gateway webhook cut by a server crash must have been answered 2xx in the end, and count here.
  const { rows: orderRows } = await db.query<{ id: string; status: string }>(`select id, status from orders`);
  const orderStatus = new Map(orderRows.map((o) => [o.id, o.status]));
  let paymentsLost = 0;
  for (const plan of plans) {
    if (plan.paidAckAt === undefined) {
      if (plan.throughServerCrash) {
        paymentsLost += 1;
        note(`payment lost: ${plan.orderId}'s gateway webhook, cut by a server crash, was never answered 2xx`);
      }
      continue;
    }
    const status = orderStatus.get(plan.orderId);
    if (status !== 'paid') {
      paymentsLost += 1;
      note(
        `payment lost: ${plan.orderId} is ${status ?? 'missing'} after its ${plan.payViaGateway ? 'gateway webhook' : 'shop event'} was answered`,
      );
    }
  }

  const steps = await stepAccounting(db, readyTimeline, note);
  return {
    ...steps,
    acceptedAfterPayment,
    sentAfterStop,
    sentAfterCancel,
    sentToReplacedAddress,
    sentInQuietHours,
    capExceeded,
    customersAtCap,
    deferredQuietHours: deferred('quiet_hours'),
    deferredDailyCap: deferred('daily_cap'),
    unattributed,
    smsShortlyBeforeStop,
    smsShortlyBeforeChange,
    acceptedShortlyBeforePayment,
    acceptedShortlyBeforeOtherStop,
    paymentsLost,
    stepsScheduled: statusRows.reduce((sum, r) => sum + r.n, 0),
    sent: count('sent', 'delivered'),
    skipped: count('skipped', 'suppressed'),
    failed: count('failed'),
    unknown: count('unknown'),
    duplicates,
    sentAfterPayment,
    sentNotAccepted,
    lostRecoveries,
    stillActive,
    stuckSending: stuck[0]?.n ?? 0,
    ledgerMismatch,
    endings: endings.map((e) => `${e.reason}=${e.n}`).join(' '),
    ledgerTotal,
    paymentsTotal,
    examples,
  };
}

/**
 * Missed steps: a step with no recorded outcome (not sent, failed, unknown, skipped or suppressed,
 * nor deferred with a reason) although its recovery moved past it, or although it was due
 * missStepGraceMs or more before its recovery expired while a worker was ready all that time.
 * A step is due at its offset, or when the step before it was decided if that came later; a step
 * behind one deferred (quiet hours, a daily cap) past the expiry never comes due. Steps whose window
 * had no ready worker for a while are counted apart.
 */
async function stepAccounting(
  db: pg.Pool,
  readyTimeline: ReadonlyArray<{ at: number; ready: number }>,
  note: (line: string) => void,
) {
  const { rows: stepRecoveries } = await db.query<{
    id: string;
    order_id: string;
    started_at: Date;
    ended_at: Date | null;
    ended_reason: string | null;
    step_index: number;
  }>(`select id, order_id, started_at, ended_at, ended_reason, step_index from recoveries`);
  // A step deferred (quiet hours, a daily cap) or waiting for a retry is `scheduled` with its reason.
  const { rows: stepRows } = await db.query<{ recovery_id: string; step: number; status: string; decided_at: Date }>(
    `select recovery_id, step, case when status = 'scheduled' and reason is not null then 'deferred' else status end as status,
            updated_at as decided_at
     from messages where step is not null`,
  );
  const outcomes = new Map<string, Array<{ status: string; decidedAt: number }>>();
  for (const m of stepRows) {
    const key = `${m.recovery_id}|${m.step}`;
    outcomes.set(key, [...(outcomes.get(key) ?? []), { status: m.status, decidedAt: m.decided_at.getTime() }]);
  }
  /** At least one worker was ready at every moment of [from, to]. */
  const workersUpThroughout = (from: number, to: number) => {
    let readyAtFrom = 0;
    for (const entry of readyTimeline) {
      if (entry.at <= from) readyAtFrom = entry.ready;
      else if (entry.at <= to && entry.ready === 0) return false;
    }
    return readyAtFrom > 0;
  };
  const checkedAt = Date.now();
  let missedSteps = 0;
  let stepsDueWithoutWorker = 0;
  let stepsBehindDeferral = 0;
  for (const r of stepRecoveries) {
    const end = r.ended_at?.getTime() ?? checkedAt;
    // When the step before was decided (its offset for the first step).
    let previousDecidedAt = r.started_at.getTime();
    let behindDeferral = false;
    stepOffsetsMs.forEach((offset, step) => {
      const recorded = (outcomes.get(`${r.id}|${step}`) ?? []).filter((o) => recordedOutcomes.includes(o.status));
      const due = Math.max(r.started_at.getTime() + offset, previousDecidedAt);
      if (recorded.length > 0) {
        if (recorded.some((o) => o.status === 'deferred')) behindDeferral = true;
        previousDecidedAt = Math.max(...recorded.map((o) => o.decidedAt));
        return;
      }
      previousDecidedAt = Number.POSITIVE_INFINITY;
      if (r.step_index > step) {
        missedSteps += 1;
        note(`missed step: ${r.order_id} step ${step} passed over`);
        return;
      }
      // A payment, STOP or cancellation ends a recovery at its own moment, whatever was pending.
      if (r.ended_reason !== null && r.ended_reason !== 'expired') return;
      if (behindDeferral) {
        stepsBehindDeferral += 1;
        return;
      }
      if (due + missStepGraceMs > end) return;
      if (!workersUpThroughout(due, due + missStepGraceMs)) {
        stepsDueWithoutWorker += 1;
        return;
      }
      missedSteps += 1;
      note(
        `missed step: ${r.order_id} step ${step} due ${((end - due) / 1000).toFixed(1)} s before the recovery expired, never decided`,
      );
    });
  }
  return { missedSteps, stepsDueWithoutWorker, stepsBehindDeferral };
}
