import { z } from 'zod';
import { documented, duration, emptyToUndefined, optionalText } from '../platform/config-fields.js';

const group = 'Operations';

/** Logging, metrics access and the stuck-order threshold (see ops-settings.ts). */
export const opsEnv = {
  LOG_LEVEL: documented(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'), {
    group,
    description: 'pino log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.',
    default: '`info`',
  }),
  METRICS_TOKEN: optionalText({
    group,
    secret: true,
    description: 'A bearer token that may read `/metrics` without an `ops` API key.',
    default: 'none: only `ops` keys and console sessions read `/metrics`',
  }),
  METRICS_PORT: documented(z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(65535).optional()), {
    group,
    description: 'Serve `GET /metrics` on this port from any role (workers have no other HTTP server).',
    default: 'none',
  }),
  STUCK_ORDER_AFTER: duration('2h', {
    group,
    description: 'A pending order this old with no recovery counts as stuck.',
  }),
};
