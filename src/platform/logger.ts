import { pino, type DestinationStream, type Logger } from 'pino';
import { scrubError, scrubLogObject } from './log-scrub.js';

export type { Logger };

/**
 * JSON logs. Personal data and secrets are redacted by path wherever they may appear, and
 * emails and phone numbers anywhere else (error messages, provider answers) are masked,
 * so a log line can be shared with a vendor without scrubbing.
 * @param destination where lines go; default stdout (tests pass a buffer).
 */
export function createLogger(level: string, name = 'recoup', destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    formatters: { log: (object) => scrubLogObject(object) },
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
      err: scrubError,
      // Request logs show the route, never a retry-link token or an unsubscribe token.
      req: (req: { method?: string; url?: string; id?: string }) => ({
        id: req.id,
        method: req.method,
        url: req.url ? maskTokens(req.url) : req.url,
      }),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * `/r/<token>/pay/att_1?attempt=x` is logged as `/r/(masked)/pay/att_1?…`: capability tokens in paths are secrets,
 * and query strings may carry what someone searched for (an email, a phone number), so their
 * values are never logged.
 */
export function maskTokens(url: string): string {
  const [path = '', query] = url.split('?', 2);
  const masked = path.replace(/\/(r|u)\/[^/#]+/g, '/$1/***');
  return query === undefined ? masked : `${masked}?…`;
}

/** Masks an address for API lists and logs: `+86*******0138`, `l***@example.com`. */
export function maskAddress(address: string | null | undefined): string | null {
  if (!address) return null;
  const at = address.indexOf('@');
  if (at > 0) return `${address.slice(0, 1)}***${address.slice(at)}`;
  if (address.length <= 6) return '*'.repeat(address.length);
  return `${address.slice(0, 3)}${'*'.repeat(address.length - 7)}${address.slice(-4)}`;
}
