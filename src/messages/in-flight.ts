import { performance } from 'node:perf_hooks';
import { sql, type SQL } from 'drizzle-orm';
import { addressForms } from '../domain/addresses.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import type { Channel } from '../domain/vocabulary.js';

/**
 * The other half of the send lease (src/recoveries/send-lease.ts): whatever must stop reminders
 * (a payment, a cancellation, STOP, an unsubscribe, a new address, ops stopping a recovery, a
 * customer forgotten) commits first, then waits here for the messages it concerns that are
 * already on their way, so that none of them is accepted by a provider after it is answered.
 */

/**
 * How long answers wait for a message in flight: a `sending` message until the send lease after its
 * claim; an `unknown` one (its provider call timed out or was cut) a grace longer, since the
 * provider may still accept a request it received late (PROVIDER_ACCEPT_GRACE).
 */
export interface InFlightWait {
  leaseMs: number;
  acceptGraceMs: number;
}

/** Under the default PROVIDER_TIMEOUT (10 s), JOB_LOCK_DURATION (30 s) and PROVIDER_ACCEPT_GRACE (5 s). */
export const defaultInFlightWait: InFlightWait = { leaseMs: 16_000, acceptGraceMs: 5_000 };

/** Whose in-flight messages an answer waits for. */
export type InFlightScope = { orderId: string } | { customerId: string } | { channel: Channel; address: string };

function scopeCondition(scope: InFlightScope): SQL {
  if ('orderId' in scope) return sql`order_id = ${scope.orderId}`;
  if ('customerId' in scope) return sql`customer_id = ${scope.customerId}`;
  const forms = addressForms(scope.channel, scope.address);
  return sql`channel = ${scope.channel} and to_address in (${sql.join(
    forms.map((form) => sql`${form}`),
    sql`, `,
  )})`;
}

const pollMs = 20;

/**
 * Returns once no message in `scope` is between its claim and its provider's answer (or, for an
 * unknown outcome, within the accept grace after that), or once those claims are too old to matter
 * (Postgres's clock on both sides). Call it after the change that must stop further sends has
 * committed. Bounded in real time as well.
 */
export async function settleInFlightSends(
  db: DbOrTx,
  scope: InFlightScope,
  wait: InFlightWait = defaultInFlightWait,
): Promise<void> {
  const longestMs = wait.leaseMs + wait.acceptGraceMs;
  const giveUpAt = performance.now() + longestMs + pollMs;
  const where = scopeCondition(scope);
  for (;;) {
    const [row] = await rows<{ in_flight: boolean }>(
      db,
      sql`select exists(select 1 from messages
                        where ${where} and status in ('sending', 'unknown')
                          and lease_started_at > clock_timestamp() - case status
                                when 'sending' then ${wait.leaseMs}::integer else ${longestMs}::integer end
                                * interval '1 millisecond')
             as in_flight`,
    );
    if (!row?.in_flight || performance.now() >= giveUpAt) return;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
