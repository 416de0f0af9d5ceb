import { sql } from 'drizzle-orm';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';
import { formatDuration } from '../platform/duration.js';
import type { FailureCategory } from '../domain/vocabulary.js';
import type { Logger } from '../platform/logger.js';

/**
 * Circuit breakers per payment gateway. A gateway whose payments keep failing for reasons that
 * are not the customer's (`gateway_outage`, `network`) gets an open circuit in `gateway_circuits`;
 * while it is open, dispatch holds reminders whose retry link would only lead there
 * (src/circuits/circuit-hold.ts), and releases them once it closes.
 *
 * Evaluation is safe to run in every process at once: each transition is one conditional write
 * that only succeeds against the state the evaluator read, so concurrent evaluators make one
 * transition between them, never two.
 */

/** Failure categories that say the gateway (or the way to it) is broken, not the customer's payment. */
export const circuitFailureCategories = ['gateway_outage', 'network'] as const satisfies readonly FailureCategory[];

export type CircuitStateName = 'open' | 'closed';

export interface CircuitSettings {
  /** Failures are counted over this sliding window (CIRCUIT_WINDOW). Default 5m. */
  windowMs: number;
  /** Counted failures in the window needed to open a circuit (CIRCUIT_MIN_FAILURES). Default 10. */
  minFailures: number;
  /** …and their least share of the window's attempts, 0–1 (CIRCUIT_FAILURE_RATIO). Default 0.5. */
  failureRatio: number;
  /**
   * An open circuit closes once it has been open this long and the failure share over the last
   * cool-down is below `failureRatio` (CIRCUIT_COOL_DOWN). Default 2m.
   */
  coolDownMs: number;
}

export interface HealthCheckResult {
  ok: boolean;
  /** Why it is not ok; becomes part of the circuit's reason. */
  detail?: string;
}

/** A probe of one gateway (a status endpoint, a test call). Throwing or timing out counts as not ok. */
export type GatewayHealthCheck = () => Promise<HealthCheckResult>;

export interface GatewayHealthDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  settings: CircuitSettings;
  /** Optional probes by gateway name. A failing probe opens that gateway's circuit on its own. */
  healthChecks?: Readonly<Record<string, GatewayHealthCheck>> | undefined;
  /** A probe that takes longer than this counts as failing. Default 5s. */
  healthCheckTimeoutMs?: number | undefined;
}

export interface CircuitTransition {
  gateway: string;
  to: CircuitStateName;
  reason: string;
  at: Date;
}

/** What the console and metrics show per gateway. */
export interface CircuitState {
  gateway: string;
  state: CircuitStateName;
  reason: string | null;
  openedAt: Date | null;
  closedAt: Date | null;
  updatedAt: Date | null;
}

interface CircuitRow {
  gateway: string;
  state: string;
  reason: string | null;
  opened_at: Date | null;
  closed_at: Date | null;
  updated_at: Date;
}

type CircuitView = Pick<CircuitRow, 'state' | 'reason' | 'opened_at' | 'closed_at'>;

/** A circuit's row (state null when the gateway has none yet) with its gateway's counts. */
interface SnapshotRow extends StatsRow {
  state: string | null;
  reason: string | null;
  opened_at: Date | null;
  closed_at: Date | null;
}

interface StatsRow {
  gateway: string;
  attempts: number;
  failures: number;
  cool_attempts: number;
  cool_failures: number;
}

/** Reason prefix of circuits a health check opened: only those close early when the check passes again. */
const healthCheckReason = 'health_check_failed';

/** Gateway names as stored in `gateway_circuits`: shops write `Stripe`, recoup writes `stripe`. */
export function normalizeGateway(name: string): string {
  return name.trim().toLowerCase();
}

/**
 * Periodic evaluation of every gateway that had attempts recently, has a circuit row, or has a
 * health check. Counts come from `payment_attempts` (the shop's reported attempts and recoup's
 * retry-link attempts alike), by `occurred_at`.
 */
export class GatewayHealth {
  readonly #deps: GatewayHealthDeps;

  constructor(deps: GatewayHealthDeps) {
    this.#deps = deps;
  }

  /** One evaluation pass; returns the transitions this process made. */
  async evaluate(): Promise<CircuitTransition[]> {
    const { db, settings } = this.#deps;
    const now = this.#deps.clock.now();
    const windowStart = new Date(now.getTime() - settings.windowMs);
    const coolStart = new Date(now.getTime() - settings.coolDownMs);
    const scanStart = new Date(Math.min(windowStart.getTime(), coolStart.getTime()));
    const failed = sql`a.status = 'failed' and a.failure_category in (${sql.join(
      circuitFailureCategories.map((c) => sql`${c}`),
      sql`, `,
    )})`;
    // Opening counts only what happened since the circuit last closed: the failures that opened it
    // before must not reopen it right after it closed. Cancelled attempts (superseded by another)
    // never reached an outcome and are not attempts here. greatest() ignores a null closed_at.
    const since = sql`greatest(${windowStart}::timestamptz, c.closed_at)`;

    // One statement reads the circuits and counts the attempts: both from one snapshot, so the
    // counts always belong to the circuit state they are judged against. (Two reads could pair a
    // just-closed circuit with counts taken before it closed, and reopen it at once.)
    const [snapshot, health] = await Promise.all([
      rows<SnapshotRow>(
        db,
        sql`with stats as (
              select lower(trim(a.gateway)) as gateway,
                     count(*) filter (where a.status <> 'cancelled' and a.occurred_at > ${since})::int as attempts,
                     count(*) filter (where ${failed} and a.occurred_at > ${since})::int as failures,
                     count(*) filter (where a.status <> 'cancelled' and a.occurred_at > ${coolStart})::int
                       as cool_attempts,
                     count(*) filter (where ${failed} and a.occurred_at > ${coolStart})::int as cool_failures
              from payment_attempts a
              left join gateway_circuits c on c.gateway = lower(trim(a.gateway))
              where a.gateway is not null and a.source in ('shop', 'retry_link')
                and a.occurred_at > ${scanStart} and a.occurred_at <= ${now}
              group by 1
            )
            select coalesce(c.gateway, s.gateway) as gateway, c.state, c.reason, c.opened_at, c.closed_at,
                   coalesce(s.attempts, 0) as attempts, coalesce(s.failures, 0) as failures,
                   coalesce(s.cool_attempts, 0) as cool_attempts, coalesce(s.cool_failures, 0) as cool_failures
            from gateway_circuits c full join stats s on s.gateway = c.gateway`,
      ),
      this.#runHealthChecks(),
    ]);

    const seen = new Map(snapshot.map((row) => [row.gateway, row]));
    const gateways = new Set([...seen.keys(), ...health.keys()]);
    const transitions: CircuitTransition[] = [];
    for (const gateway of [...gateways].sort()) {
      const row = seen.get(gateway);
      const circuit = row?.state ? { ...row, state: row.state } : undefined;
      const s = row ?? { gateway, attempts: 0, failures: 0, cool_attempts: 0, cool_failures: 0 };
      const check = health.get(gateway);
      const transition =
        circuit?.state === 'open'
          ? await this.#maybeClose(gateway, circuit, s, check, now)
          : await this.#maybeOpen(gateway, circuit, s, check, now);
      if (transition) transitions.push(transition);
    }
    return transitions;
  }

  async #maybeOpen(
    gateway: string,
    circuit: CircuitView | undefined,
    s: StatsRow,
    check: HealthCheckResult | undefined,
    now: Date,
  ): Promise<CircuitTransition | undefined> {
    const { settings } = this.#deps;
    let reason: string | undefined;
    if (check && !check.ok) {
      reason = check.detail ? `${healthCheckReason}: ${check.detail}` : healthCheckReason;
    } else if (
      s.failures >= settings.minFailures &&
      s.attempts > 0 &&
      s.failures / s.attempts >= settings.failureRatio
    ) {
      reason = `failure_rate: ${s.failures} of ${s.attempts} attempts failed (gateway_outage/network) within ${formatDuration(settings.windowMs)}`;
    }
    if (!reason) return undefined;

    // The decision holds only against the state read above: a closed_at that moved means another
    // evaluator made transitions meanwhile, and a row that is open already needs nothing.
    const opened = await rows<{ gateway: string }>(
      this.#deps.db,
      sql`insert into gateway_circuits as c (gateway, state, reason, opened_at, closed_at, updated_at)
          values (${gateway}, 'open', ${reason}, ${now}, null, ${now})
          on conflict (gateway) do update set
            state = 'open', reason = excluded.reason, opened_at = excluded.opened_at, updated_at = excluded.updated_at
          where c.state <> 'open' and c.closed_at is not distinct from ${circuit?.closed_at ?? null}::timestamptz
          returning gateway`,
    );
    if (opened.length === 0) return undefined;
    this.#deps.logger.warn({ gateway, reason }, 'gateway circuit opened: holding reminders that would lead there');
    return { gateway, to: 'open', reason, at: now };
  }

  async #maybeClose(
    gateway: string,
    circuit: CircuitView,
    s: StatsRow,
    check: HealthCheckResult | undefined,
    now: Date,
  ): Promise<CircuitTransition | undefined> {
    const { settings } = this.#deps;
    if (check && !check.ok) return undefined;
    // "Clean" is a share, not zero: a busy healthy gateway always has the odd timeout, and an
    // outage with little traffic still shows as every attempt failing.
    const clean = s.cool_failures === 0 || s.cool_failures / s.cool_attempts < settings.failureRatio;
    if (!clean) return undefined;
    const openFor = now.getTime() - (circuit.opened_at?.getTime() ?? 0);
    const recoveredCheck = check?.ok === true && (circuit.reason ?? '').startsWith(healthCheckReason);
    if (openFor < settings.coolDownMs && !recoveredCheck) return undefined;

    const reason =
      openFor < settings.coolDownMs
        ? 'health_check_ok'
        : `recovered: failure share below ${settings.failureRatio} for ${formatDuration(settings.coolDownMs)}`;
    const closed = await rows<{ gateway: string }>(
      this.#deps.db,
      sql`update gateway_circuits set state = 'closed', reason = ${reason}, closed_at = ${now}, updated_at = ${now}
          where gateway = ${gateway} and state = 'open'
            and opened_at is not distinct from ${circuit.opened_at}::timestamptz
          returning gateway`,
    );
    if (closed.length === 0) return undefined;
    this.#deps.logger.info({ gateway, reason }, 'gateway circuit closed: releasing held reminders');
    return { gateway, to: 'closed', reason, at: now };
  }

  async #runHealthChecks(): Promise<Map<string, HealthCheckResult>> {
    const checks = Object.entries(this.#deps.healthChecks ?? {});
    const timeoutMs = this.#deps.healthCheckTimeoutMs ?? 5_000;
    const results = await Promise.all(
      checks.map(async ([gateway, check]): Promise<[string, HealthCheckResult]> => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<HealthCheckResult>((resolve) => {
          timer = setTimeout(
            () => resolve({ ok: false, detail: `no answer within ${formatDuration(timeoutMs)}` }),
            timeoutMs,
          );
        });
        try {
          return [normalizeGateway(gateway), await Promise.race([check(), timeout])];
        } catch (err) {
          return [normalizeGateway(gateway), { ok: false, detail: err instanceof Error ? err.message : String(err) }];
        } finally {
          if (timer) clearTimeout(timer);
        }
      }),
    );
    return new Map(results);
  }
}

/**
 * Every gateway's circuit, for the console and metrics, sorted by gateway. Gateways in `known`
 * (e.g. the configured ones) that never had a circuit are listed as closed.
 */
export async function circuitStates(db: DbOrTx, known: readonly string[] = []): Promise<CircuitState[]> {
  const stored = await rows<CircuitRow>(
    db,
    sql`select gateway, state, reason, opened_at, closed_at, updated_at from gateway_circuits`,
  );
  const states = new Map<string, CircuitState>(
    stored.map((c) => [
      c.gateway,
      {
        gateway: c.gateway,
        state: c.state === 'open' ? 'open' : 'closed',
        reason: c.reason,
        openedAt: c.opened_at,
        closedAt: c.closed_at,
        updatedAt: c.updated_at,
      },
    ]),
  );
  for (const name of known) {
    const gateway = normalizeGateway(name);
    if (!states.has(gateway)) {
      states.set(gateway, { gateway, state: 'closed', reason: null, openedAt: null, closedAt: null, updatedAt: null });
    }
  }
  return [...states.values()].sort((a, b) => a.gateway.localeCompare(b.gateway));
}
