import type { FastifyBaseLogger } from 'fastify';
import { withoutRefusedPhones, type EventInput, type FieldWarning } from '../domain/event-schema.js';
import type { PhoneNumberType } from '../domain/phone-numbers.js';
import type { Db } from '../db/client.js';
import { settleInFlightSends, type InFlightWait } from '../messages/in-flight.js';
import type { Clock } from '../platform/clock.js';
import type { StepQueue } from '../queue/queues.js';
import type { ApplyResult, EventApplier } from './apply-event.js';

export interface IngestDeps {
  db: Db;
  queue: StepQueue;
  clock: Clock;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). */
  inFlightWait?: InFlightWait | undefined;
  /** The kinds of phone number kept (SMS_NUMBER_TYPES). Default: mobile and fixed-line ones. */
  smsNumberTypes?: readonly PhoneNumberType[] | undefined;
}

/** What applying the event did, and the fields it was applied without. */
export type IngestResult = ApplyResult & { warnings: FieldWarning[] };

/** Events after which no reminder may be accepted by a provider once they are answered. */
const endsOrder = new Set(['payment.succeeded', 'order.cancelled']);

/**
 * Applies one parsed shop event, whatever it came through (`POST /v1/events`, a platform's
 * webhook, `platform` naming its connector), without the phone numbers recoup does not text:
 * commits it, then waits for a reminder already on its way to that order or customer
 * (so that nothing is accepted for a paid or cancelled order, or at an old address, after the
 * answer), then queues the wake-ups it produced.
 */
export async function ingestEvent(
  deps: IngestDeps,
  applier: EventApplier,
  received: EventInput,
  log: Pick<FastifyBaseLogger, 'warn'>,
  platform: string | null = null,
): Promise<IngestResult> {
  const { event, warnings } = withoutRefusedPhones(received, deps.smsNumberTypes);
  const result = await applier.apply(event, deps.clock.now(), platform);
  if (event.order && endsOrder.has(event.type)) {
    await settleInFlightSends(deps.db, { orderId: event.order.id }, deps.inFlightWait);
  } else if (event.type === 'customer.updated') {
    const customerId = (event.customer ?? event.order?.customer)?.id;
    if (customerId) await settleInFlightSends(deps.db, { customerId }, deps.inFlightWait);
  }
  if (result.status === 'duplicate') return { ...result, warnings: [] };
  try {
    await deps.queue.add(result.wakeups, deps.clock.now());
  } catch (err) {
    // Accepted and committed: the reconciler queues it from Postgres once Redis is back.
    log.warn({ err, eventId: event.id }, 'could not queue wake-up; the reconciler will');
  }
  for (const ended of result.ended) {
    deps.queue.remove(ended.recoveryId, ended.wakeSeq).catch(() => undefined);
  }
  return { ...result, warnings };
}
