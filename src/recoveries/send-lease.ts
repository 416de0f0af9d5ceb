import { performance } from 'node:perf_hooks';

/**
 * The send lease: why no reminder is accepted by a provider after recoup answered a payment, a
 * STOP, an unsubscribe or a change of address.
 *
 * A send is a committed in-flight marker, not a lock: the claim commits the message as `sending`
 * (`lease_started_at`, from Postgres's clock), and only then does the sender read whether it may
 * still go out (order unpaid, recovery current, address still the customer's, not suppressed) and
 * call the provider. The other side does the mirror image: a payment (or STOP, …) commits first,
 * then waits until no message it concerns is `sending` with a claim younger than the lease
 * (`settleInFlightSends`, src/messages/in-flight.ts) before it answers. Whichever commits second sees the other: either the
 * sender reads the payment and skips, or the payment sees the marker and waits for the answer.
 *
 * The marker outlives a lost sender (killed, frozen, cut off from Postgres), so the wait is
 * bounded by the lease: a sender starts its provider call within `startWithinMs` of its claim
 * (measured on its own monotonic clock from before the claim was sent) or not at all; the call is
 * bounded by the provider timeout; the SMTP and Twilio adapters refuse to hand a message over
 * past `handOverDeadline`. So no byte of a message reaches a provider later than `leaseMs` − 1 s
 * after its claim. Stale claims are taken over only after the lease (src/app/deps.ts keeps
 * claimStaleAfterMs past leaseMs), so that takeover cannot end a wait early.
 *
 * What this assumes: the provider accepts a message within the provider timeout of the request
 * (a request it accepts later, after recoup gave up on it, is the one case the lease cannot
 * cover), and Postgres does not lose a committed claim (synchronous replication for failover).
 */
export interface SendLease {
  /** A provider call starts within this long after the claim, or not at all. */
  startWithinMs: number;
  /** Answers wait for an in-flight message at most this long after its claim. */
  leaseMs: number;
}

/** Kept back for the hand-over itself (event loop, socket write). */
const handOverMarginMs = 1_000;

export function sendLeaseFor(providerTimeoutMs: number, jobLockDurationMs: number): SendLease {
  const startWithinMs = Math.min(5_000, Math.floor(jobLockDurationMs / 2));
  return { startWithinMs, leaseMs: startWithinMs + providerTimeoutMs + handOverMarginMs };
}

/** The lease under the default PROVIDER_TIMEOUT (10 s) and JOB_LOCK_DURATION (30 s): 5 s to start, 16 s in all. */
export const defaultSendLease = sendLeaseFor(10_000, 30_000);

/**
 * When a sender took its claim, on its own monotonic clock: read before the claim statement is
 * sent, so every deadline derived from it is earlier than the same deadline counted from the
 * `lease_started_at` Postgres wrote. Wall clocks of hosts do not enter the lease.
 */
export type ClaimStart = number;

export function claimStart(): ClaimStart {
  return performance.now();
}

/** True while a provider call for a message claimed at `claimedAt` may still start. */
export function mayStartCall(claimedAt: ClaimStart, lease: SendLease, now: number = performance.now()): boolean {
  return now < claimedAt + lease.startWithinMs;
}

/**
 * The last moment any byte of a claimed message may be handed to a provider, as a Date on this
 * process's wall clock (adapters compare it with their own `Date.now()`).
 */
export function handOverDeadline(
  claimedAt: ClaimStart,
  lease: SendLease,
  now: number = performance.now(),
  wallNow: number = Date.now(),
): Date {
  return new Date(wallNow + claimedAt + lease.leaseMs - handOverMarginMs - now);
}
