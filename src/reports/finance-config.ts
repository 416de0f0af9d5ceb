import { z } from 'zod';
import { documented, optionalText, whole, type EnvOf } from '../platform/config-fields.js';
import { parseCountryCosts, parseUnitCost, type MessageCostRates, type UnitCost } from './message-cost.js';

const group = 'Finance';

/** The holdout share and the unit costs that price messages a provider does not. */
export const financeEnv = {
  HOLDOUT_PERCENT: documented(whole(z.coerce.number().min(0).max(50).default(0)), {
    group,
    description:
      "Share of eligible orders (0–50 %) kept as a control group that gets no messages; a cadence's `holdout_percent` overrides it. 0: no holdout.",
    default: '`0`',
  }),
  SMS_COST_PER_SEGMENT: optionalText({
    group,
    description: 'Estimated SMS cost per segment, when Twilio reports no price.',
    default: 'unknown',
    example: '0.0079 USD',
  }),
  SMS_COST_PER_SEGMENT_BY_COUNTRY: optionalText({
    group,
    description: 'SMS cost per segment by destination country, overriding SMS_COST_PER_SEGMENT.',
    example: 'CN=0.045 USD,US=0.0079 USD',
  }),
  EMAIL_COST: optionalText({
    group,
    description: 'Cost of one email.',
    default: 'unknown',
    example: '0.0004 USD',
  }),
};

type FinanceEnv = EnvOf<typeof financeEnv>;

export interface FinanceConfig {
  holdoutPercent: number;
  messageCosts: MessageCostRates;
}

export function checkFinanceEnv(env: FinanceEnv, ctx: z.RefinementCtx): void {
  for (const key of ['SMS_COST_PER_SEGMENT', 'EMAIL_COST'] as const) {
    const text = env[key];
    if (text !== undefined && !parseUnitCost(text)) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'must be an amount and a currency, e.g. "0.0079 USD"' });
    }
  }
  if (env.SMS_COST_PER_SEGMENT_BY_COUNTRY !== undefined) {
    const parsed = parseCountryCosts(env.SMS_COST_PER_SEGMENT_BY_COUNTRY);
    if ('error' in parsed) {
      ctx.addIssue({
        code: 'custom',
        path: ['SMS_COST_PER_SEGMENT_BY_COUNTRY'],
        message: `"${String(parsed.error)}" is not COUNTRY=amount currency, e.g. "CN=0.045 USD"`,
      });
    }
  }
}

export function financeConfig(env: FinanceEnv): FinanceConfig {
  return {
    holdoutPercent: env.HOLDOUT_PERCENT,
    messageCosts: {
      smsPerSegment: env.SMS_COST_PER_SEGMENT ? parseUnitCost(env.SMS_COST_PER_SEGMENT) : undefined,
      smsPerSegmentByCountry: countryCosts(env.SMS_COST_PER_SEGMENT_BY_COUNTRY),
      email: env.EMAIL_COST ? parseUnitCost(env.EMAIL_COST) : undefined,
    },
  };
}

function countryCosts(text: string | undefined): Record<string, UnitCost> {
  if (text === undefined) return {};
  const parsed = parseCountryCosts(text);
  return 'error' in parsed ? {} : parsed;
}
