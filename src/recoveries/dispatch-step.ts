import type { Cadence } from '../cadences/cadence.js';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { CircuitHold } from '../circuits/circuit-hold.js';
import type { EmailSender } from '../channels/email-sender.js';
import type { UnsubscribeLinks } from '../compliance/unsubscribe-links.js';
import { ProviderError } from '../channels/provider-error.js';
import type { SendReceipt, SmsSender } from '../channels/sms-sender.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import type { Tx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';
import { newId } from '../platform/ids.js';
import { randomHex } from '../platform/random.js';
import type { Logger } from '../platform/logger.js';
import type { MessageContext } from '../messages/message-context.js';
import type { ReminderAfterPaymentObserver } from '../messages/after-payment.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import type { StepJobData, Wakeup } from '../queue/queues.js';
import { newRetryToken, retryUrl } from '../retry-links/retry-token.js';
import type { MessageCosts } from '../reports/message-cost.js';
import { Batcher } from '../platform/batcher.js';
import {
  claimThenRead,
  guardedSend,
  type GuardedClaim,
  type GuardedOutcome,
  type Rendered,
  type SendTimeRead,
} from './guarded-send.js';
import { claimStart, defaultSendLease, type ClaimStart, type SendLease } from './send-lease.js';
import { defaultStepMinGapMs } from '../cadences/send-window.js';
import { capCounted } from '../cadences/step-rules.js';
import type { Charge } from '../pricing/charge.js';
import { failureDetail } from './classify-failure.js';
import { grantsIncentive, lockedStepCharge, stepCharge } from './step-quote.js';
import { decideStep, nextStepOf, type RecoveryRow, type StepContext, type StepDecision } from './step-decision.js';
import {
  capLookBackMs,
  claimLocked,
  claimStepsStatement,
  endRecovery,
  moveRecovery,
  readLocked,
  readSnapshots,
  recordStepMessage,
  setMessageStatus,
  wasHeld,
  type ClaimParams,
  type StepRead,
} from './step-store.js';
import { recordFailure as storeFailure, recordSent as storeSent, type SentEntry } from './send-records.js';

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
  /** STEP_MIN_GAP: how long a step that went out late keeps the next one waiting at most. Default 2 h. */
  stepMinGapMs?: number;
  /** INCENTIVE_PERIOD: at most one incentive per customer within it. Default 90 days. */
  incentivePeriodMs?: number;
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
  /** Told of reminders accepted after their order's payment, once recorded (metrics, logs). */
  onReminderAfterPayment?: ReminderAfterPaymentObserver | undefined;
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

interface Claim {
  messageId: string;
  claimId: string;
  orderId: string;
  channel: Channel;
  to: string;
  template: string;
  locale: string;
  token: string;
  linkExpiresAt: Date;
  /** When the step was planned: the message's planned_at when the claim creates it. */
  plannedAt: Date;
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
    jobs.map((job, i) => fast.outcomes[i] ?? deps.db.transaction((tx) => claimStep(tx, deps, job, now, started))),
  );
  const results: Array<DispatchResult | undefined> = outcomes.map((o) => (o.kind === 'done' ? o.result : undefined));
  const claims = outcomes.flatMap((o, i) => (o.kind === 'send' ? [{ index: i, claim: o.claim }] : []));
  for (const { claim } of claims) await deps.faultPoint?.('after_claim', claim.messageId);
  if (claims.length > 0) {
    // The fault harnesses act between the claims' commit and the send-time read: with a fault point
    // the send reads again after it.
    const sent = await sendClaimed(
      deps,
      claims.map((c) => c.claim),
      deps.faultPoint ? undefined : fast.read,
    );
    claims.forEach((c, k) => (results[c.index] = sent[k]));
  }
  return results.map((r) => r ?? { action: 'nothing', wakeups: [] });
}

/** The decision's inputs besides the snapshot. */
function contextFor(deps: DispatchDeps, now: Date): StepContext {
  return {
    now,
    defaultTimezone: deps.settings.defaultTimezone,
    defaultLocale: deps.settings.defaultLocale,
    quietHoursSpreadMs: deps.settings.quietHoursSpreadMs,
    circuits: deps.circuits,
    templates: deps.renderer,
  };
}

/**
 * The locked path: reads everything under the order's row lock (src/recoveries/step-store.ts),
 * decides (src/recoveries/step-decision.ts), then carries the decision out in the same transaction.
 */
async function claimStep(
  tx: Tx,
  deps: DispatchDeps,
  job: StepJobData,
  now: Date,
  started: ClaimStart,
): Promise<ClaimOutcome> {
  const read = await readLocked(
    tx,
    { cadences: deps.cadences, circuits: deps.circuits, claimStaleAfterMs: deps.settings.claimStaleAfterMs, now },
    job,
  );
  const decision = decideStep(read.snapshot, contextFor(deps, now));
  const done = (action: DispatchAction, wakeups: Wakeup[] = [], messageId?: string): ClaimOutcome => ({
    kind: 'done',
    result: { action, wakeups, ...(messageId ? { messageId } : {}) },
  });
  if (decision.kind === 'nothing' || decision.kind === 'stale') return done(decision.kind);
  const { recovery, order } = read.snapshot;
  if (!recovery || !order) return done('nothing');

  switch (decision.kind) {
    case 'end':
      await endRecovery(tx, recovery.id, decision.state, decision.reason, now);
      if (decision.reason === 'cadence_missing') {
        deps.logger.error({ recoveryId: recovery.id, cadence: recovery.cadence_name }, 'cadence version missing');
      }
      return done('ended');
    case 'reschedule':
      return done('rescheduled', [await moveRecovery(tx, recovery, decision.next)], decision.messageId);
    case 'unknown':
      await setMessageStatus(tx, decision.messageId, 'unknown', 'outcome_unknown_worker_lost', now);
      deps.logger.warn(
        { messageId: decision.messageId, recoveryId: recovery.id },
        'message outcome unknown after a lost worker',
      );
      return done('unknown', [await moveRecovery(tx, recovery, decision.next)], decision.messageId);
    case 'suppress':
    case 'skip':
    case 'defer':
    case 'hold': {
      const messageId = await recordStepMessage(tx, recovery, order, decision, now);
      // A step deferred or held past the recovery's expiry wakes it at its expiry, where it ends:
      // an expired recovery is not left active until a quiet night or a capped day is over.
      const next =
        'next' in decision
          ? decision.next
          : {
              index: recovery.step_index,
              runAt: decision.until < recovery.expires_at ? decision.until : recovery.expires_at,
            };
      return done(withoutSend[decision.kind], [await moveRecovery(tx, recovery, next)], messageId);
    }
  }

  // A step with an incentive grants it here, in the claim's transaction, so that its reminder can quote it.
  const charge = await lockedStepCharge(tx, read, decision, deps.settings.incentivePeriodMs, now);
  const claim = newClaim(deps, read, decision, now, started, charge);
  const attempts = await claimLocked(tx, {
    ...claim,
    recoveryId: recovery.id,
    step: recovery.step_index,
    customerId: order.customer_id,
    now,
  });
  return { kind: 'send', claim: { ...claim, attempts } };
}

function stepMinGap(deps: DispatchDeps): number {
  return deps.settings.stepMinGapMs ?? defaultStepMinGapMs;
}

/** The result of a decision that records the step's message without sending it. */
const withoutSend = { suppress: 'suppressed', skip: 'skipped', defer: 'deferred', hold: 'deferred' } as const;

/** A claim for a `send` decision: a fresh retry token and claim id, and what the templates are rendered with. */
function newClaim(
  deps: DispatchDeps,
  read: StepRead,
  decision: Extract<StepDecision, { kind: 'send' }>,
  now: Date,
  started: ClaimStart,
  charge: Charge,
): Omit<Claim, 'attempts'> {
  const { recovery, order } = read.snapshot;
  if (!recovery || !order) throw new Error('a send decision without its recovery and order');
  const { channel, to, template, locale, step, cadence, plannedAt } = decision;
  const token = newRetryToken();
  const messageId = decision.messageId ?? newId('msg');
  const context: MessageContext = {
    shop: { name: deps.settings.shopName },
    customer: { name: read.customerName ?? '' },
    order: {
      id: order.id,
      description: order.description ?? '',
      // What the link charges (the link is issued now): the page shows exactly this amount.
      amount: charge.total,
      currency: order.currency,
      couponCode: order.coupon_code ?? undefined,
      items: read.items,
    },
    failureCategory: recovery.failure_category,
    failureDetail: failureDetail(recovery.failure_category, read.lastFailureCode),
    offerMethods: step.offerMethods,
    retryUrl: retryUrl(deps.settings.publicUrl, token),
    unsubscribeUrl: channel === 'email' ? deps.unsubscribe?.forMessage(messageId).url : undefined,
  };
  return {
    messageId,
    claimId: randomHex(8),
    orderId: order.id,
    channel,
    to,
    template,
    locale,
    token,
    linkExpiresAt: new Date(now.getTime() + deps.settings.retryLinkTtlMs),
    plannedAt,
    recovery,
    cadence,
    context,
    claimedAt: started,
  };
}

/**
 * The send-now path in two round trips for a whole batch and no transaction held open: one unlocked
 * read of everything the decisions need, the same decision as the locked path on it, then one claim
 * statement that re-checks under each order's row lock what the decision relied on (step-store.ts
 * claimStepsStatement), committed, and the send-time read after that commit (guarded-send.ts
 * claimThenRead). The claims run in order-id order, so two batches take their locks in the same order.
 * An undefined outcome for a job: the decision was not `send`, or something changed meanwhile;
 * claimStep then decides under the lock, as before.
 */
async function claimWithoutTransaction(
  deps: DispatchDeps,
  jobs: StepJobData[],
  now: Date,
  started: ClaimStart,
): Promise<{ outcomes: Array<ClaimOutcome | undefined>; read?: SendTimeRead }> {
  const capSince = new Date(now.getTime() - capLookBackMs);
  const reads = await readSnapshots(deps.db, deps.cadences, jobs, capSince);
  const plans = reads
    .flatMap((read, i) => {
      const plan = read && planClaim(deps, read, now, capSince, started);
      return plan ? [{ i, ...plan }] : [];
    })
    .sort((a, b) => (a.claim.orderId < b.claim.orderId ? -1 : a.claim.orderId > b.claim.orderId ? 1 : a.i - b.i));
  const outcomes: Array<ClaimOutcome | undefined> = jobs.map(() => undefined);
  if (plans.length === 0) return { outcomes };
  let claimed: Array<{ i: number; attempts: number | null }>;
  let read: SendTimeRead;
  try {
    ({ claimed, read } = await claimThenRead<{ i: number; attempts: number | null }>(
      deps.db,
      claimStepsStatement(plans.map((p) => ({ i: p.i, ...p.params }))),
      plans.map((p) => guardedClaim(p.claim)),
    ));
  } catch (err) {
    // Usually nothing was claimed (the claim is one statement): e.g. a deadlock with another batch
    // over a customer's daily-cap lock. Each job is then decided alone under its own lock, where a
    // claim that did commit (the read after it failed) reads as in flight: never sent twice.
    deps.logger.warn({ err, jobs: jobs.length }, 'batch claim failed; claiming one by one');
    return { outcomes };
  }
  for (const plan of plans) {
    const attempts = claimed.find((row) => row.i === plan.i)?.attempts;
    if (attempts) outcomes[plan.i] = { kind: 'send', claim: { ...plan.claim, attempts } };
  }
  return { outcomes, read };
}

/** The fast path's claim for one job from its snapshot, or undefined for the locked path. */
function planClaim(
  deps: DispatchDeps,
  read: StepRead,
  now: Date,
  capSince: Date,
  started: ClaimStart,
): { params: ClaimParams; claim: Omit<Claim, 'attempts'> } | undefined {
  // A held step's release depends on when its circuits closed, which the snapshot does not hold.
  if (wasHeld(read)) return undefined;
  const decision = decideStep(read.snapshot, contextFor(deps, now));
  const { recovery, order } = read.snapshot;
  if (decision.kind !== 'send' || !recovery || !order) return undefined;
  // Granting an incentive takes locks the single claim statement does not: the locked path does it.
  if (grantsIncentive(read, decision.step, recovery)) return undefined;

  const claim = newClaim(deps, read, decision, now, started, stepCharge(read, order.amount, now));
  const { messageId, channel, to, template, locale, token, claimId, linkExpiresAt } = claim;
  return {
    params: {
      recovery_id: recovery.id,
      wake_seq: recovery.wake_seq,
      step: recovery.step_index,
      message_id: messageId,
      seen_message_updated_at: read.messageUpdatedAt ?? null,
      channel,
      to_address: to,
      template,
      locale,
      link_token: token,
      link_expires_at: linkExpiresAt,
      claim_id: claimId,
      now,
      cap_since: decision.cadence.maxMessagesPerDay !== undefined ? capSince : null,
      cap_seen: capCounted(read.snapshot, channel).map((at) => at.getTime()),
    },
    claim,
  };
}

/**
 * Hands claimed messages to their providers through the guarded send (src/recoveries/guarded-send.ts)
 * and records each answer as it arrives, so a slow provider call holds up nothing but its own
 * message. Results are in the claims' order.
 */
async function sendClaimed(deps: DispatchDeps, claims: Claim[], read?: SendTimeRead): Promise<DispatchResult[]> {
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
    read,
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

function guardedClaim(claim: Omit<Claim, 'attempts'>): GuardedClaim {
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
    recorder = new Batcher((answers) => recordSent(deps, answers), { maxBatch: 32, maxRunning: 2, minRunning: 1 });
    recorders.set(deps, recorder);
  }
  return recorder;
}

async function recordSent(deps: DispatchDeps, answers: SentAnswer[]): Promise<DispatchResult[]> {
  const at = deps.clock.now();
  const entries = answers.map(({ claim, receipt, rendered }, i): SentEntry & { claim: Claim } => {
    const segments = 'segments' in rendered ? rendered.segments : null;
    return {
      i,
      claim,
      messageId: claim.messageId,
      claimId: claim.claimId,
      providerId: receipt.providerId,
      sentAt: receipt.acceptedAt,
      segments,
      cost: deps.messageCosts?.estimate(claim.channel, claim.to, segments ?? undefined),
      recoveryId: claim.recovery.id,
      step: claim.recovery.step_index,
      next: nextStepOf(claim.recovery, claim.cadence, at, { minGapMs: stepMinGap(deps) }),
    };
  });
  const { recorded, afterPayment } = await storeSent(
    deps.db,
    at,
    entries.map(({ claim: _claim, ...entry }) => entry),
  );
  if (afterPayment.length > 0) deps.onReminderAfterPayment?.(afterPayment);
  return entries.map(({ i, claim, sentAt, next }) => {
    const row = recorded.find((r) => r.i === i);
    return {
      action: 'sent',
      wakeups:
        row?.wake_seq != null ? [{ recoveryId: claim.recovery.id, wakeSeq: row.wake_seq, runAt: next.runAt }] : [],
      messageId: claim.messageId,
      channel: claim.channel,
      plannedAt: row?.planned_at ?? undefined,
      sentAt,
    };
  });
}

/**
 * Records a provider's refusal (or a send that never started) while the claim is still this
 * sender's: retried later, given up as unknown, or failed for good.
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
    : // An outcome that is unknown may have reached the customer: the next step keeps its distance.
      nextStepOf(claim.recovery, claim.cadence, now, status === 'unknown' ? { minGapMs: stepMinGap(deps) } : undefined);

  const moved = await storeFailure(deps.db, {
    messageId: claim.messageId,
    claimId: claim.claimId,
    orderId: claim.orderId,
    recoveryId: claim.recovery.id,
    step: claim.recovery.step_index,
    channel: claim.channel,
    to: claim.to,
    status,
    reason: providerError.providerCode,
    retryAt,
    next,
    badAddress: providerError.badAddress,
    now,
  });
  if (!moved) return { action: 'stale', wakeups: [], messageId: claim.messageId };
  if (moved.recorded === 'skipped') return { action: 'skipped', wakeups: [], messageId: claim.messageId };
  const wakeups =
    moved.wakeSeq !== undefined ? [{ recoveryId: claim.recovery.id, wakeSeq: moved.wakeSeq, runAt: next.runAt }] : [];
  if (retry) {
    deps.logger.warn({ ...log, attempts: claim.attempts, retryAt }, 'provider refused for now; retry scheduled');
    return { action: 'retry_scheduled', wakeups, messageId: claim.messageId };
  }
  if (status === 'unknown') {
    deps.logger.warn({ ...log, err: providerError }, 'provider outcome unknown; not re-sending');
    return { action: 'unknown', wakeups, messageId: claim.messageId };
  }
  deps.logger.warn({ ...log, badAddress: providerError.badAddress }, 'message failed permanently');
  return { action: 'failed', wakeups, messageId: claim.messageId };
}
