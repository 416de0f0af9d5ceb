import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs. Personal data and secrets are redacted by path wherever they may appear,
 * so a log line can be shared with a vendor without scrubbing.
 */
export function createLogger(level: string, name = 'recoup'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: [
        'to',
        'email',
        'phone',
        '*.to',
        '*.email',
        '*.phone',
        'customer.name',
        '*.customer.name',
        'req.headers.authorization',
        'headers.authorization',
        'authToken',
        '*.authToken',
        'smtpUrl',
        '*.smtpUrl',
        'token',
        '*.token',
      ],
      censor: '[redacted]',
    },
    serializers: {
      // Request logs show the route, never a retry-link token or an unsubscribe token.
      req: (req: { method?: string; url?: string; id?: string }) => ({
        id: req.id,
        method: req.method,
        url: req.url ? maskTokens(req.url) : req.url,
      }),
    },
  });
}

/** `/r/AbC…/pay/att_1` → `/r/***` …: capability tokens in paths are secrets. */
export function maskTokens(url: string): string {
  return url.replace(/\/(r|u)\/[^/?#]+/g, '/$1/***');
}

/** Masks an address for API lists and logs: `+86*******0138`, `l***@example.com`. */
export function maskAddress(address: string | null | undefined): string | null {
  if (!address) return null;
  const at = address.indexOf('@');
  if (at > 0) return `${address.slice(0, 1)}***${address.slice(at)}`;
  if (address.length <= 6) return '*'.repeat(address.length);
  return `${address.slice(0, 3)}${'*'.repeat(address.length - 7)}${address.slice(-4)}`;
}
