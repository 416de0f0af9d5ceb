import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { Tx } from '../db/tx.js';
import { newId } from '../platform/ids.js';

export type Attribution = 'clicked' | 'influenced' | 'organic' | 'none';

export interface PaymentFact {
  orderId: string;
  /** `shop` for payments the shop reported, else the gateway's name. */
  gateway: string;
  /** The gateway's payment id, or the shop's event id. */
  externalId: string;
  attemptId?: string | null;
  method?: string | null;
  amount: number;
  currency: string;
  incentiveAmount?: number;
  paidAt: Date;
  /** The click that led to this payment (retry-link attempts know it). */
  clickId?: string | null;
}

export type RecordPaymentResult =
  | {
      kind: 'recorded';
      paymentId: string;
      attribution: Attribution;
      endedRecovery: { id: string; wakeSeq: number } | null;
    }
  | { kind: 'duplicate'; paymentId: string }
  | { kind: 'already_recorded'; paymentId: string };

/**
 * Records money received for an order, in the transaction that holds the order's row lock
 * (the caller takes it): the ledger row with its attribution, the order marked paid, its
 * recovery ended as `recovered` and its pending reminders skipped — all or nothing.
 * A second payment for an order already paid is recorded as `duplicate` (the caller refunds
 * it where it can). The same external payment is never recorded twice.
 */
export async function recordPayment(
  tx: Tx,
  fact: PaymentFact,
  options: { now: Date; clickWindowMs: number },
): Promise<RecordPaymentResult> {
  const [existing] = await rows<{ id: string }>(
    tx,
    sql`select id from payments where gateway = ${fact.gateway} and external_id = ${fact.externalId}`,
  );
  if (existing) return { kind: 'already_recorded', paymentId: existing.id };

  const [order] = await rows<{ status: string }>(tx, sql`select status from orders where id = ${fact.orderId}`);
  const paymentId = newId('pay');
  const alreadyPaid = order?.status === 'paid';

  const [recovery] = await rows<{
    id: string;
    state: string;
    wake_seq: number;
    cadence_name: string;
    cadence_version: number;
  }>(
    tx,
    sql`select id, state, wake_seq, cadence_name, cadence_version from recoveries where order_id = ${fact.orderId}`,
  );
  // A duplicate carries the attribution of the payment it duplicates: it is counted in the same
  // revenue as the original, and its (automatic) refund takes it out again on the refund's day.
  const credit = alreadyPaid
    ? await originalCredit(tx, fact.orderId)
    : await attribute(tx, fact, recovery?.id, options.clickWindowMs);

  await tx.execute(
    sql`insert into payments (id, order_id, attempt_id, gateway, external_id, method, amount, currency, incentive_amount,
                              paid_at, duplicate, recovery_id, cadence_name, cadence_version, step, channel, message_id,
                              click_id, attribution, created_at)
        values (${paymentId}, ${fact.orderId}, ${fact.attemptId ?? null}, ${fact.gateway}, ${fact.externalId},
                ${fact.method ?? null}, ${fact.amount}, ${fact.currency}, ${fact.incentiveAmount ?? 0}, ${fact.paidAt},
                ${alreadyPaid}, ${recovery?.id ?? null}, ${recovery?.cadence_name ?? null},
                ${recovery?.cadence_version ?? null}, ${credit?.step ?? null}, ${credit?.channel ?? null},
                ${credit?.messageId ?? null}, ${credit?.clickId ?? null}, ${credit?.attribution ?? 'none'}, ${options.now})`,
  );
  if (alreadyPaid) return { kind: 'duplicate', paymentId };

  // A payment for a cancelled order is recorded (ops decide about it) but does not revive the order.
  await tx.execute(
    sql`update orders set status = 'paid', paid_at = ${fact.paidAt}, abandon_check_at = null, updated_at = ${options.now},
                          last_method = coalesce(${fact.method ?? null}, last_method),
                          last_gateway = coalesce(${fact.gateway === 'shop' ? null : fact.gateway}, last_gateway)
        where id = ${fact.orderId} and status = 'pending'`,
  );
  await tx.execute(
    sql`update messages set status = 'skipped', reason = 'order_paid', updated_at = ${options.now}
        where order_id = ${fact.orderId} and status = 'scheduled'`,
  );
  let endedRecovery: { id: string; wakeSeq: number } | null = null;
  if (recovery?.state === 'active') {
    await tx.execute(
      sql`update recoveries set state = 'recovered', ended_at = ${options.now}, ended_reason = 'paid', next_run_at = null,
                                recovered_at = ${fact.paidAt}, recovered_attribution = ${credit?.attribution ?? 'none'},
                                recovered_step = ${credit?.step ?? null}, recovered_channel = ${credit?.channel ?? null},
                                recovered_value = ${fact.amount + (fact.incentiveAmount ?? 0)}
          where id = ${recovery.id}`,
    );
    endedRecovery = { id: recovery.id, wakeSeq: recovery.wake_seq };
  }
  return { kind: 'recorded', paymentId, attribution: credit?.attribution ?? 'none', endedRecovery };
}

/** The attribution of the order's first (non-duplicate) payment, for a duplicate of it. */
async function originalCredit(tx: Tx, orderId: string): Promise<Credit | undefined> {
  const [original] = await rows<{
    attribution: Attribution;
    message_id: string | null;
    click_id: string | null;
    step: number | null;
    channel: string | null;
  }>(
    tx,
    sql`select attribution, message_id, click_id, step, channel from payments
        where order_id = ${orderId} and not duplicate order by paid_at, created_at limit 1`,
  );
  if (!original) return undefined;
  return {
    attribution: original.attribution,
    messageId: original.message_id,
    clickId: original.click_id,
    step: original.step,
    channel: original.channel,
  };
}

interface Credit {
  attribution: Attribution;
  messageId: string | null;
  clickId: string | null;
  step: number | null;
  channel: string | null;
}

/**
 * clicked: paid through a retry link, or within the click window after a click;
 * influenced: paid after at least one reminder was sent, with no click;
 * organic: paid before any reminder went out; none: the order was never in recovery.
 */
async function attribute(
  tx: Tx,
  fact: PaymentFact,
  recoveryId: string | undefined,
  clickWindowMs: number,
): Promise<Credit> {
  if (!recoveryId) return { attribution: 'none', messageId: null, clickId: null, step: null, channel: null };
  const [click] = fact.clickId
    ? await rows<{ id: string; message_id: string }>(
        tx,
        sql`select id, message_id from clicks where id = ${fact.clickId}`,
      )
    : await rows<{ id: string; message_id: string }>(
        tx,
        sql`select id, message_id from clicks
            where recovery_id = ${recoveryId} and at <= ${fact.paidAt}
              and at > ${new Date(fact.paidAt.getTime() - clickWindowMs)}
            order by at desc limit 1`,
      );
  if (click) {
    const [message] = await rows<{ step: number | null; channel: string }>(
      tx,
      sql`select step, channel from messages where id = ${click.message_id}`,
    );
    return {
      attribution: 'clicked',
      messageId: click.message_id,
      clickId: click.id,
      step: message?.step ?? null,
      channel: message?.channel ?? null,
    };
  }
  const [sent] = await rows<{ id: string; step: number | null; channel: string }>(
    tx,
    sql`select id, step, channel from messages
        where recovery_id = ${recoveryId} and status in ('sent', 'delivered') and sent_at <= ${fact.paidAt}
        order by sent_at desc limit 1`,
  );
  if (sent) {
    return { attribution: 'influenced', messageId: sent.id, clickId: null, step: sent.step, channel: sent.channel };
  }
  return { attribution: 'organic', messageId: null, clickId: null, step: null, channel: null };
}
