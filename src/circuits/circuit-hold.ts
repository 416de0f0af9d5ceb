import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import type { PaymentMethod } from '../domain/vocabulary.js';
import { jitterMs } from '../cadences/send-window.js';
import { normalizeGateway } from './gateway-health.js';

/**
 * The dispatch side of the gateway circuits: whether a reminder may go out now, or is held
 * because every gateway its retry link offers is behind an open circuit.
 *
 * Rule: hold only when ALL the link's gateways are open. The retry page lets the customer pick
 * any offered method, so one healthy gateway means the link is not a broken checkout, and holding
 * it would delay a recovery that can succeed now. With the default configuration every method
 * goes to one gateway, where "all" and "any" are the same.
 *
 * A held message stays `scheduled` (reason `gateway_circuit_open`) and is looked at again every
 * `recheckMs`. Its row's template becomes `gateway-restored`, which is also how a later wake-up
 * knows it was held: once a circuit closes, it waits for its slot in the release spread
 * (reason `gateway_circuit_released`) and then goes out with that template. Every wait the
 * circuit causes moves the recovery's expiry by the same amount: an outage that was not the
 * customer's doing does not use up their reminders.
 */

/** Template of reminders that were held by an open circuit: "sorry, it works again". */
export const restoredTemplate = 'gateway-restored';
/** Message reason while every gateway of its link is open. */
export const heldReason = 'gateway_circuit_open';
/** Message reason after the circuit closed, until its slot in the release spread. */
export const releasingReason = 'gateway_circuit_released';

export interface CircuitHoldSettings {
  /** How soon a held reminder is looked at again (CIRCUIT_RECHECK). Default 1m. */
  recheckMs: number;
  /** Held reminders are released over this window after their circuit closes (CIRCUIT_RELEASE_SPREAD). Default 20m. */
  releaseSpreadMs: number;
}

/** What dispatch needs to check circuits. Unset in DispatchDeps: no circuit checks at all. */
export interface CircuitHold {
  /** The gateway a retry link sends a customer paying with `method` in `currency` to; undefined if none. */
  gatewayFor(method: PaymentMethod, currency: string): string | undefined;
  settings: CircuitHoldSettings;
}

export type HoldDecision =
  /** `restored`: the message was held before, so it goes out with the restored template. */
  | { kind: 'send'; restored: boolean }
  | {
      kind: 'hold';
      reason: typeof heldReason | typeof releasingReason;
      until: Date;
      /** The link's gateways (all open for `gateway_circuit_open`). */
      gateways: string[];
    };

/** A row of `gateway_circuits` as the hold decision needs it. */
export interface CircuitRow {
  gateway: string;
  state: string;
  closed_at: Date | null;
}

export interface HoldInput {
  recoveryId: string;
  /** The link's gateways (linkGateways). */
  gateways: readonly string[];
  /** Whether the step's message was held before: `scheduled` with the restored template. */
  wasHeld: boolean;
  /** The circuits of the link's gateways; a gateway without a row has never been open. */
  circuits: readonly CircuitRow[];
  now: Date;
}

/** The gateways a retry link offering `methods` in `currency` leads to (normalised, sorted, once each). */
export function linkGateways(hold: CircuitHold, methods: readonly PaymentMethod[], currency: string): string[] {
  return [
    ...new Set(
      methods
        .map((m) => hold.gatewayFor(m, currency))
        .filter((g): g is string => g !== undefined && g.trim() !== '')
        .map(normalizeGateway),
    ),
  ].sort();
}

/** The circuits of `gateways` (none for none). */
export async function readCircuits(db: DbOrTx, gateways: readonly string[]): Promise<CircuitRow[]> {
  if (gateways.length === 0) return [];
  return rows<CircuitRow>(
    db,
    sql`select gateway, state, closed_at from gateway_circuits
        where gateway in (${sql.join(
          gateways.map((g) => sql`${g}`),
          sql`, `,
        )})`,
  );
}

/** Decides whether a step may be sent now, from its link's circuits. Pure. */
export function decideHold(settings: CircuitHoldSettings, input: HoldInput): HoldDecision {
  const { gateways, wasHeld } = input;
  if (gateways.length === 0) return { kind: 'send', restored: wasHeld };

  const circuitOf = new Map(input.circuits.map((c) => [c.gateway, c]));
  const healthy = gateways.filter((g) => circuitOf.get(g)?.state !== 'open');
  if (healthy.length === 0) {
    return {
      kind: 'hold',
      reason: heldReason,
      until: new Date(input.now.getTime() + settings.recheckMs),
      gateways: [...gateways],
    };
  }
  if (!wasHeld) return { kind: 'send', restored: false };

  // The link became usable when the first of its gateways closed; the spread starts there, so
  // reminders woken at different rechecks still fall into one spread. A healthy gateway that never
  // had an open circuit (the mapping changed meanwhile) has nothing to spread after.
  const closedAt = healthy.map((g) => circuitOf.get(g)?.closed_at?.getTime());
  if (closedAt.some((t) => t === undefined)) return { kind: 'send', restored: true };
  const reopenedAt = Math.min(...closedAt.map((t) => t ?? 0));
  const releaseAt = reopenedAt + jitterMs(input.recoveryId, settings.releaseSpreadMs);
  if (releaseAt > input.now.getTime()) {
    return { kind: 'hold', reason: releasingReason, until: new Date(releaseAt), gateways: [...gateways] };
  }
  return { kind: 'send', restored: true };
}

/** Messages of active recoveries held by circuits (`held`) and waiting for their release slot (`releasing`). */
export async function heldReminderCounts(db: DbOrTx): Promise<{ held: number; releasing: number }> {
  const [row] = await rows<{ held: number; releasing: number }>(
    db,
    sql`select count(*) filter (where m.reason = ${heldReason})::int as held,
               count(*) filter (where m.reason = ${releasingReason})::int as releasing
        from messages m join recoveries r on r.id = m.recovery_id
        where m.status = 'scheduled' and m.reason in (${heldReason}, ${releasingReason}) and r.state = 'active'`,
  );
  return { held: row?.held ?? 0, releasing: row?.releasing ?? 0 };
}
