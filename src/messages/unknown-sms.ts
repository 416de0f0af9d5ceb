import { sql } from 'drizzle-orm';
import { ProviderError } from '../channels/provider-error.js';
import type { SmsLookup, SmsLookupResult } from '../channels/sms-sender.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { Logger } from '../platform/logger.js';
import type { ReminderAfterPaymentObserver } from './after-payment.js';
import { applyDeliveryUpdate } from './delivery-status.js';

export interface UnknownSmsResolverDeps {
  db: Db;
  /** The lookup of the SMS transport; only transports that have one get a resolver. */
  lookup: (query: SmsLookup) => Promise<SmsLookupResult>;
  clock: Clock;
  logger: Logger;
  /** A message is first looked up this long after its claim, then each time its age has doubled (SMS_LOOKUP_AFTER). */
  afterMs: number;
  /** No lookups once the claim is this old (SMS_LOOKUP_UNTIL). */
  untilMs: number;
  /** Messages looked up per pass. Default 20. */
  batchSize?: number;
  /** Told of a message found accepted after its order's payment, once recorded (metrics, logs). */
  onReminderAfterPayment?: ReminderAfterPaymentObserver | undefined;
}

export interface UnknownSmsReport {
  /** Messages asked about. */
  looked: number;
  /** Found at the provider: recorded with its status, id, sent time and price. */
  found: number;
  /** The provider proved it never sent them: recorded `failed` (`not_sent`). */
  notSent: number;
  /** Lookups that failed (provider down, timeout): asked again on a later pass. */
  errors: number;
}

/** Lookups in flight at once, so that a pass does not crowd out sends at the provider's API. */
const parallelLookups = 4;

/**
 * Settles SMS whose sending outcome is `unknown` (a timeout or a 5xx after the request left, a worker
 * lost mid-send) by asking the provider: a message it holds is recorded as a delivery report would
 * record it (`sent` or later, with its provider id, sent time and price), one it proves it never sent
 * becomes `failed`, anything else stays `unknown` and is asked about again later. Nothing is ever
 * re-sent from here: an SMS has no idempotency key.
 *
 * Each pass takes the oldest-asked due messages (`updated_at` marks the last lookup), so several
 * processes running it share the work instead of repeating it.
 */
export class UnknownSmsResolver {
  readonly #deps: UnknownSmsResolverDeps;

  constructor(deps: UnknownSmsResolverDeps) {
    this.#deps = deps;
  }

  async runOnce(): Promise<UnknownSmsReport> {
    const { db, clock, afterMs, untilMs } = this.#deps;
    const now = clock.now();
    // Due: claimed between `untilMs` and `afterMs` ago, and last asked about (or marked unknown) at least
    // half its age ago, or `afterMs` ago if more: asked at about 1, 2, 4, 8… times `afterMs` of age.
    // Every reminder's body holds its retry link, whose token is unique to the message: it tells the
    // message from others sent to the same number.
    const due = await rows<{ id: string; to_address: string; link_token: string; claimed_at: Date }>(
      db,
      sql`update messages m set updated_at = ${now}
          from (select id from messages
                 where channel = 'sms' and status = 'unknown' and provider_id is null
                   and to_address is not null and link_token is not null
                   and claimed_at <= ${new Date(now.getTime() - afterMs)}
                   and claimed_at > ${new Date(now.getTime() - untilMs)}
                   and updated_at <= ${now}::timestamptz
                                     - greatest(${afterMs}::double precision * interval '1 millisecond', (${now}::timestamptz - claimed_at) / 2)
                 order by updated_at limit ${this.#deps.batchSize ?? 20}
                 for update skip locked) d
          where m.id = d.id
          returning m.id, m.to_address, m.link_token, m.claimed_at`,
    );
    const report: UnknownSmsReport = { looked: due.length, found: 0, notSent: 0, errors: 0 };
    for (let i = 0; i < due.length; i += parallelLookups) {
      await Promise.all(due.slice(i, i + parallelLookups).map((message) => this.#resolve(message, report)));
    }
    return report;
  }

  async #resolve(
    message: { id: string; to_address: string; link_token: string; claimed_at: Date },
    report: UnknownSmsReport,
  ): Promise<void> {
    const { db, clock, logger } = this.#deps;
    let result: SmsLookupResult;
    try {
      result = await this.#deps.lookup({
        messageId: message.id,
        to: message.to_address,
        claimedAt: message.claimed_at,
        bodyMarker: message.link_token,
      });
    } catch (err) {
      report.errors += 1;
      // The provider's code and words only: the error's cause holds the request, credentials included.
      const code = err instanceof ProviderError ? err.providerCode : 'unexpected_error';
      const reason = err instanceof Error ? err.message : String(err);
      logger.warn({ messageId: message.id, code, reason }, 'looking up an unknown SMS failed; asking again later');
      return;
    }
    if (result.kind === 'found') {
      report.found += 1;
      const { providerId, providerStatus, errorCode, badAddress, price, acceptedAt } = result;
      await applyDeliveryUpdate(
        db,
        { messageId: message.id, providerId, providerStatus, errorCode, badAddress, price, acceptedAt },
        clock.now(),
        this.#deps.onReminderAfterPayment,
      );
      logger.info({ messageId: message.id, providerStatus }, 'unknown SMS found at the provider');
    } else if (result.kind === 'not_sent') {
      report.notSent += 1;
      await db.execute(
        sql`update messages set status = 'failed', reason = 'not_sent', updated_at = ${clock.now()}
            where id = ${message.id} and status = 'unknown'`,
      );
      logger.info({ messageId: message.id }, 'unknown SMS was never sent, says the provider');
    }
  }
}
