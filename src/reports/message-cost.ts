import { parsePhoneNumberFromString } from 'libphonenumber-js';
import type { Channel } from '../domain/vocabulary.js';

/** An amount in millionths of a currency's major unit (Twilio prices SMS in fractions of a cent). */
export interface UnitCost {
  micros: number;
  currency: string;
}

/** What sending costs when the provider does not say: from config, applied at send time. */
export interface MessageCostRates {
  /** Per SMS segment, for destinations without a country rate. Unset: unknown (no estimate). */
  smsPerSegment?: UnitCost | undefined;
  /** Per SMS segment by destination country (ISO 3166 alpha-2). */
  smsPerSegmentByCountry?: Record<string, UnitCost>;
  /** Per email. Unset: unknown. */
  email?: UnitCost | undefined;
}

/**
 * Parses `0.0079 USD` into micros. Exact for up to six decimals (no float arithmetic), so
 * configured rates add up to the cent in reports.
 */
export function parseUnitCost(text: string): UnitCost | undefined {
  const match = /^\s*(\d{1,9})(?:\.(\d{1,6}))?\s+([A-Za-z]{3})\s*$/.exec(text);
  if (!match) return undefined;
  const whole = Number(match[1]);
  const fraction = Number((match[2] ?? '').padEnd(6, '0'));
  return { micros: whole * 1_000_000 + fraction, currency: (match[3] ?? '').toUpperCase() };
}

/** Parses `CN=0.045 USD, US=0.0079 USD`; returns the offending entry on error. */
export function parseCountryCosts(text: string): Record<string, UnitCost> | { error: string } {
  const result: Record<string, UnitCost> = {};
  for (const entry of text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const [country, cost] = entry.split('=').map((part) => part.trim());
    const parsed = cost ? parseUnitCost(cost) : undefined;
    if (!country || !/^[A-Za-z]{2}$/.test(country) || !parsed) return { error: entry };
    result[country.toUpperCase()] = parsed;
  }
  return result;
}

export class MessageCosts {
  readonly #rates: MessageCostRates;

  constructor(rates: MessageCostRates) {
    this.#rates = rates;
  }

  /** The estimated cost of one message, or undefined when no rate applies. */
  estimate(channel: Channel, to: string, segments: number | undefined): UnitCost | undefined {
    if (channel === 'email') return this.#rates.email;
    const byCountry = this.#rates.smsPerSegmentByCountry;
    // Parsing the number is a quarter of a millisecond per message: only when a country rate may apply.
    const country = byCountry ? parsePhoneNumberFromString(to)?.country : undefined;
    const rate = (country && byCountry?.[country]) || this.#rates.smsPerSegment;
    if (!rate) return undefined;
    return { micros: rate.micros * Math.max(1, segments ?? 1), currency: rate.currency };
  }
}
