import { systemClock, type Clock } from './clock.js';

/** Called at a named moment where a crash does the most harm; `subject` is the message or event at hand. */
export type FaultPoint = (point: string, subject: string) => Promise<void>;

/**
 * Crash injection for the crash tests and the fault harness (FAULT_INJECTION), never set
 * in production. Format: `after_claim=0.05,after_provider_answer=0.05[,after_claim_nth=3]`.
 * At a listed point the process kills itself with SIGKILL: with the given probability,
 * or exactly at the nth time it reaches the point. The points are the worst moments:
 * `after_claim` and `after_provider_answer` in the step worker (the message is recorded as
 * `sending` but the provider was, or was not yet, called), `after_webhook_claim` in the
 * payment webhook (the event is claimed but not applied).
 * `clock_offset_ms=N` is no crash point: it skews this process's clock (see `faultClock`).
 */
export function parseFaultInjection(spec: string | undefined): FaultPoint | undefined {
  if (!spec) return undefined;
  const rules = new Map<string, number>();
  for (const part of spec.split(',')) {
    const [key, value] = part.split('=').map((s) => s.trim());
    if (!key || value === undefined || Number.isNaN(Number(value))) {
      throw new Error(`FAULT_INJECTION: cannot read "${part}"`);
    }
    rules.set(key, Number(value));
  }
  const seen = new Map<string, number>();
  return async (point) => {
    const count = (seen.get(point) ?? 0) + 1;
    seen.set(point, count);
    const probability = rules.get(point) ?? 0;
    const nth = rules.get(`${point}_nth`);
    if (count === nth || (probability > 0 && Math.random() < probability)) {
      process.kill(process.pid, 'SIGKILL');
      // SIGKILL is delivered asynchronously; never continue past the fault point.
      await new Promise(() => undefined);
    }
  };
}

/**
 * The process's clock under FAULT_INJECTION: `clock_offset_ms=N` runs it N ms ahead (behind when
 * negative), as a host whose clock drifted. Only the injected Clock moves; Postgres's clock and
 * the monotonic clock the send lease is measured on do not.
 */
export function faultClock(spec: string | undefined): Clock {
  const match = /(?:^|,)\s*clock_offset_ms\s*=\s*(-?\d+)\s*(?:,|$)/.exec(spec ?? '');
  const offsetMs = match?.[1] === undefined ? 0 : Number(match[1]);
  if (offsetMs === 0) return systemClock;
  return { now: () => new Date(Date.now() + offsetMs) };
}
