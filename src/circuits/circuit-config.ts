import { z } from 'zod';
import { documented, duration, whole, type EnvOf } from '../platform/config-fields.js';

const group = 'Gateway circuits';

/** Gateway circuit breakers: when a gateway counts as down, and how held reminders come back. */
export const circuitEnv = {
  CIRCUIT_WINDOW: duration(
    '5m',
    {
      group,
      description: 'Gateway failures of the `gateway_outage` and `network` kinds are counted over this sliding window.',
    },
    '1s',
  ),
  CIRCUIT_MIN_FAILURES: documented(whole(z.coerce.number().int().min(1).default(10)), {
    group,
    description: "Failures in the window needed to open a gateway's circuit (with CIRCUIT_FAILURE_RATIO).",
    default: '`10`',
  }),
  CIRCUIT_FAILURE_RATIO: documented(whole(z.coerce.number().min(0).max(1).default(0.5)), {
    group,
    description: "Least share (0–1) of the window's attempts that failed, needed to open a circuit.",
    default: '`0.5`',
  }),
  CIRCUIT_COOL_DOWN: duration('2m', {
    group,
    description: 'An open circuit closes after this long once the failure share stays below the ratio.',
  }),
  CIRCUIT_RELEASE_SPREAD: duration('20m', {
    group,
    description: 'Reminders held by an open circuit are released over this window once it closes.',
  }),
  CIRCUIT_RECHECK: duration('1m', { group, description: 'How often a held reminder checks its circuits again.' }, '1s'),
  CIRCUIT_EVALUATE_INTERVAL: duration(
    '10s',
    { group, description: "How often each worker process evaluates the gateways' circuits." },
    '1s',
  ),
};

/** The circuits' part of the configuration (src/circuits/). */
export interface CircuitConfig {
  windowMs: number;
  minFailures: number;
  failureRatio: number;
  coolDownMs: number;
  releaseSpreadMs: number;
  recheckMs: number;
  evaluateIntervalMs: number;
}

export function circuitConfig(env: EnvOf<typeof circuitEnv>): CircuitConfig {
  return {
    windowMs: env.CIRCUIT_WINDOW,
    minFailures: env.CIRCUIT_MIN_FAILURES,
    failureRatio: env.CIRCUIT_FAILURE_RATIO,
    coolDownMs: env.CIRCUIT_COOL_DOWN,
    releaseSpreadMs: env.CIRCUIT_RELEASE_SPREAD,
    recheckMs: env.CIRCUIT_RECHECK,
    evaluateIntervalMs: env.CIRCUIT_EVALUATE_INTERVAL,
  };
}
