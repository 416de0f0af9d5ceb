import type { Channel } from '../domain/vocabulary.js';
import type { Cadence, CadenceStep } from './cadence.js';

/**
 * The rules of a step that depend on the customer rather than on time: which address it goes to,
 * and which earlier sends its daily cap counts. The dispatcher and the cadence preview both apply them.
 */

/** A customer's addresses, and why a provider refused one (null: usable). */
export interface ContactDetails {
  email: string | null;
  phone: string | null;
  email_bad_reason: string | null;
  phone_bad_reason: string | null;
}

export type ContactChoice =
  | { ok: true; channel: Channel; to: string }
  | { ok: false; reason: 'no_contact' | 'bad_contact' }
  | { ok: false; reason: 'suppressed'; channel: Channel; to: string; suppression: string };

/**
 * The step's channel if its address is usable, else the other channel when the cadence allows
 * switching. An address is unusable when a provider said it is bad or when it is suppressed (the
 * customer opted out): a STOP reply moves later SMS steps to email exactly as Twilio's 21610 does.
 * With no usable address and the step's own address suppressed, the step is `suppressed`.
 */
export function chooseContact(
  step: CadenceStep,
  cadence: Cadence,
  customer: ContactDetails | undefined,
  suppressed: ReadonlyMap<Channel, string> = new Map(),
): ContactChoice {
  const usable = (channel: Channel): string | undefined => {
    if (!customer || suppressed.has(channel)) return undefined;
    if (channel === 'sms') return customer.phone && !customer.phone_bad_reason ? customer.phone : undefined;
    return customer.email && !customer.email_bad_reason ? customer.email : undefined;
  };
  const preferred = usable(step.channel);
  if (preferred) return { ok: true, channel: step.channel, to: preferred };
  if (cadence.switchChannelOnFailure) {
    const other: Channel = step.channel === 'sms' ? 'email' : 'sms';
    const fallback = usable(other);
    if (fallback) return { ok: true, channel: other, to: fallback };
  }
  const address = step.channel === 'sms' ? customer?.phone : customer?.email;
  const suppression = suppressed.get(step.channel);
  if (address && suppression !== undefined) {
    return { ok: false, reason: 'suppressed', channel: step.channel, to: address, suppression };
  }
  return { ok: false, reason: address ? 'bad_contact' : 'no_contact' };
}

/**
 * The sends the daily cap counts for a message on `channel`: the customer's, and those to the same
 * address on that channel under any other customer id. The fast path's claim re-counts exactly these
 * under its locks (recoup_claim_step) and claims only if they are unchanged.
 */
export function capCounted(
  sends: { recentSends: readonly Date[]; addressSends: ReadonlyMap<Channel, readonly Date[]> },
  channel: Channel,
): Date[] {
  return [...sends.recentSends, ...(sends.addressSends.get(channel) ?? [])];
}
