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
      // Request logs show the route, never a retry-link token, an unsubscribe token or a checkout id.
      req: (req: LoggedRequest) => ({ id: req.id, method: req.method, url: req.url ? loggedUrl(req) : req.url }),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Path params that are capabilities (whoever knows one may act): masked in request logs, like any `:token`. */
    secretParams?: readonly string[];
  }
}

/** What the `req` serializer is given: Fastify's request, with the route it matched (none for a 404). */
interface LoggedRequest {
  id?: string;
  method?: string;
  url?: string;
  routeOptions?: { url?: string | undefined; config?: { secretParams?: readonly string[] | undefined } };
  params?: unknown;
}

/**
 * A request's URL as logged, built from the route it matched rather than the URL as sent: the
 * router decodes the path first, so `/%72/<token>` reaches `/r/:token` and a pattern over the raw
 * URL would miss it. Every `:token` param and those the route lists in `secretParams` are masked;
 * other params keep their value. A request no route matched is masked by its decoded path.
 */
export function loggedUrl(req: LoggedRequest): string {
  const route = req.routeOptions?.url;
  const url = req.url ?? '';
  if (!route) return maskTokens(url);
  const secret = new Set(['token', ...(req.routeOptions?.config?.secretParams ?? [])]);
  const params = (req.params ?? {}) as Record<string, unknown>;
  const path = route.replace(/:(\w+)/g, (_match, name: string) =>
    secret.has(name) ? '***' : encodeURIComponent(String(params[name] ?? '')),
  );
  return url.includes('?') ? `${path}?…` : path;
}

/**
 * `/r/<token>/pay/att_1?attempt=x` is logged as `/r/(masked)/pay/att_1?…`: capability tokens in paths are secrets,
 * and query strings may carry what someone searched for (an email, a phone number), so their
 * values are never logged. The path is read decoded, as the router reads it (`/%72/<token>` is `/r/<token>`).
 */
export function maskTokens(url: string): string {
  const [path = '', query] = url.split('?', 2);
  const masked = decodedPath(path).replace(/\/(r|u|sandbox\/checkout|sandbox\/scan)\/[^/#]+/g, '/$1/***');
  return query === undefined ? masked : `${masked}?…`;
}

/** The path percent-decoded until it no longer changes (a few rounds at most); as sent when it is not valid encoding. */
function decodedPath(path: string): string {
  let current = path;
  for (let round = 0; round < 3; round += 1) {
    let next: string;
    try {
      next = decodeURIComponent(current);
    } catch {
      return current;
    }
    if (next === current) return current;
    current = next;
  }
  return current;
}

/** Masks an address for API lists and logs: `+86*******0138`, `l***@example.com`. */
export function maskAddress(address: string | null | undefined): string | null {
  if (!address) return null;
  const at = address.indexOf('@');
  if (at > 0) return `${address.slice(0, 1)}***${address.slice(at)}`;
  if (address.length <= 6) return '*'.repeat(address.length);
  return `${address.slice(0, 3)}${'*'.repeat(address.length - 7)}${address.slice(-4)}`;
}
