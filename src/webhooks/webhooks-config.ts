import { z } from 'zod';
import { parseDuration } from '../platform/duration.js';
import { documented, duration, emptyToUndefined, whole, type EnvOf } from '../platform/config-fields.js';

const group = 'Webhooks to the shop';

const defaultSchedule = '5s,5m,30m,2h,5h,10h,10h,14h,14h,14h';

/** Signed webhooks recoup sends to the shop's endpoints (src/webhooks/). */
export const webhooksEnv = {
  WEBHOOKS_ALLOW_PRIVATE_NETWORKS: documented(
    z.preprocess(emptyToUndefined, z.enum(['true', 'false']).default('false')),
    {
      group,
      description:
        'Deliver to loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local and other non-public addresses. Off: such endpoints are refused, checked on the address each delivery connects to, so a DNS name cannot lead there either. Turn on only when the shop runs on the same private network.',
      default: '`false`',
    },
  ),
  WEBHOOK_TIMEOUT: duration(
    '10s',
    { group, description: 'How long one delivery attempt waits for the endpoint to answer.' },
    '100ms',
  ),
  WEBHOOK_RETRY_SCHEDULE: documented(
    z
      .string()
      .default(defaultSchedule)
      .transform((text, ctx) => {
        const delays = text.split(',').map((part) => parseDuration(part));
        if (delays.some((ms) => ms === undefined)) {
          ctx.addIssue({ code: 'custom', message: `expected durations separated by commas, like ${defaultSchedule}` });
          return z.NEVER;
        }
        return delays as number[];
      }),
    {
      group,
      description:
        'The waits before each retry of a delivery that was not answered with a 2xx (about three days in all by default); after the last one the delivery is given up.',
      default: `\`${defaultSchedule}\``,
    },
  ),
  WEBHOOK_DISABLE_AFTER: duration('3d', {
    group,
    description:
      'An endpoint with no delivery answered 2xx for this long, while deliveries to it failed, is disabled and shown to ops as failing.',
  }),
  WEBHOOK_SECRET_OVERLAP: duration('24h', {
    group,
    description:
      'After a secret rotation, deliveries are signed with the old secret as well as the new one for this long.',
  }),
  WEBHOOK_POLL_INTERVAL: duration(
    '500ms',
    {
      group,
      description:
        "How often each worker process numbers newly committed events and creates their deliveries: an event's first delivery starts about this long after it happened.",
    },
    '10ms',
  ),
  WEBHOOK_CONCURRENCY: documented(whole(z.coerce.number().int().min(1).max(200).default(8)), {
    group,
    description: 'Deliveries a worker process makes at once.',
    default: '`8`',
  }),
};

export interface WebhooksConfig {
  allowPrivateNetworks: boolean;
  timeoutMs: number;
  /** Waits before retry 1, 2, …; its length is the number of retries. */
  retryScheduleMs: number[];
  disableAfterMs: number;
  secretOverlapMs: number;
  pollIntervalMs: number;
  concurrency: number;
}

export function webhooksConfig(env: EnvOf<typeof webhooksEnv>): WebhooksConfig {
  return {
    allowPrivateNetworks: env.WEBHOOKS_ALLOW_PRIVATE_NETWORKS === 'true',
    timeoutMs: env.WEBHOOK_TIMEOUT,
    retryScheduleMs: env.WEBHOOK_RETRY_SCHEDULE,
    disableAfterMs: env.WEBHOOK_DISABLE_AFTER,
    secretOverlapMs: env.WEBHOOK_SECRET_OVERLAP,
    pollIntervalMs: env.WEBHOOK_POLL_INTERVAL,
    concurrency: env.WEBHOOK_CONCURRENCY,
  };
}
