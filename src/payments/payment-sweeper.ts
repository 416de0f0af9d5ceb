import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import { applyUnsettledEvents } from './gateway-webhook.js';
import { followPaymentStatus } from './attempt-status.js';
import type { RetryDeps } from './retry-session.js';

export interface PaymentSweeperOptions {
  /** An attempt open this long is looked up at its gateway (PAYMENT_CHECK_AFTER); then after twice its age each time. */
  checkOpenAttemptAfterMs: number;
  /** Most webhook events, and most attempts, handled per pass. Default 50. */
  batchSize?: number;
}

export interface SweepReport {
  /** Webhook events applied after their delivery died or failed, by outcome (`error`: failed again). */
  events: Record<string, number>;
  /** Open attempts looked up at their gateway, by the status it answered (`error`: no answer, `no_gateway`: not configured). */
  attempts: Record<string, number>;
}

/**
 * Follows up payments whose news never arrived, so that a paid order stops being reminded:
 * webhook events claimed by a delivery that died (or whose application failed) are applied
 * from the stored event, and payment attempts still open after PAYMENT_CHECK_AFTER are
 * looked up at their gateway and settled as their webhook would have. Runs where the
 * gateways are (the HTTP role); every pass claims its rows with conditional writes, so
 * several servers can run it at once.
 */
export class PaymentSweeper {
  readonly #deps: RetryDeps;
  readonly #checkAfterSeconds: number;
  readonly #batchSize: number;

  constructor(deps: RetryDeps, options: PaymentSweeperOptions) {
    this.#deps = deps;
    this.#checkAfterSeconds = options.checkOpenAttemptAfterMs / 1000;
    this.#batchSize = options.batchSize ?? 50;
  }

  async runOnce(): Promise<SweepReport> {
    const report: SweepReport = { events: {}, attempts: {} };
    for (const { outcome } of await applyUnsettledEvents(this.#deps, this.#batchSize)) {
      report.events[outcome] = (report.events[outcome] ?? 0) + 1;
    }
    await this.#checkOpenAttempts(report.attempts);
    if (Object.keys(report.events).length > 0 || Object.keys(report.attempts).length > 0) {
      this.#deps.logger.info(report, 'payment sweep');
    }
    return report;
  }

  async #checkOpenAttempts(counts: Record<string, number>): Promise<void> {
    const after = this.#checkAfterSeconds;
    // Marking the check first spaces the checks out (doubling: at ages 1, 2, 4, 8… × PAYMENT_CHECK_AFTER)
    // and keeps other servers off these attempts for this round.
    const due = await rows<{ id: string; order_id: string; gateway: string; gateway_payment_id: string }>(
      this.#deps.db,
      sql`with due as (
            select id from payment_attempts
            where status = 'open' and gateway is not null and gateway_payment_id is not null
              and created_at < now() - make_interval(secs => ${after})
              and (checked_at is null or checked_at < now() - greatest(make_interval(secs => ${after}), checked_at - created_at))
            order by coalesce(checked_at, created_at) limit ${this.#batchSize}
            for update skip locked)
          update payment_attempts a set checked_at = now() from due where a.id = due.id
          returning a.id, a.order_id, a.gateway, a.gateway_payment_id`,
    );
    for (const attempt of due) {
      const gateway = this.#deps.gateways.byName(attempt.gateway);
      let kind = 'no_gateway';
      if (gateway) {
        try {
          const status = await gateway.retrievePayment(attempt.gateway_payment_id);
          await followPaymentStatus(
            this.#deps,
            { id: attempt.id, orderId: attempt.order_id, gateway: gateway.name },
            status,
          );
          kind = status.status;
        } catch (err) {
          this.#deps.logger.warn({ err, attemptId: attempt.id }, 'could not check an open payment attempt');
          kind = 'error';
        }
      }
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
  }
}
