import { DateTime } from 'luxon';
import type { Channel, FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { isRecoupError, validationError, type Issue } from '../platform/errors.js';
import type { OrderItem } from '../db/schema.js';
import type { MessageContext } from '../messages/message-context.js';
import type { RenderedEmail, RenderedSms, TemplateRenderer } from '../messages/template-renderer.js';
import { capCounted, chooseContact } from './step-rules.js';
import { defaultStepMinGapMs, nextSendTime, stepDueAt } from './send-window.js';
import type { Cadence } from './cadence.js';

/**
 * The dry run of a cadence for one order: when each step would go out (quiet hours, the daily cap
 * and DST applied exactly as the dispatcher applies them), on which channel, and every message
 * fully rendered in each locale. Pure: no clock, no I/O; the HTTP route and the console share it.
 */

/** Locales a preview renders every step in, unless told otherwise. */
export const previewLocales: readonly string[] = ['en', 'zh-CN'];

/** Real retry tokens are 22 base64url characters: the placeholder has that length so SMS segments are exact. */
const previewToken = 'PREVIEW'.padEnd(22, '0');
/** `<message id>.<22-character MAC>`, as UnsubscribeLinks makes them (`msg_` + 24 hex). */
const previewUnsubscribeToken = `${'msg_PREVIEW'.padEnd(28, '0')}.${previewToken}`;

/** A retry link of real length that opens nothing: `${publicUrl}/r/PREVIEW000…`. */
export function previewRetryUrl(publicUrl: string): string {
  return `${publicUrl}/r/${previewToken}`;
}

/** An unsubscribe link of real length that unsubscribes nobody. */
export function previewUnsubscribeUrl(publicUrl: string): string {
  return `${publicUrl}/u/${previewUnsubscribeToken}`;
}

/** The order a preview runs for: the event's `order` shape, plus what recoup knows about its contacts. */
export interface PreviewOrder {
  id: string;
  /** Minor units. */
  amount: number;
  currency: string;
  description?: string | null | undefined;
  couponCode?: string | null | undefined;
  /** Cart lines, as an event's `order.items`. */
  items?: readonly OrderItem[] | null | undefined;
  customer: {
    name?: string | null | undefined;
    email?: string | null | undefined;
    phone?: string | null | undefined;
    locale?: string | null | undefined;
    /** IANA zone; missing: the deps' default timezone. */
    timezone?: string | null | undefined;
    /** Set when a provider said the address is permanently bad: the step switches channel as in dispatch. */
    emailBadReason?: string | null | undefined;
    phoneBadReason?: string | null | undefined;
  };
}

export interface PreviewInput {
  name: string;
  version: number;
  cadence: Cadence;
  order: PreviewOrder;
  /** When the recovery would start (the failure event). */
  startAt: Date;
  failureCategory: FailureCategory;
  /** The customer's messages already sent or in flight; they count toward the daily cap. Default none. */
  recentSends?: Date[];
  /**
   * Per channel, the messages sent or in flight to the customer's address on it under other customer
   * ids; they count toward the daily cap of a step on that channel. Default none.
   */
  addressSends?: ReadonlyMap<Channel, readonly Date[]>;
  /** Channels whose address is suppressed (opt-out), with the reason. Default none. */
  suppressed?: ReadonlyMap<Channel, string>;
}

export interface PreviewDeps {
  renderer: Pick<TemplateRenderer, 'renderSms' | 'renderEmail'>;
  /** PUBLIC_URL, for the placeholder links. */
  publicUrl: string;
  shopName: string;
  /** DEFAULT_TIMEZONE, for customers without a timezone. */
  defaultTimezone: string;
  /** Locales every step is rendered in. Default {@link previewLocales}. */
  locales?: readonly string[];
  /** STEP_MIN_GAP, as the dispatcher applies it. Default defaultStepMinGapMs. */
  stepMinGapMs?: number;
}

/** Why a step would not send anything: no usable address, opted out, or the recovery expires first. */
export type PreviewSkip = 'no_contact' | 'bad_contact' | 'suppressed' | 'expired';

export interface PreviewStep {
  step: number;
  /** After the contact rule: the other channel when the step's address is missing or bad and switching is on. */
  channel: Channel;
  template: string;
  offer_methods: PaymentMethod[];
  /** When the cadence makes the step due (start + after), UTC ISO. */
  due_at: string;
  /** When it would go out, UTC ISO. */
  planned_at: string;
  /** `planned_at` on the customer's wall clock, ISO with offset. */
  local_time: string;
  /**
   * Why it goes out later than `due_at`: quiet hours or the daily cap, its own or an earlier step's
   * (a step waits for the one before it, and then keeps its distance from it).
   */
  deferred_by: 'quiet_hours' | 'daily_cap' | null;
  skipped: PreviewSkip | null;
  /** Both channels in every locale: a later channel switch would send the other one. */
  rendered: Record<string, { sms: RenderedSms; email: RenderedEmail }>;
}

export interface Preview {
  cadence: string;
  version: number;
  order_id: string;
  failure_category: FailureCategory;
  timezone: string;
  start_at: string;
  steps: PreviewStep[];
  expires_at: string;
}

/**
 * Plans every step as the dispatcher would: a step becomes due at start + `after`, not before the
 * previous step was done, and not sooner after the previous send than the cadence spaces them (up
 * to STEP_MIN_GAP); `nextSendTime` moves it out of quiet hours and past a full day (earlier planned
 * messages count toward the cap), and a step that would go out at or after `expire_after` never
 * does. Jitter is off, so a preview is deterministic.
 *
 * Throws a `validation` RecoupError listing every rendering failure (strict templates), each at
 * `steps[i].template`.
 */
export function previewCadence(input: PreviewInput, deps: PreviewDeps): Preview {
  const { cadence, order } = input;
  const timezone = order.customer.timezone || deps.defaultTimezone;
  const expiresAt = input.startAt.getTime() + cadence.expireAfterMs;
  const sends = [...(input.recentSends ?? [])];
  const contactOf = {
    email: order.customer.email ?? null,
    phone: order.customer.phone ?? null,
    email_bad_reason: order.customer.emailBadReason ?? null,
    phone_bad_reason: order.customer.phoneBadReason ?? null,
  };
  const issues: Issue[] = [];
  const steps: PreviewStep[] = [];
  /** The previous step: when it was done, whether it went out, and why it was late. */
  let previous: { at: number; sent: boolean; deferredBy: PreviewStep['deferred_by'] } | undefined;
  let expired = false;

  cadence.steps.forEach((step, index) => {
    const cadenceDue = input.startAt.getTime() + step.afterMs;
    const sentBefore = previous?.sent ? new Date(previous.at) : undefined;
    const spaced = stepDueAt(cadence, index, input.startAt, sentBefore, deps.stepMinGapMs ?? defaultStepMinGapMs);
    const due = Math.max(spaced?.getTime() ?? cadenceDue, previous?.at ?? cadenceDue);
    const contact = chooseContact(step, cadence, contactOf, input.suppressed);
    let at = due;
    let deferredBy: PreviewStep['deferred_by'] = null;
    let skipped: PreviewSkip | null = null;
    expired ||= due >= expiresAt;
    if (expired) skipped = 'expired';
    else if (!contact.ok) skipped = contact.reason;
    else {
      const decision = nextSendTime(
        { timezone, quietHours: cadence.quietHours, maxPerDay: cadence.maxMessagesPerDay, spreadMs: 0 },
        {
          planned: new Date(due),
          recentSends: capCounted(
            { recentSends: sends, addressSends: input.addressSends ?? new Map() },
            contact.channel,
          ),
          jitterKey: `preview/${index}`,
        },
      );
      at = decision.at.getTime();
      // Its own window, else what moved an earlier step and, with it, this one.
      deferredBy = decision.deferredBy ?? (due > cadenceDue ? (previous?.deferredBy ?? null) : null);
      // The wake-up at the deferred time finds the recovery expired and ends it.
      if (at >= expiresAt) {
        expired = true;
        skipped = 'expired';
      } else sends.push(decision.at);
    }
    previous = { at, sent: skipped === null, deferredBy };

    const context: MessageContext = {
      shop: { name: deps.shopName },
      customer: { name: order.customer.name ?? '' },
      order: {
        id: order.id,
        description: order.description ?? '',
        amount: order.amount,
        currency: order.currency,
        couponCode: order.couponCode ?? undefined,
        items: order.items,
      },
      failureCategory: input.failureCategory,
      offerMethods: step.offerMethods,
      retryUrl: previewRetryUrl(deps.publicUrl),
    };
    const rendered: PreviewStep['rendered'] = {};
    for (const locale of deps.locales ?? previewLocales) {
      const result = renderBoth(deps, step.template, locale, context, `steps[${index}].template`, issues);
      if (result) rendered[locale] = result;
    }

    steps.push({
      step: index,
      channel: contact.ok ? contact.channel : step.channel,
      template: step.template,
      offer_methods: [...step.offerMethods],
      due_at: new Date(cadenceDue).toISOString(),
      planned_at: new Date(at).toISOString(),
      local_time: localTime(at, timezone),
      deferred_by: deferredBy,
      skipped,
      rendered,
    });
  });

  if (issues.length > 0) throw validationError(issues, `Cadence ${input.name} v${input.version} does not render`);
  return {
    cadence: input.name,
    version: input.version,
    order_id: order.id,
    failure_category: input.failureCategory,
    timezone,
    start_at: input.startAt.toISOString(),
    steps,
    expires_at: new Date(expiresAt).toISOString(),
  };
}

/** The instant on the wall clock of `timezone`, ISO 8601 with its offset (`2026-11-01T09:00:00-05:00`). */
export function localTime(at: number | Date, timezone: string): string {
  const ms = typeof at === 'number' ? at : at.getTime();
  return (
    DateTime.fromMillis(ms, { zone: timezone }).toISO({ suppressMilliseconds: true }) ?? new Date(ms).toISOString()
  );
}

/**
 * Renders a template's SMS and email parts. A rendering failure becomes an issue at `path` naming the
 * template part (`nudge/en/sms: "foo" not defined in [object Object]`), and undefined is returned.
 */
export function renderBoth(
  deps: Pick<PreviewDeps, 'renderer' | 'publicUrl'>,
  template: string,
  locale: string,
  context: MessageContext,
  path: string,
  issues: Issue[],
): { sms: RenderedSms; email: RenderedEmail } | undefined {
  try {
    const sms = deps.renderer.renderSms(template, locale, context);
    const email = deps.renderer.renderEmail(template, locale, {
      ...context,
      unsubscribeUrl: previewUnsubscribeUrl(deps.publicUrl),
    });
    return { sms, email };
  } catch (err) {
    if (!isRecoupError(err)) throw err;
    for (const issue of err.issues.length > 0 ? err.issues : [{ path: template, message: err.message }]) {
      issues.push({ path, message: `${issue.path}: ${issue.message}` });
    }
    return undefined;
  }
}
