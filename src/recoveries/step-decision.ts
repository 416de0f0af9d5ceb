import type { Cadence, CadenceStep } from '../cadences/cadence.js';
import {
  decideHold,
  linkGateways,
  restoredTemplate,
  type CircuitHold,
  type CircuitRow,
  type heldReason,
  type releasingReason,
} from '../circuits/circuit-hold.js';
import type { Channel, FailureCategory, OrderStatus } from '../domain/vocabulary.js';
import { nextSendTime, stepDueAt } from '../cadences/send-window.js';
import { capCounted, chooseContact } from '../cadences/step-rules.js';

/**
 * The one rule for "may this step be sent now, and if not, what happens": a pure function of
 * everything read about one wake-up. Both dispatch paths use it (src/recoveries/dispatch-step.ts):
 * the locked path on what it read under the order's row lock, the fast path on the unlocked
 * snapshot (it claims only on `send`). The statements behind it live in src/recoveries/step-store.ts.
 */

export interface RecoveryRow {
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

export interface OrderRow {
  id: string;
  customer_id: string;
  status: OrderStatus;
  amount: string;
  currency: string;
  description: string | null;
  coupon_code: string | null;
}

export interface CustomerRow {
  id: string;
  name: string | null;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
}

/** The message row of the recovery's current step, when one exists (deferred, held, retried, in flight). */
export interface StepMessageRow {
  id: string;
  status: string;
  template: string;
  /** How long until a `sending` claim counts as a lost worker's; null without a claim. */
  stale_in_ms: number | null;
}

/** Everything read about one wake-up. Parts after the recovery are absent when there was nothing to read. */
export interface StepSnapshot {
  /** The wake-up's sequence number (the job's). */
  wakeSeq: number;
  recovery: RecoveryRow | undefined;
  order: OrderRow | undefined;
  /** The recovery's cadence version; undefined when it is missing. */
  cadence: Cadence | undefined;
  message: StepMessageRow | undefined;
  customer:
    Pick<CustomerRow, 'email' | 'phone' | 'email_bad_reason' | 'phone_bad_reason' | 'timezone' | 'locale'> | undefined;
  /** The customer's suppressions by channel (reason), hashed addresses included. */
  suppressions: ReadonlyMap<Channel, string>;
  /** The customer's sends (sent or in flight) in the daily cap's look-back. */
  recentSends: readonly Date[];
  /**
   * Per channel, the sends in the same look-back to the customer's current address on that channel
   * (normalised) under other customer ids: a guest checkout gives one person a customer id per order.
   */
  addressSends: ReadonlyMap<Channel, readonly Date[]>;
  /** The circuits of the step's link gateways (all of them, or only the open ones). */
  circuits: readonly CircuitRow[];
}

/** What the decision needs besides the snapshot: settings, templates and circuit configuration. */
export interface StepContext {
  now: Date;
  defaultTimezone: string;
  defaultLocale: string;
  quietHoursSpreadMs: number;
  /** Gateway circuits; unset: no circuit checks. */
  circuits?: CircuitHold | undefined;
  /** The templates there are (the renderer's): whether the restored template exists, which locale a template has. */
  templates: {
    has(template: string): boolean;
    resolveLocale(template: string, requested: string | null | undefined, fallback: string): string;
  };
}

/** Where the recovery goes next: its step index (the same one to come back later) and when. */
export interface NextRun {
  index: number;
  runAt: Date;
}

export type StepDecision =
  | { kind: 'nothing' }
  | { kind: 'stale' }
  | {
      kind: 'end';
      state: 'recovered' | 'cancelled' | 'stopped' | 'exhausted';
      reason: 'order_paid' | 'order_cancelled' | 'cadence_missing' | 'expired';
    }
  | {
      kind: 'reschedule';
      /** steps_done: after the last step, until expiry; already_decided: the step's message was recorded already. */
      reason: 'steps_done' | 'fired_early' | 'claim_in_flight' | 'already_decided';
      next: NextRun;
      messageId?: string;
    }
  | { kind: 'unknown'; messageId: string; next: NextRun }
  | {
      kind: 'skip';
      reason: 'no_contact' | 'bad_contact';
      channel: Channel;
      template: string;
      messageId: string | undefined;
      next: NextRun;
    }
  | {
      kind: 'suppress';
      channel: Channel;
      to: string;
      suppression: string;
      template: string;
      messageId: string | undefined;
      next: NextRun;
    }
  | {
      kind: 'defer';
      reason: 'quiet_hours' | 'daily_cap';
      until: Date;
      channel: Channel;
      to: string;
      template: string;
      messageId: string | undefined;
    }
  | {
      kind: 'hold';
      reason: typeof heldReason | typeof releasingReason;
      until: Date;
      channel: Channel;
      to: string;
      gateways: string[];
      messageId: string | undefined;
    }
  | {
      kind: 'send';
      channel: Channel;
      to: string;
      template: string;
      locale: string;
      step: CadenceStep;
      cadence: Cadence;
      /** When the step was planned (the recovery's next run, else now). */
      plannedAt: Date;
      messageId: string | undefined;
    };

/** How early a wake-up may fire and still count as due (clock skew between hosts). */
const earlyToleranceMs = 1_000;

/**
 * The first checks, which need only the recovery and its order: whether there is anything more to
 * read (undefined) or the wake-up is decided already. decideStep starts with them.
 */
export function decideHead(
  snapshot: Pick<StepSnapshot, 'wakeSeq' | 'recovery' | 'order'>,
): Extract<StepDecision, { kind: 'nothing' | 'stale' | 'end' }> | undefined {
  const { recovery, order } = snapshot;
  if (!order || !recovery || recovery.state !== 'active') return { kind: 'nothing' };
  if (recovery.wake_seq !== snapshot.wakeSeq) return { kind: 'stale' };
  // The payment path ends recoveries itself; this only repairs a recovery it missed.
  if (order.status === 'paid') return { kind: 'end', state: 'recovered', reason: 'order_paid' };
  if (order.status !== 'pending') return { kind: 'end', state: 'cancelled', reason: 'order_cancelled' };
  return undefined;
}

export function decideStep(snapshot: StepSnapshot, context: StepContext): StepDecision {
  const head = decideHead(snapshot);
  if (head) return head;
  const { recovery, order, cadence, message, customer } = snapshot;
  if (!recovery || !order) return { kind: 'nothing' };
  const { now } = context;
  if (!cadence) return { kind: 'end', state: 'stopped', reason: 'cadence_missing' };
  if (now >= recovery.expires_at) return { kind: 'end', state: 'exhausted', reason: 'expired' };

  const step = cadence.steps[recovery.step_index];
  const later = (runAt: Date): NextRun => ({ index: recovery.step_index, runAt });
  if (!step) return { kind: 'reschedule', reason: 'steps_done', next: later(recovery.expires_at) };
  if (recovery.next_run_at && now.getTime() < recovery.next_run_at.getTime() - earlyToleranceMs) {
    return { kind: 'reschedule', reason: 'fired_early', next: later(recovery.next_run_at) };
  }

  const next = nextStepOf(recovery, cadence, now);
  if (message && message.status !== 'scheduled') {
    if (message.status !== 'sending') {
      // Already decided (a crash after recording it, before advancing): just move on.
      return { kind: 'reschedule', reason: 'already_decided', next, messageId: message.id };
    }
    if (message.stale_in_ms !== null && message.stale_in_ms > 0) {
      return {
        kind: 'reschedule',
        reason: 'claim_in_flight',
        next: later(new Date(now.getTime() + message.stale_in_ms)),
      };
    }
    // The worker that claimed it died between recording and recording the answer.
    // The provider may have accepted it: never send it again.
    return { kind: 'unknown', messageId: message.id, next };
  }

  const messageId = message?.id;
  const contact = chooseContact(step, cadence, customer, snapshot.suppressions);
  if (!contact.ok && contact.reason === 'suppressed') {
    const { channel, to, suppression } = contact;
    return { kind: 'suppress', channel, to, suppression, template: step.template, messageId, next };
  }
  if (!contact.ok) {
    return { kind: 'skip', reason: contact.reason, channel: step.channel, template: step.template, messageId, next };
  }
  const { channel, to } = contact;

  const window = nextSendTime(
    {
      timezone: customer?.timezone ?? context.defaultTimezone,
      quietHours: cadence.quietHours,
      maxPerDay: cadence.maxMessagesPerDay,
      spreadMs: context.quietHoursSpreadMs,
    },
    { planned: now, recentSends: capCounted(snapshot, channel), jitterKey: `${recovery.id}/${recovery.step_index}` },
  );
  if (window.deferredBy) {
    return {
      kind: 'defer',
      reason: window.deferredBy,
      until: window.at,
      channel,
      to,
      template: step.template,
      messageId,
    };
  }

  // Never send customers into a broken checkout: a step whose link only leads to open circuits waits.
  const circuit = context.circuits
    ? decideHold(context.circuits.settings, {
        recoveryId: recovery.id,
        gateways: linkGateways(context.circuits, step.offerMethods, order.currency),
        wasHeld: message?.status === 'scheduled' && message.template === restoredTemplate,
        circuits: snapshot.circuits,
        now,
      })
    : undefined;
  if (circuit?.kind === 'hold') {
    const { reason, until, gateways } = circuit;
    return { kind: 'hold', reason, until, channel, to, gateways, messageId };
  }
  // A step that was held goes out saying the problem is fixed, in place of its own template.
  const template = circuit?.restored && context.templates.has(restoredTemplate) ? restoredTemplate : step.template;
  return {
    kind: 'send',
    channel,
    to,
    template,
    locale: context.templates.resolveLocale(template, customer?.locale, context.defaultLocale),
    step,
    cadence,
    plannedAt: recovery.next_run_at ?? now,
    messageId,
  };
}

/**
 * The recovery's next step (or its expiry once the steps are done), never in the past. `afterSend`:
 * the current step went out (or may have) just now, so the next one keeps its distance from it
 * (STEP_MIN_GAP, see stepDueAt in src/cadences/send-window.ts).
 */
export function nextStepOf(
  recovery: Pick<RecoveryRow, 'step_index' | 'started_at' | 'expires_at'>,
  cadence: Cadence,
  now: Date,
  afterSend?: { minGapMs: number },
): NextRun {
  const index = recovery.step_index + 1;
  const planned =
    stepDueAt(cadence, index, recovery.started_at, afterSend ? now : undefined, afterSend?.minGapMs ?? 0) ??
    recovery.expires_at;
  return { index, runAt: planned < now ? now : planned };
}
