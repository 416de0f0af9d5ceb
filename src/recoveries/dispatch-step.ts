import { sql } from 'drizzle-orm';
import type { Cadence, CadenceStep } from '../cadences/cadence.js';
import type { CadenceBook } from '../cadences/cadence-book.js';
import {
  decideHold,
  linkGateways,
  readCircuits,
  recordHold,
  restoredTemplate,
  type CircuitHold,
} from '../circuits/circuit-hold.js';
import type { EmailSender } from '../channels/email-sender.js';
import { findSuppressions, normaliseAddress } from '../compliance/suppressions.js';
import type { UnsubscribeLinks } from '../compliance/unsubscribe-links.js';
import { ProviderError } from '../channels/provider-error.js';
import type { SendReceipt, SmsSender } from '../channels/sms-sender.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import type { Channel, FailureCategory, OrderStatus } from '../domain.js';
import { newId } from '../ids.js';
import { randomHex } from '../random.js';
import type { Logger } from '../logger.js';
import type { MessageContext } from '../messages/message-context.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import type { StepJobData, Wakeup } from '../queue/queues.js';
import { newRetryToken, retryUrl } from '../retry-links/retry-token.js';
import type { MessageCosts } from '../reports/message-cost.js';
import { Batcher } from '../batcher.js';
import { guardedSend, type GuardedClaim, type GuardedOutcome, type Rendered } from './guarded-send.js';
import { claimStart, defaultSendLease, type ClaimStart, type SendLease } from './send-lease.js';
import { nextSendTime } from './send-window.js';

export interface DispatchSettings {
  publicUrl: string;
  shopName: string;
  defaultTimezone: string;
  defaultLocale: string;
  retryLinkTtlMs: number;
  quietHoursSpreadMs: number;
  sendMaxAttempts: number;
  /** First delay after a transient provider error; doubles per attempt. */
  sendRetryBaseMs: number;
  /** A `sending` claim older than this belongs to a dead worker: its outcome is unknown. */
  claimStaleAfterMs: number;
  /** How soon after its claim a message must be handed over (src/recoveries/send-lease.ts). Default defaultSendLease. */
  sendLease?: SendLease;
}

export interface DispatchDeps {
  db: Db;
  cadences: CadenceBook;
  renderer: TemplateRenderer;
  sms: SmsSender;
  email: EmailSender;
  clock: Clock;
  logger: Logger;
  settings: DispatchSettings;
  /** Unsubscribe targets of every email (List-Unsubscribe headers, footer link). Unset: emails carry none. */
  unsubscribe?: UnsubscribeLinks | undefined;
  /** Gateway circuits (src/circuits/): holds steps whose retry link only leads to open circuits. Unset: no checks. */
  circuits?: CircuitHold | undefined;
  /** Unit costs for messages the provider does not price (src/reports/message-cost.ts). Unset: cost unknown. */
  messageCosts?: MessageCosts | undefined;
  /**
   * Test seam for the crash and fault harnesses: called at the two moments a crash is
   * most dangerous. Production leaves it undefined.
   */
  faultPoint?: (point: 'after_claim' | 'after_provider_answer', messageId: string) => Promise<void>;
}

export type DispatchAction =
  | 'sent'
  | 'skipped'
  | 'suppressed'
  | 'deferred'
  | 'retry_scheduled'
  | 'failed'
  | 'unknown'
  | 'ended'
  | 'rescheduled'
  | 'stale'
  | 'nothing';

export interface DispatchResult {
  action: DispatchAction;
  /** Wake-ups to add now that the state is committed. */
  wakeups: Wakeup[];
  messageId?: string;
  /** For a sent message: its channel, when it was planned and when the provider accepted it (send lateness). */
  channel?: Channel;
  plannedAt?: Date;
  sentAt?: Date;
}

interface RecoveryRow {
  id: string;
  order_id: string;
  cadence_name: string;
  cadence_version: number;
  failure_category: FailureCategory;
  state: string;
  step_index: number;
  next_run_at: Date | null;
  wake_seq: number;
  started_at: Date;
  expires_at: Date;
}

interface OrderRow {
  id: string;
  customer_id: string;
  status: OrderStatus;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
}

interface CustomerRow {
  id: string;
  name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
}

interface MessageRow {
  id: string;
  status: string;
  template: string;
  attempts: number;
  /** How long until a `sending` claim counts as a lost worker's; null without a claim. */
  stale_in_ms: number | null;
}

interface Claim {
  messageId: string;
  claimId: string;
  orderId: string;
  channel: Channel;
  to: string;
  template: string;
  locale: string;
  token: string;
  attempts: number;
  recovery: RecoveryRow;
  cadence: Cadence;
  context: MessageContext;
  /** When the claim was taken, on this process's monotonic clock: the send lease runs from it (src/recoveries/send-lease.ts). */
  claimedAt: ClaimStart;
}

type ClaimOutcome = { kind: 'done'; result: DispatchResult } | { kind: 'send'; claim: Claim };

/**
 * Runs one wake-up of one recovery: decides under the order's row lock whether its step
 * may be sent, records the message as `sending`, then sends while holding a share lock on
 * the order so that a payment cannot commit between the last check and the provider's
 * acceptance. A message whose outcome is unknown is never re-sent.
 */
export async function dispatchStep(deps: DispatchDeps, job: StepJobData): Promise<DispatchResult> {
  const [result] = await dispatchSteps(deps, [job]);
  if (!result) throw new Error('dispatchSteps returned no result');
  return result;
}

/**
 * Runs several wake-ups together, with the same rules as one: a worker hands over the jobs it
 * holds at once so that their statements are shared (one snapshot, one claim statement, one send
 * transaction for all of them) instead of a round trip each. Results are in the jobs' order.
 * A job whose fast-path claim did not apply is decided alone under its own lock, as before.
 */
export async function dispatchSteps(deps: DispatchDeps, jobs: StepJobData[]): Promise<DispatchResult[]> {
  const now = deps.clock.now();
  // Before any claim is sent: every send deadline counts from here (src/recoveries/send-lease.ts).
  const started = claimStart();
  // The common case (send this step now) in two statements for the whole batch; anything else, or
  // anything that changed in between, is decided by the locked path, one job at a time.
  const fast = await claimWithoutTransaction(deps, jobs, now, started);
  const outcomes = await Promise.all(
    jobs.map((job, i) => fast[i] ?? deps.db.transaction((tx) => claimStep(tx, deps, job, now, started))),
  );
  const results: Array<DispatchResult | undefined> = outcomes.map((o) => (o.kind === 'done' ? o.result : undefined));
  const claims = outcomes.flatMap((o, i) => (o.kind === 'send' ? [{ index: i, claim: o.claim }] : []));
  for (const { claim } of claims) await deps.faultPoint?.('after_claim', claim.messageId);
  if (claims.length > 0) {
    const sent = await sendClaimed(
      deps,
      claims.map((c) => c.claim),
    );
    claims.forEach((c, k) => (results[c.index] = sent[k]));
  }
  return results.map((r) => r ?? { action: 'nothing', wakeups: [] });
}

async function claimStep(
  tx: Tx,
  deps: DispatchDeps,
  job: StepJobData,
  now: Date,
  started: ClaimStart,
): Promise<ClaimOutcome> {
  const done = (action: DispatchAction, wakeups: Wakeup[] = [], messageId?: string): ClaimOutcome => ({
    kind: 'done',
    result: { action, wakeups, ...(messageId ? { messageId } : {}) },
  });

  // The order row lock first, always: it is the lock the payment path takes.
  const [order] = await rows<OrderRow>(
    tx,
    sql`select id, customer_id, status, amount::text as amount, currency, description, coupon_code
        from orders where id = (select order_id from recoveries where id = ${job.recoveryId})
        for update`,
  );
  const [recovery] = await rows<RecoveryRow>(tx, sql`select * from recoveries where id = ${job.recoveryId}`);
  if (!order || !recovery || recovery.state !== 'active') return done('nothing');
  if (recovery.wake_seq !== job.wakeSeq) return done('stale');

  if (order.status !== 'pending') {
    // The payment path ends recoveries itself; this only repairs a recovery it missed.
    await endRecovery(
      tx,
      recovery.id,
      order.status === 'paid' ? 'recovered' : 'cancelled',
      `order_${order.status}`,
      now,
    );
    return done('ended');
  }

  const version = await deps.cadences.version(recovery.cadence_name, recovery.cadence_version, tx);
  if (!version) {
    await endRecovery(tx, recovery.id, 'stopped', 'cadence_missing', now);
    deps.logger.error({ recoveryId: recovery.id, cadence: recovery.cadence_name }, 'cadence version missing');
    return done('ended');
  }
  const cadence = version.cadence;

  if (now >= recovery.expires_at) {
    await endRecovery(tx, recovery.id, 'exhausted', 'expired', now);
    return done('ended');
  }
  const step = cadence.steps[recovery.step_index];
  if (!step) return done('rescheduled', [await reschedule(tx, recovery, recovery.expires_at)]);
  if (recovery.next_run_at && now.getTime() < recovery.next_run_at.getTime() - 1_000) {
    // Fired early (clock skew between hosts): come back when it is due.
    return done('rescheduled', [await reschedule(tx, recovery, recovery.next_run_at)]);
  }

  // A claim's age on Postgres's clock, the clock it was written with.
  const [existing] = await rows<MessageRow>(
    tx,
    sql`select id, status, template, attempts,
               greatest(0, ${deps.settings.claimStaleAfterMs}
                           - extract(epoch from clock_timestamp() - lease_started_at) * 1000)::float8 as stale_in_ms
        from messages
        where recovery_id = ${recovery.id} and step = ${recovery.step_index} for update`,
  );
  if (existing && existing.status !== 'scheduled') {
    if (existing.status !== 'sending') {
      // Already decided (a crash after recording it, before advancing): just move on.
      return done('rescheduled', [await advance(tx, recovery, cadence, now)], existing.id);
    }
    if (existing.stale_in_ms !== null && existing.stale_in_ms > 0) {
      return done('rescheduled', [await reschedule(tx, recovery, new Date(now.getTime() + existing.stale_in_ms))]);
    }
    // The worker that claimed it died between recording and recording the answer.
    // The provider may have accepted it: never send it again.
    await setMessageStatus(tx, existing.id, 'unknown', 'outcome_unknown_worker_lost', now);
    deps.logger.warn(
      { messageId: existing.id, recoveryId: recovery.id },
      'message outcome unknown after a lost worker',
    );
    return done('unknown', [await advance(tx, recovery, cadence, now)], existing.id);
  }

  const [customer] = await rows<CustomerRow>(tx, sql`select * from customers where id = ${order.customer_id}`);
  // Suppressions match hashed addresses too: a forgotten customer's opt-out outlives their address.
  const suppressions = await findSuppressions(tx, { sms: customer?.phone, email: customer?.email });
  const contact = chooseContact(step, cadence, customer, suppressions);
  const messageBase = {
    recoveryId: recovery.id,
    orderId: order.id,
    customerId: order.customer_id,
    step: recovery.step_index,
    template: step.template,
  };
  if (!contact.ok && contact.reason === 'suppressed') {
    const id = await upsertMessage(tx, {
      ...messageBase,
      id: existing?.id,
      channel: contact.channel,
      status: 'suppressed',
      reason: contact.suppression,
      to: contact.to,
      now,
    });
    return done('suppressed', [await advance(tx, recovery, cadence, now)], id);
  }
  if (!contact.ok) {
    const id = await upsertMessage(tx, {
      ...messageBase,
      id: existing?.id,
      channel: step.channel,
      status: 'skipped',
      reason: contact.reason,
      to: null,
      now,
    });
    return done('skipped', [await advance(tx, recovery, cadence, now)], id);
  }
  const { channel, to } = contact;

  const timezone = customer?.timezone ?? deps.settings.defaultTimezone;
  if (cadence.maxMessagesPerDay !== undefined) {
    // Two recoveries of one customer hold different order locks, so without this both
    // could count today's sends before either records its claim, and both would go out
    // past the cap. An advisory lock (only dispatch takes it, always after the order lock)
    // serialises the count-then-claim per customer until this transaction commits.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`recoup:customer:${order.customer_id}`}))`);
  }
  const recentSends = await rows<{ at: Date }>(
    tx,
    sql`select coalesce(sent_at, claimed_at) as at from messages
        where customer_id = ${order.customer_id} and status in ('sending', 'sent', 'delivered', 'unknown')
          and coalesce(sent_at, claimed_at) > ${new Date(now.getTime() - 2 * 86_400_000)}`,
  );
  const decision = nextSendTime(
    {
      timezone,
      quietHours: cadence.quietHours,
      maxPerDay: cadence.maxMessagesPerDay,
      spreadMs: deps.settings.quietHoursSpreadMs,
    },
    { planned: now, recentSends: recentSends.map((r) => r.at), jitterKey: `${recovery.id}/${recovery.step_index}` },
  );
  if (decision.deferredBy) {
    const id = await upsertMessage(tx, {
      ...messageBase,
      id: existing?.id,
      channel,
      status: 'scheduled',
      reason: decision.deferredBy,
      to,
      plannedAt: decision.at,
      now,
    });
    return done('deferred', [await reschedule(tx, recovery, decision.at)], id);
  }

  // Never send customers into a broken checkout: a step whose link only leads to open circuits waits.
  const gateways = deps.circuits ? linkGateways(deps.circuits, step.offerMethods, order.currency) : [];
  const circuit = deps.circuits
    ? decideHold(deps.circuits.settings, {
        recoveryId: recovery.id,
        gateways,
        wasHeld: existing?.status === 'scheduled' && existing.template === restoredTemplate,
        circuits: await readCircuits(tx, gateways),
        now,
      })
    : undefined;
  if (circuit?.kind === 'hold') {
    const { reason, until } = circuit;
    const id = await recordHold(tx, { ...messageBase, id: existing?.id, channel, to, reason, until, now });
    return done('deferred', [await reschedule(tx, recovery, until)], id);
  }
  // A step that was held goes out saying the problem is fixed, in place of its own template.
  const template = circuit?.restored && deps.renderer.has(restoredTemplate) ? restoredTemplate : step.template;

  const locale = deps.renderer.resolveLocale(template, customer?.locale, deps.settings.defaultLocale);
  const token = newRetryToken();
  const claimId = randomHex(8);
  const messageId = existing?.id ?? newId('msg');
  const [claimed] = await rows<{ attempts: number }>(
    tx,
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, locale, status,
                              to_address, link_token, link_expires_at, attempts, claim_id, planned_at, claimed_at,
                              lease_started_at, created_at, updated_at)
        values (${messageId}, ${recovery.id}, ${order.id}, ${order.customer_id}, ${recovery.step_index}, ${channel},
                ${template}, ${locale}, 'sending', ${to}, ${token},
                ${new Date(now.getTime() + deps.settings.retryLinkTtlMs)}, 1, ${claimId}, ${recovery.next_run_at ?? now},
                ${now}, clock_timestamp(), ${now}, ${now})
        on conflict (recovery_id, step) do update set
          channel = excluded.channel, template = excluded.template, locale = excluded.locale,
          status = 'sending', reason = null,
          to_address = excluded.to_address, link_token = excluded.link_token, link_expires_at = excluded.link_expires_at,
          attempts = messages.attempts + 1, claim_id = excluded.claim_id, claimed_at = excluded.claimed_at,
          lease_started_at = excluded.lease_started_at, updated_at = excluded.updated_at
        returning attempts`,
  );

  return {
    kind: 'send',
    claim: {
      ...claimFor(deps, {
        messageId,
        claimId,
        channel,
        to,
        template,
        locale,
        token,
        claimedAt: started,
        recovery,
        cadence,
        step,
        order,
        customerName: customer?.name,
      }),
      attempts: claimed?.attempts ?? 1,
    },
  };
}

function claimFor(
  deps: DispatchDeps,
  c: Omit<Claim, 'context' | 'orderId' | 'attempts'> & {
    step: CadenceStep;
    order: OrderRow;
    customerName: string | null | undefined;
  },
): Omit<Claim, 'attempts'> {
  const { step, order, customerName, ...claim } = c;
  const context: MessageContext = {
    shop: { name: deps.settings.shopName },
    customer: { name: customerName ?? '' },
    order: {
      id: order.id,
      description: order.description ?? '',
      amount: Number(order.amount),
      currency: order.currency,
      couponCode: order.coupon_code ?? undefined,
    },
    failureCategory: claim.recovery.failure_category,
    offerMethods: step.offerMethods,
    retryUrl: retryUrl(deps.settings.publicUrl, claim.token),
    unsubscribeUrl: claim.channel === 'email' ? deps.unsubscribe?.forMessage(claim.messageId).url : undefined,
  };
  return { ...claim, orderId: order.id, context };
}

/** What the unlocked read of claimWithoutTransaction sees: the recovery, its order, customer and step message. */
interface StepSnapshot extends RecoveryRow {
  customer_id: string;
  order_status: OrderStatus;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
  customer_name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
  /** The customer's addresses as SQL normalised them; compared with normaliseAddress before use. */
  sms_normalised: string | null;
  email_normalised: string | null;
  suppressions: Array<{ channel: Channel; reason: string }> | null;
  message_id: string | null;
  message_status: string | null;
  message_template: string | null;
  message_updated_at: Date | null;
  /** Epoch ms of the customer's sends in the daily cap's look-back, ascending, comma-separated. */
  recent_sends: string | null;
  open_gateways: string[] | null;
}

/**
 * The send-now path in two statements for a whole batch and no transaction: one unlocked read of
 * everything the decisions need, then `recoup_claim_step` (migrations/0004_perf.sql) per job in one
 * statement, which takes each order's row lock, re-checks that the recovery, its step message, the
 * chosen address and the customer's sends in the daily cap's window are as read, and records the
 * message as `sending`. The claims run in order-id order, so two batches take their locks in the
 * same order.
 * Undefined for a job: not a plain send-now (ended, stale, deferred, held, suppressed, retried after
 * a lost worker, …) or something changed meanwhile; claimStep then decides under the lock, as before.
 */
async function claimWithoutTransaction(
  deps: DispatchDeps,
  jobs: StepJobData[],
  now: Date,
  started: ClaimStart,
): Promise<Array<ClaimOutcome | undefined>> {
  const capSince = new Date(now.getTime() - 2 * 86_400_000);
  const snaps = await rows<StepSnapshot & { i: number }>(
    deps.db,
    sql`select j.i, s.* from jsonb_to_recordset(${JSON.stringify(jobs.map((job, i) => ({ i, id: job.recoveryId })))}::jsonb)
          as j(i integer, id text)
        cross join lateral recoup_step_snapshot(j.id, ${capSince}::timestamptz) s`,
  );
  const planned = await Promise.all(
    jobs.map((job, i) => {
      const snap = snaps.find((row) => row.i === i);
      return snap ? planClaim(deps, job, snap, now, capSince, started) : undefined;
    }),
  );
  const plans = planned
    .flatMap((plan, i) => (plan ? [{ i, ...plan }] : []))
    .sort((a, b) => (a.claim.orderId < b.claim.orderId ? -1 : a.claim.orderId > b.claim.orderId ? 1 : a.i - b.i));
  const outcomes: Array<ClaimOutcome | undefined> = jobs.map(() => undefined);
  if (plans.length === 0) return outcomes;
  let claimed: Array<{ i: number; attempts: number | null }>;
  try {
    claimed = await rows<{ i: number; attempts: number | null }>(
      deps.db,
      sql`select j.i, recoup_claim_step(
            p_recovery_id => j.recovery_id, p_wake_seq => j.wake_seq, p_step => j.step,
            p_message_id => j.message_id, p_seen_message_updated_at => j.seen_message_updated_at,
            p_channel => j.channel, p_to => j.to_address, p_template => j.template, p_locale => j.locale,
            p_link_token => j.link_token, p_link_expires_at => j.link_expires_at, p_claim_id => j.claim_id,
            p_now => j.now, p_cap_since => j.cap_since, p_cap_seen => j.cap_seen) as attempts
          from jsonb_to_recordset(${JSON.stringify(plans.map((p) => ({ i: p.i, ...p.params })))}::jsonb)
            as j(i integer, recovery_id text, wake_seq integer, step integer, message_id text,
                 seen_message_updated_at timestamptz, channel text, to_address text, template text, locale text,
                 link_token text, link_expires_at timestamptz, claim_id text, now timestamptz,
                 cap_since timestamptz, cap_seen bigint[])`,
    );
  } catch (err) {
    // Nothing was claimed (one statement): e.g. a deadlock with another batch over a customer's
    // daily-cap lock. Each job is then decided alone under its own lock.
    deps.logger.warn({ err, jobs: jobs.length }, 'batch claim failed; claiming one by one');
    return outcomes;
  }
  for (const plan of plans) {
    const attempts = claimed.find((row) => row.i === plan.i)?.attempts;
    if (attempts) outcomes[plan.i] = { kind: 'send', claim: { ...plan.claim, attempts } };
  }
  return outcomes;
}

interface PlannedClaim {
  /** recoup_claim_step's arguments. */
  params: {
    recovery_id: string;
    wake_seq: number;
    step: number;
    message_id: string;
    seen_message_updated_at: Date | null;
    channel: Channel;
    to_address: string;
    template: string;
    locale: string;
    link_token: string;
    link_expires_at: Date;
    claim_id: string;
    now: Date;
    cap_since: Date | null;
    cap_seen: number[];
  };
  claim: Omit<Claim, 'attempts'>;
}

/** The fast path's decision for one job from its snapshot: what to claim, or undefined for the locked path. */
async function planClaim(
  deps: DispatchDeps,
  job: StepJobData,
  snap: StepSnapshot,
  now: Date,
  capSince: Date,
  started: ClaimStart,
): Promise<PlannedClaim | undefined> {
  if (!snap || snap.state !== 'active' || snap.wake_seq !== job.wakeSeq || snap.order_status !== 'pending') return;
  if (now >= snap.expires_at) return;
  if (snap.next_run_at && now.getTime() < snap.next_run_at.getTime() - 1_000) return;
  // A step message exists when the step was deferred, held or refused for now; held ones need the locked path.
  if (snap.message_id && (snap.message_status !== 'scheduled' || snap.message_template === restoredTemplate)) return;
  const cadence = (await deps.cadences.version(snap.cadence_name, snap.cadence_version))?.cadence;
  const step = cadence?.steps[snap.step_index];
  if (!cadence || !step) return;

  const customer = {
    email: snap.email,
    phone: snap.phone,
    email_bad_reason: snap.email_bad_reason,
    phone_bad_reason: snap.phone_bad_reason,
  };
  // SQL's trim and lower case are not JavaScript's for every character: only identical forms are trusted.
  const sameForms =
    (!snap.phone || normaliseAddress('sms', snap.phone) === snap.sms_normalised) &&
    (!snap.email || normaliseAddress('email', snap.email) === snap.email_normalised);
  const suppressions = sameForms
    ? new Map((snap.suppressions ?? []).reverse().map((s) => [s.channel, s.reason] as const))
    : await findSuppressions(deps.db, { sms: snap.phone, email: snap.email });
  const contact = chooseContact(step, cadence, customer, suppressions);
  if (!contact.ok) return;
  const { channel, to } = contact;

  const recentSends = snap.recent_sends ? snap.recent_sends.split(',').map(Number) : [];
  const decision = nextSendTime(
    {
      timezone: snap.timezone ?? deps.settings.defaultTimezone,
      quietHours: cadence.quietHours,
      maxPerDay: cadence.maxMessagesPerDay,
      spreadMs: deps.settings.quietHoursSpreadMs,
    },
    {
      planned: now,
      recentSends: recentSends.map((ms) => new Date(ms)),
      jitterKey: `${snap.id}/${snap.step_index}`,
    },
  );
  if (decision.deferredBy) return;
  if (deps.circuits) {
    const open = new Set(snap.open_gateways ?? []);
    if (linkGateways(deps.circuits, step.offerMethods, snap.currency).some((g) => open.has(g))) return;
  }

  const template = step.template;
  const locale = deps.renderer.resolveLocale(template, snap.locale, deps.settings.defaultLocale);
  const token = newRetryToken();
  const claimId = randomHex(8);
  const messageId = snap.message_id ?? newId('msg');
  const claim = claimFor(deps, {
    messageId,
    claimId,
    channel,
    to,
    template,
    locale,
    token,
    claimedAt: started,
    recovery: snap,
    cadence,
    step,
    order: {
      id: snap.order_id,
      customer_id: snap.customer_id,
      status: snap.order_status,
      amount: snap.amount,
      currency: snap.currency,
      description: snap.description,
      coupon_code: snap.coupon_code,
    },
    customerName: snap.customer_name,
  });
  return {
    params: {
      recovery_id: snap.id,
      wake_seq: snap.wake_seq,
      step: snap.step_index,
      message_id: messageId,
      seen_message_updated_at: snap.message_updated_at,
      channel,
      to_address: to,
      template,
      locale,
      link_token: token,
      link_expires_at: new Date(now.getTime() + deps.settings.retryLinkTtlMs),
      claim_id: claimId,
      now,
      cap_since: cadence.maxMessagesPerDay !== undefined ? capSince : null,
      cap_seen: recentSends,
    },
    claim,
  };
}

/**
 * Hands claimed messages to their providers through the guarded send (src/recoveries/guarded-send.ts)
 * and records each answer as it arrives, so a slow provider call holds up nothing but its own
 * message. Results are in the claims' order.
 */
async function sendClaimed(deps: DispatchDeps, claims: Claim[]): Promise<DispatchResult[]> {
  const results: Array<DispatchResult | Promise<DispatchResult>> = [];
  const sends: Array<{ k: number; claim: Claim; rendered: Rendered }> = [];
  for (const [k, claim] of claims.entries()) {
    const rendered = renderClaim(deps, claim);
    if (rendered) sends.push({ k, claim, rendered });
    else results[k] = recordFailure(deps, claim, new ProviderError('failed', 'template_error', 'template_error'));
  }
  const answers = await guardedSend(
    {
      db: deps.db,
      sms: deps.sms,
      email: deps.email,
      logger: deps.logger,
      lease: deps.settings.sendLease ?? defaultSendLease,
      afterProviderAnswer: deps.faultPoint && ((messageId) => deps.faultPoint!('after_provider_answer', messageId)),
    },
    sends.map(({ claim, rendered }) => ({
      claim: guardedClaim(claim),
      rendered,
      unsubscribe: claim.channel === 'email' ? deps.unsubscribe?.forMessage(claim.messageId) : undefined,
    })),
  );
  sends.forEach(({ k, claim }, n) => {
    results[k] = (answers[n] as Promise<GuardedOutcome>).then((outcome): DispatchResult | Promise<DispatchResult> => {
      if (outcome.kind === 'sent')
        return recorderFor(deps).submit({ claim, receipt: outcome.receipt, rendered: sends[n]!.rendered });
      if (outcome.kind === 'refused') return recordFailure(deps, claim, outcome.error);
      if (outcome.kind === 'stale') return { action: 'stale', wakeups: [], messageId: claim.messageId };
      return {
        action: outcome.status === 'suppressed' ? 'suppressed' : 'skipped',
        wakeups: [],
        messageId: claim.messageId,
      };
    });
  });
  return Promise.all(results);
}

function guardedClaim(claim: Claim): GuardedClaim {
  return {
    messageId: claim.messageId,
    claimId: claim.claimId,
    orderId: claim.orderId,
    recoveryId: claim.recovery.id,
    step: claim.recovery.step_index,
    channel: claim.channel,
    to: claim.to,
    claimedAt: claim.claimedAt,
  };
}

function renderClaim(deps: DispatchDeps, claim: Claim): Rendered | undefined {
  try {
    if (claim.channel === 'sms') {
      const sms = deps.renderer.renderSms(claim.template, claim.locale, claim.context);
      return { sms: sms.body, segments: sms.segments.segments };
    }
    return deps.renderer.renderEmail(claim.template, claim.locale, claim.context);
  } catch (err) {
    deps.logger.error({ err, messageId: claim.messageId }, 'template rendering failed');
    return undefined;
  }
}

interface SentAnswer {
  claim: Claim;
  receipt: SendReceipt;
  rendered: Rendered;
}

/** Accepted messages whose answers arrive together are recorded in one statement (a group commit). */
const recorders = new WeakMap<DispatchDeps, Batcher<SentAnswer, DispatchResult>>();

function recorderFor(deps: DispatchDeps): Batcher<SentAnswer, DispatchResult> {
  let recorder = recorders.get(deps);
  if (!recorder) {
    recorder = new Batcher((answers) => recordSent(deps, answers), { maxBatch: 32, maxRunning: 2 });
    recorders.set(deps, recorder);
  }
  return recorder;
}

/**
 * Every accepted message's result and its recovery's next step, in one statement. The message is
 * recorded `sent` while the claim is still this sender's, or when it was given up as `unknown`
 * meanwhile (the answer settles that); the recovery moves on only from where the claim found it,
 * so a payment, an ops action or a cadence migration in between is not undone.
 */
async function recordSent(deps: DispatchDeps, answers: SentAnswer[]): Promise<DispatchResult[]> {
  const at = deps.clock.now();
  const entries = answers.map(({ claim, receipt, rendered }, i) => {
    const segments = 'segments' in rendered ? rendered.segments : null;
    const cost = deps.messageCosts?.estimate(claim.channel, claim.to, segments ?? undefined);
    return { i, claim, receipt, next: nextStepOf(claim.recovery, claim.cadence, at), segments, cost };
  });
  const recorded = await rows<{ i: number; planned_at: Date | null; wake_seq: number | null }>(
    deps.db,
    sql`with j as (
          select * from jsonb_to_recordset(${JSON.stringify(
            entries.map(({ i, claim, receipt, next, segments, cost }) => ({
              i,
              message_id: claim.messageId,
              claim_id: claim.claimId,
              provider_id: receipt.providerId,
              sent_at: receipt.acceptedAt,
              segments,
              cost_micros: cost?.micros ?? null,
              cost_currency: cost?.currency ?? null,
              cost_source: cost ? 'estimate' : null,
              recovery_id: claim.recovery.id,
              step: claim.recovery.step_index,
              next_step: next.index,
              next_run_at: next.runAt,
            })),
          )}::jsonb) as j(i integer, message_id text, claim_id text, provider_id text, sent_at timestamptz,
                         segments integer, cost_micros bigint, cost_currency text, cost_source text,
                         recovery_id text, step integer, next_step integer, next_run_at timestamptz)
        ), sent as (
          update messages m set status = 'sent', provider_id = j.provider_id, sent_at = j.sent_at, reason = null,
                                claim_id = null, updated_at = ${at}, segments = j.segments,
                                cost_micros = j.cost_micros, cost_currency = j.cost_currency,
                                cost_source = j.cost_source
          from j where m.id = j.message_id
            and ((m.status = 'sending' and m.claim_id = j.claim_id) or m.status = 'unknown')
          returning j.i, m.planned_at
        ), moved as (
          update recoveries r set step_index = j.next_step, next_run_at = j.next_run_at, wake_seq = r.wake_seq + 1
          from j where r.id = j.recovery_id and r.state = 'active' and r.step_index = j.step
          returning j.i, r.wake_seq
        )
        select j.i, sent.planned_at, moved.wake_seq from j
        left join sent on sent.i = j.i left join moved on moved.i = j.i`,
  );
  return entries.map(({ i, claim, receipt, next }) => {
    const row = recorded.find((r) => r.i === i);
    return {
      action: 'sent',
      wakeups:
        row?.wake_seq != null ? [{ recoveryId: claim.recovery.id, wakeSeq: row.wake_seq, runAt: next.runAt }] : [],
      messageId: claim.messageId,
      channel: claim.channel,
      plannedAt: row?.planned_at ?? undefined,
      sentAt: receipt.acceptedAt,
    };
  });
}

/**
 * Records a provider's refusal (or a send that never started) while the claim is still this
 * sender's, in one short transaction: retried later, given up as unknown, or failed for good.
 * The recovery moves only from where the claim found it.
 */
async function recordFailure(deps: DispatchDeps, claim: Claim, providerError: ProviderError): Promise<DispatchResult> {
  const now = deps.clock.now();
  const log = { messageId: claim.messageId, channel: claim.channel, code: providerError.providerCode };
  const retry = providerError.outcome === 'retry' && claim.attempts < deps.settings.sendMaxAttempts;
  const status = retry ? 'scheduled' : providerError.outcome === 'unknown' ? 'unknown' : 'failed';
  const retryAt = retry
    ? new Date(now.getTime() + Math.min(deps.settings.sendRetryBaseMs * 2 ** (claim.attempts - 1), 3_600_000))
    : undefined;
  const next = retryAt
    ? { index: claim.recovery.step_index, runAt: retryAt }
    : nextStepOf(claim.recovery, claim.cadence, now);

  const moved = await deps.db.transaction(async (tx) => {
    const [mine] = await rows<{ id: string }>(
      tx,
      sql`select id from messages where id = ${claim.messageId} and claim_id = ${claim.claimId} and status = 'sending'
          for update`,
    );
    if (!mine) return undefined;
    const [recovery] = await rows<{ wake_seq: number }>(
      tx,
      sql`update recoveries set step_index = ${next.index}, next_run_at = ${next.runAt}, wake_seq = wake_seq + 1
          where id = ${claim.recovery.id} and state = 'active' and step_index = ${claim.recovery.step_index}
          returning wake_seq`,
    );
    // A retry needs its recovery: one that ended or moved on meanwhile (paid, say) has none.
    const [recorded, reason] =
      status === 'scheduled' && !recovery ? ['skipped', 'recovery_moved_on'] : [status, providerError.providerCode];
    await tx.execute(
      sql`update messages set status = ${recorded}, reason = ${reason}, claim_id = null,
                              planned_at = coalesce(${retryAt ?? null}::timestamptz, planned_at), updated_at = ${now}
          where id = ${claim.messageId}`,
    );
    if (recorded === 'failed' && providerError.badAddress) {
      // Later steps switch to the other channel (where the cadence allows) because this address is now bad.
      const column = claim.channel === 'sms' ? sql`phone_bad_reason` : sql`email_bad_reason`;
      const addressColumn = claim.channel === 'sms' ? sql`phone` : sql`email`;
      await tx.execute(
        sql`update customers set ${column} = ${providerError.badAddress}
            where id = (select customer_id from orders where id = ${claim.orderId}) and ${addressColumn} = ${claim.to}`,
      );
    }
    return {
      recorded,
      wakeups: recovery ? [{ recoveryId: claim.recovery.id, wakeSeq: recovery.wake_seq, runAt: next.runAt }] : [],
    };
  });
  if (!moved) return { action: 'stale', wakeups: [], messageId: claim.messageId };
  if (moved.recorded === 'skipped') return { action: 'skipped', wakeups: [], messageId: claim.messageId };
  if (retry) {
    deps.logger.warn({ ...log, attempts: claim.attempts, retryAt }, 'provider refused for now; retry scheduled');
    return { action: 'retry_scheduled', wakeups: moved.wakeups, messageId: claim.messageId };
  }
  if (status === 'unknown') {
    deps.logger.warn({ ...log, err: providerError }, 'provider outcome unknown; not re-sending');
    return { action: 'unknown', wakeups: moved.wakeups, messageId: claim.messageId };
  }
  deps.logger.warn({ ...log, badAddress: providerError.badAddress }, 'message failed permanently');
  return { action: 'failed', wakeups: moved.wakeups, messageId: claim.messageId };
}

type ContactChoice =
  | { ok: true; channel: Channel; to: string }
  | { ok: false; reason: 'no_contact' | 'bad_contact' }
  | { ok: false; reason: 'suppressed'; channel: Channel; to: string; suppression: string };

/**
 * The step's channel if its address is usable, else the other channel when the cadence allows
 * switching. An address is unusable when a provider said it is bad or when it is suppressed (the
 * customer opted out): a STOP reply moves later SMS steps to email exactly as Twilio's 21610 does.
 * With no usable address and the step's own address suppressed, the step is `suppressed`.
 */
export function chooseContact(
  step: CadenceStep,
  cadence: Cadence,
  customer: Pick<CustomerRow, 'email' | 'phone' | 'email_bad_reason' | 'phone_bad_reason'> | undefined,
  suppressed: ReadonlyMap<Channel, string> = new Map(),
): ContactChoice {
  const usable = (channel: Channel): string | undefined => {
    if (!customer || suppressed.has(channel)) return undefined;
    if (channel === 'sms') return customer.phone && !customer.phone_bad_reason ? customer.phone : undefined;
    return customer.email && !customer.email_bad_reason ? customer.email : undefined;
  };
  const preferred = usable(step.channel);
  if (preferred) return { ok: true, channel: step.channel, to: preferred };
  if (cadence.switchChannelOnFailure) {
    const other: Channel = step.channel === 'sms' ? 'email' : 'sms';
    const fallback = usable(other);
    if (fallback) return { ok: true, channel: other, to: fallback };
  }
  const address = step.channel === 'sms' ? customer?.phone : customer?.email;
  const suppression = suppressed.get(step.channel);
  if (address && suppression !== undefined) {
    return { ok: false, reason: 'suppressed', channel: step.channel, to: address, suppression };
  }
  return { ok: false, reason: address ? 'bad_contact' : 'no_contact' };
}

/** Moves the recovery to its next step (or to its expiry once the steps are done). */
async function advance(tx: Tx, recovery: RecoveryRow, cadence: Cadence, now: Date): Promise<Wakeup> {
  const next = nextStepOf(recovery, cadence, now);
  const [row] = await rows<{ wake_seq: number }>(
    tx,
    sql`update recoveries set step_index = ${next.index}, next_run_at = ${next.runAt}, wake_seq = wake_seq + 1
        where id = ${recovery.id} returning wake_seq`,
  );
  return { recoveryId: recovery.id, wakeSeq: row?.wake_seq ?? recovery.wake_seq + 1, runAt: next.runAt };
}

function nextStepOf(recovery: RecoveryRow, cadence: Cadence, now: Date): { index: number; runAt: Date } {
  const index = recovery.step_index + 1;
  const nextStep = cadence.steps[index];
  const planned = nextStep ? new Date(recovery.started_at.getTime() + nextStep.afterMs) : recovery.expires_at;
  return { index, runAt: planned < now ? now : planned };
}

/** Same step, later: a fresh wake-up id so the running job's id does not swallow it. */
async function reschedule(tx: Tx, recovery: RecoveryRow, runAt: Date): Promise<Wakeup> {
  const [row] = await rows<{ wake_seq: number }>(
    tx,
    sql`update recoveries set next_run_at = ${runAt}, wake_seq = wake_seq + 1
        where id = ${recovery.id} returning wake_seq`,
  );
  return { recoveryId: recovery.id, wakeSeq: row?.wake_seq ?? recovery.wake_seq + 1, runAt };
}

async function endRecovery(tx: Tx, recoveryId: string, state: string, reason: string, now: Date): Promise<void> {
  await tx.execute(
    sql`update recoveries set state = ${state}, ended_reason = ${reason}, ended_at = ${now}, next_run_at = null
        where id = ${recoveryId} and state = 'active'`,
  );
}

async function setMessageStatus(tx: Tx, messageId: string, status: string, reason: string | null, now: Date) {
  await tx.execute(
    sql`update messages set status = ${status}, reason = ${reason}, claim_id = null, updated_at = ${now}
        where id = ${messageId}`,
  );
}

async function upsertMessage(
  tx: Tx,
  m: {
    id: string | undefined;
    recoveryId: string;
    orderId: string;
    customerId: string;
    step: number;
    channel: Channel;
    template: string;
    status: string;
    reason: string | null;
    to: string | null;
    plannedAt?: Date;
    now: Date;
  },
): Promise<string> {
  const id = m.id ?? newId('msg');
  await tx.execute(
    sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, reason,
                              to_address, planned_at, created_at, updated_at)
        values (${id}, ${m.recoveryId}, ${m.orderId}, ${m.customerId}, ${m.step}, ${m.channel}, ${m.template},
                ${m.status}, ${m.reason}, ${m.to}, ${m.plannedAt ?? m.now}, ${m.now}, ${m.now})
        on conflict (recovery_id, step) do update set
          channel = excluded.channel, status = excluded.status, reason = excluded.reason,
          to_address = excluded.to_address, planned_at = excluded.planned_at, updated_at = excluded.updated_at`,
  );
  return id;
}
