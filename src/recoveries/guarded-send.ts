import { sql, type SQL } from 'drizzle-orm';
import type { EmailSender } from '../channels/email-sender.js';
import { ProviderError, sendLeaseLapsed } from '../channels/provider-error.js';
import type { SendReceipt, SmsSender } from '../channels/sms-sender.js';
import { addressForms, normaliseAddress } from '../domain/addresses.js';
import type { Db } from '../db/client.js';
import { commitThen } from '../db/commit-then.js';
import { rows } from '../db/rows.js';
import type { Channel, OrderStatus } from '../domain/vocabulary.js';
import type { Logger } from '../platform/logger.js';
import { handOverDeadline, mayStartCall, type ClaimStart, type SendLease } from './send-lease.js';

/**
 * The one way a reminder reaches a provider, for cadence steps and fresh links alike:
 *
 * 1. the caller has committed the message as `sending` with its claim (the in-flight marker of
 *    src/recoveries/send-lease.ts);
 * 2. then, in one statement for every claim at hand, this reads what may have changed since the
 *    decision: the claim is still this sender's, the order unpaid and not cancelled, the recovery
 *    active (or, for a fresh link, not ended with the order), the address still the customer's current one, and no
 *    suppression for that address on that channel (a caller that claims with claimThenRead has this
 *    read sent in the claim's round trip, after the claim's commit);
 * 3. a claim that may still go out is handed to its provider if its start window is still open;
 *    one that may not is recorded as skipped or suppressed (only while the claim is still this
 *    sender's).
 *
 * Payments, cancellations, STOP, unsubscribes and changes of address commit first and then wait
 * for in-flight markers (settleInFlightSends, src/messages/in-flight.ts), so either this read sees them or they wait for the
 * provider's answer. What the provider answered is the caller's to record.
 */
export interface GuardedClaim {
  messageId: string;
  claimId: string;
  orderId: string;
  recoveryId: string;
  /** The cadence step claimed; null for a message outside the cadence. */
  step: number | null;
  channel: Channel;
  to: string;
  /** When the claim was taken, on this process's monotonic clock. */
  claimedAt: ClaimStart;
}

export type Rendered = { sms: string; segments: number } | { subject: string; html: string; text: string };

export interface GuardedSendDeps {
  db: Db;
  sms: SmsSender;
  email: EmailSender;
  logger: Logger;
  lease: SendLease;
  /** Test seam for the fault harnesses: called once the provider answered, before the answer is recorded. */
  afterProviderAnswer?: ((messageId: string) => Promise<void>) | undefined;
}

export interface GuardedSend {
  claim: GuardedClaim;
  rendered: Rendered;
  /** The one-click unsubscribe target of an email. */
  unsubscribe?: { url: string; mailto?: string } | undefined;
}

export type GuardedOutcome =
  /** The provider accepted it; the caller records it. */
  | { kind: 'sent'; receipt: SendReceipt }
  /** It may not go out any more; recorded here as `status` with `reason`. */
  | { kind: 'blocked'; status: 'skipped' | 'suppressed'; reason: string }
  /** The claim is no longer this sender's (taken over, or the message moved on): nothing to record. */
  | { kind: 'stale' }
  /** Nothing certain reached the provider, or it refused: the caller records what the error means. */
  | { kind: 'refused'; error: ProviderError };

/** What the send-time read finds for one claim. */
export interface SendTimeState {
  message_status: string | null;
  claim_id: string | null;
  order_status: OrderStatus | null;
  recovery_state: string | null;
  phone: string | null;
  email: string | null;
  phone_bad_reason: string | null;
  email_bad_reason: string | null;
  /** The reason of a suppression of the claim's address on its channel, in any stored form. */
  suppression: string | null;
}

export type SendTimeVerdict =
  { kind: 'go' } | { kind: 'stale' } | { kind: 'blocked'; status: 'skipped' | 'suppressed'; reason: string };

/** Whether a claimed message may still be handed to its provider, given what Postgres holds now. */
export function sendTimeVerdict(claim: GuardedClaim, state: SendTimeState | undefined): SendTimeVerdict {
  if (!state || state.message_status !== 'sending' || state.claim_id !== claim.claimId) return { kind: 'stale' };
  if (state.order_status !== 'pending') {
    return { kind: 'blocked', status: 'skipped', reason: `order_${state.order_status ?? 'missing'}` };
  }
  // A cadence step goes out while its recovery is active. A cadence migration in between may have
  // renumbered the step (src/cadences/migration-plan.ts counts a message in flight as received), so
  // the recovery's position is not compared: the claim, still this sender's, is what makes it current.
  if (claim.step !== null) {
    if (state.recovery_state !== 'active') {
      return { kind: 'blocked', status: 'skipped', reason: `recovery_${state.recovery_state ?? 'missing'}` };
    }
  } else if (state.recovery_state !== 'active' && state.recovery_state !== 'exhausted') {
    return { kind: 'blocked', status: 'skipped', reason: `recovery_${state.recovery_state ?? 'missing'}` };
  }
  const current = claim.channel === 'sms' ? state.phone : state.email;
  const bad = claim.channel === 'sms' ? state.phone_bad_reason : state.email_bad_reason;
  if (!current || normaliseAddress(claim.channel, current) !== normaliseAddress(claim.channel, claim.to)) {
    return { kind: 'blocked', status: 'skipped', reason: 'address_changed' };
  }
  if (bad) return { kind: 'blocked', status: 'skipped', reason: `address_${bad}` };
  if (state.suppression !== null) return { kind: 'blocked', status: 'suppressed', reason: state.suppression };
  return { kind: 'go' };
}

/**
 * What the send-time read found for the claims it read. Only readSendTime and claimThenRead make
 * one (the class itself is not exported), and both read after the claims committed.
 */
class SendTimeStates {
  readonly #read: ReadonlySet<string>;
  readonly #states: ReadonlyMap<string, SendTimeState>;

  /** `found`: the rows of sendTimeStatement for `claims`, by their index `i`. */
  constructor(claims: readonly GuardedClaim[], found: ReadonlyArray<SendTimeState & { i: number }>) {
    this.#read = new Set(claims.map((claim) => claim.claimId));
    const byIndex = new Map(found.map((row) => [row.i, row]));
    this.#states = new Map(
      claims.flatMap((claim, i) => {
        const row = byIndex.get(i);
        return row ? [[claim.claimId, row] as const] : [];
      }),
    );
  }

  /** Whether this claim was read; one read but not found is a stale one. */
  covers(claim: GuardedClaim): boolean {
    return this.#read.has(claim.claimId);
  }

  state(claim: GuardedClaim): SendTimeState | undefined {
    return this.#states.get(claim.claimId);
  }
}

export type SendTimeRead = SendTimeStates;

/** The send-time read of every claim in one statement; rows by their index `i` in `claims`. */
function sendTimeStatement(claims: readonly GuardedClaim[]): SQL {
  return sql`select j.i, m.status as message_status, m.claim_id, o.status as order_status, r.state as recovery_state,
               c.phone, c.email, c.phone_bad_reason, c.email_bad_reason,
               (select s.reason from suppressions s where s.channel = j.channel and s.address = any(j.forms)
                order by s.created_at limit 1) as suppression
        from jsonb_to_recordset(${JSON.stringify(
          claims.map((claim, i) => ({
            i,
            m: claim.messageId,
            o: claim.orderId,
            r: claim.recoveryId,
            channel: claim.channel,
            forms: addressForms(claim.channel, claim.to),
          })),
        )}::jsonb) as j(i integer, m text, o text, r text, channel text, forms text[])
        -- One index probe per claim (the limits keep the planner from hashing whole tables against a
        -- recordset it cannot estimate).
        left join lateral (select status, claim_id from messages where id = j.m limit 1) m on true
        left join lateral (select status, customer_id from orders where id = j.o limit 1) o on true
        left join lateral (select state from recoveries where id = j.r limit 1) r on true
        left join lateral (select phone, email, phone_bad_reason, email_bad_reason from customers
                           where id = o.customer_id limit 1) c on true`;
}

/** Reads the send-time state of claims already committed, in one statement. */
async function readSendTime(db: Db, claims: readonly GuardedClaim[]): Promise<SendTimeRead> {
  return new SendTimeStates(claims, await rows<SendTimeState & { i: number }>(db, sendTimeStatement(claims)));
}

/**
 * Runs `claim`, the statement that records these claims as `sending`, commits it, then reads their
 * send-time state after that commit: the same two steps as claiming, then reading, in one round
 * trip (src/db/commit-then.ts). The read covers the claims the statement may have taken; one it did
 * not take reads as stale. When it throws, the claims may have committed all the same.
 */
export async function claimThenRead<T>(
  db: Db,
  claim: SQL,
  claims: readonly GuardedClaim[],
): Promise<{ claimed: T[]; read: SendTimeRead }> {
  const [claimed, found] = await commitThen<T, SendTimeState & { i: number }>(db, claim, sendTimeStatement(claims));
  return { claimed, read: new SendTimeStates(claims, found) };
}

/**
 * Reads the send-time state of every claim in one statement (unless `read` already holds it, read
 * after the claims committed), records the ones that may not go out, and starts the provider calls
 * of the others. Returns one promise per send, in order, each settling with its provider's answer,
 * so that callers record every answer as it arrives and a slow provider call holds up nothing but
 * its own message.
 */
export async function guardedSend(
  deps: GuardedSendDeps,
  sends: GuardedSend[],
  read?: SendTimeRead,
): Promise<Array<Promise<GuardedOutcome>>> {
  if (sends.length === 0) return [];
  const unread = sends.map(({ claim }) => claim).filter((claim) => !read?.covers(claim));
  const fresh = unread.length > 0 ? await readSendTime(deps.db, unread) : undefined;
  const verdicts = sends.map(({ claim }) => sendTimeVerdict(claim, (read?.covers(claim) ? read : fresh)?.state(claim)));
  const blocked = sends.flatMap(({ claim }, i) => {
    const verdict = verdicts[i];
    return verdict?.kind === 'blocked' ? [{ claim, status: verdict.status, reason: verdict.reason }] : [];
  });
  if (blocked.length > 0) {
    await deps.db.execute(
      sql`with b as (
            select * from jsonb_to_recordset(${JSON.stringify(
              blocked.map(({ claim, status, reason }) => ({ m: claim.messageId, c: claim.claimId, status, reason })),
            )}::jsonb) as b(m text, c text, status text, reason text))
          update messages m set status = b.status, reason = b.reason, claim_id = null, updated_at = clock_timestamp()
          from b
          -- By id only (see recordSent in send-records.ts for why the status test sits in a CASE).
          where m.id = b.m and m.id = any(array(select b.m from b))
            and case m.status when 'sending' then m.claim_id = b.c else false end`,
    );
    for (const { claim, reason } of blocked) {
      deps.logger.info({ messageId: claim.messageId, reason }, 'reminder not sent: changed since it was claimed');
    }
  }
  return sends.map(async (send, i): Promise<GuardedOutcome> => {
    const verdict = verdicts[i];
    if (!verdict || verdict.kind === 'stale') return { kind: 'stale' };
    if (verdict.kind === 'blocked') return verdict;
    const outcome = await callProvider(deps, send);
    await deps.afterProviderAnswer?.(send.claim.messageId);
    return outcome;
  });
}

async function callProvider(
  deps: GuardedSendDeps,
  { claim, rendered, unsubscribe }: GuardedSend,
): Promise<GuardedOutcome> {
  // Too late to start: an answer may already have been given without waiting for this message.
  if (!mayStartCall(claim.claimedAt, deps.lease)) return { kind: 'refused', error: sendLeaseLapsed() };
  const notAfter = handOverDeadline(claim.claimedAt, deps.lease);
  try {
    const receipt =
      'sms' in rendered
        ? await deps.sms.send({ messageId: claim.messageId, to: claim.to, body: rendered.sms, notAfter })
        : await deps.email.send({
            messageId: claim.messageId,
            to: claim.to,
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            unsubscribe,
            notAfter,
          });
    return { kind: 'sent', receipt };
  } catch (err) {
    const error =
      err instanceof ProviderError
        ? err
        : new ProviderError('unknown', 'unexpected_error', err instanceof Error ? err.message : String(err));
    return { kind: 'refused', error };
  }
}
