import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';

/**
 * The send lease: why a payment's acknowledgement never precedes a reminder's acceptance.
 *
 * A sender holds a share lock on the order from its last check until the provider answered, so
 * the payment path's update waits for it. That lock lives in the sender's Postgres session: when
 * the session dies mid-send (connection terminated, network cut, database restart) or the worker is
 * killed with bytes already on the wire, the lock is gone while the message may still reach the
 * provider. The lease covers that gap with committed state instead of a session:
 *
 * - a sender starts its provider call within `startWithinMs` of the claim or not at all, and the call
 *   is bounded by the provider timeout, so no byte of a message reaches a provider later than
 *   `leaseMs` − 1 s after its claim (adapters check that deadline again as the message leaves: the
 *   SMTP adapter when DATA begins, since a pooled connection may keep a message waiting, the Twilio
 *   adapter as its request is handed to the HTTP client);
 * - the payment and cancellation paths, once committed, wait until no message of the order is
 *   `sending` with a claim younger than `leaseMs` (`settleInFlightSends`) before they answer.
 *
 * A sender that kept its session finishes under the lock long before; the wait only lasts when a
 * sender was lost mid-send, and then at most the lease. Stale claims are taken over only after
 * the lease (src/deps.ts keeps claimStaleAfterMs past leaseMs), so that takeover cannot end a
 * wait early.
 */
export interface SendLease {
  /** A provider call starts within this long after the claim, or not at all. */
  startWithinMs: number;
  /** Payments wait for a lost sender's message at most this long after its claim. */
  leaseMs: number;
}

/** Kept back for the hand-over itself (event loop, socket write) and clock offset between hosts. */
const handOverMarginMs = 1_000;

export function sendLeaseFor(providerTimeoutMs: number, jobLockDurationMs: number): SendLease {
  const startWithinMs = Math.min(5_000, Math.floor(jobLockDurationMs / 2));
  return { startWithinMs, leaseMs: startWithinMs + providerTimeoutMs + handOverMarginMs };
}

/** The lease under the default PROVIDER_TIMEOUT (10 s) and JOB_LOCK_DURATION (30 s): 5 s to start, 16 s in all. */
export const defaultSendLease = sendLeaseFor(10_000, 30_000);

/** The last moment a claimed message's provider call may start. */
export function callDeadline(claimedAt: Date, lease: SendLease): Date {
  return new Date(claimedAt.getTime() + lease.startWithinMs);
}

/** The last moment any byte of a claimed message may be handed to a provider. */
export function handOverDeadline(claimedAt: Date, lease: SendLease): Date {
  return new Date(claimedAt.getTime() + lease.leaseMs - handOverMarginMs);
}

const pollMs = 20;

/**
 * Returns once no message of the order is between its claim and its provider's answer, or once
 * those claims are older than the lease. Bounded in real time by the lease as well, so a clock
 * that stands still (tests) cannot hold a caller forever.
 */
export async function settleInFlightSends(
  db: Db,
  clock: Clock,
  orderId: string,
  leaseMs: number = defaultSendLease.leaseMs,
): Promise<void> {
  const giveUpAt = Date.now() + leaseMs + pollMs;
  for (;;) {
    const since = new Date(clock.now().getTime() - leaseMs);
    const [row] = await rows<{ in_flight: boolean }>(
      db,
      sql`select exists(select 1 from messages
                        where order_id = ${orderId} and status = 'sending' and claimed_at > ${since}) as in_flight`,
    );
    if (!row?.in_flight || Date.now() >= giveUpAt) return;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
