import type { FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify';
import { principalActor } from '../access/audit.js';
import { hasScope, type KeyResolver } from '../access/auth.js';
import type { CadenceBook } from '../cadences/cadence-book.js';
import type { Clock } from '../platform/clock.js';
import type { ShopConnector } from '../connectors/shop-connector.js';
import type { Db } from '../db/client.js';
import { RecoupError } from '../platform/errors.js';
import type { Logger } from '../platform/logger.js';
import type { InFlightWait } from '../messages/in-flight.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import type { PaymentGateways } from '../payments/gateways.js';
import type { StepQueue } from '../queue/queues.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';
import { csrfFieldName, type ConsoleSessions } from './console-auth.js';
import type { ConsoleFrame, ConsolePageName, ConsolePages, NavSection } from './console-pages.js';

export interface ConsoleRouteDeps {
  db: Db;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  cadences: CadenceBook;
  /** Restarted recoveries get their wake-up here. */
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  /** build-app's console sessions: the guard, CSRF tokens. */
  sessions: ConsoleSessions;
  /** The app's key resolver: audit entries name the configured keys as it does. */
  keys: KeyResolver;
  /**
   * RECOUP_SECRET: keys the short fingerprints beside masked addresses in audit entries, so a
   * changed address reads as changed without being shown.
   */
  secret: string;
  /** `ConsolePages.load(path.join(templatesDir, 'console'))`. */
  pages: ConsolePages;
  /** Template catalogue for validation and previews. */
  renderer: TemplateRenderer;
  /** Configured gateways: offered methods are validated against them and their circuits listed. */
  gateways: PaymentGateways | undefined;
  publicUrl: string;
  shopName: string;
  defaultTimezone: string;
  /** STEP_MIN_GAP, for the cadence preview. Default defaultStepMinGapMs. */
  stepMinGapMs?: number | undefined;
  /** STUCK_ORDER_AFTER: pending this long with no recovery is stuck. Default 2 h. */
  stuckOrderAfterMs: number;
  /**
   * Queues webhook deliveries made due now (a resend, an endpoint enabled again). Without it, or
   * when it fails, they go out with the next restore pass of the worker processes.
   */
  wakeWebhooks?: (wakeups: DeliveryWakeup[]) => Promise<void>;
  /** The shop platforms' connectors, listed with what they could not map. */
  connectors?: readonly ShopConnector[] | undefined;
}

/** What every console page's routes share: the deps, the access guards and the page frame. */
export interface ConsoleContext {
  deps: ConsoleRouteDeps;
  /** Pages for ops (and admin). */
  ops: { onRequest: onRequestHookHandler };
  /** Ops forms: an ops session and the session's CSRF token. */
  opsForm: { onRequest: onRequestHookHandler; preHandler: preHandlerHookHandler };
  /** Pages finance may read too. */
  readers: { onRequest: onRequestHookHandler };
  /** The frame around every page: title, navigation, who is signed in, the CSRF token, a notice. */
  frame: (
    request: FastifyRequest,
    section: NavSection | null,
    title: string,
    notice?: ConsoleFrame['notice'],
  ) => ConsoleFrame;
  /** Renders a console page into the reply, with the console's security headers. */
  page: (reply: FastifyReply, status: number, name: ConsolePageName, frame: ConsoleFrame, data: object) => FastifyReply;
}

export function consoleContext(deps: ConsoleRouteDeps): ConsoleContext {
  const { sessions, pages } = deps;
  return {
    deps,
    ops: { onRequest: sessions.requireConsole('ops') },
    opsForm: { onRequest: sessions.requireConsole('ops'), preHandler: sessions.verifyCsrf },
    readers: { onRequest: sessions.requireConsole('ops', 'finance') },
    frame: (request, section, title, notice = null) => {
      const principal = request.principal;
      let csrf = '';
      try {
        csrf = principal ? sessions.csrfToken(request) : '';
      } catch {
        // No session was found for this request (an error page before the guard ran).
      }
      return {
        title,
        section,
        who: principal ? { name: principal.name, scopes: principal.scopes.join(', ') } : null,
        csrf,
        // Finance reads the dashboard and orders; ops (and admin) see every section.
        sections: hasScope(principal, ['ops'])
          ? ['dashboard', 'cadences', 'orders', 'suppressions', 'webhooks', 'health']
          : principal
            ? ['dashboard', 'orders']
            : [],
        notice,
        lang: 'en',
      };
    },
    page: (reply, status, name, f, data) => sendHtml(reply, status, pages.render(name, f, data)),
  };
}

/** Pages may load recoup's own stylesheet and script, nothing else; forms post to recoup only. */
const csp = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function sendHtml(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply
    .status(status)
    .header('content-security-policy', csp)
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .type('text/html; charset=utf-8')
    .send(html);
}

export function cadenceHref(name: string): string {
  return `/console/cadences/${encodeURIComponent(name)}`;
}

export function orderHref(id: string): string {
  return `/console/orders/${encodeURIComponent(id)}`;
}

export function webhookEndpointHref(id: string): string {
  return `/console/webhooks/${encodeURIComponent(id)}`;
}

/** The audit actor of a console request. */
export function actorOf(request: FastifyRequest): string {
  if (!request.principal) throw new RecoupError('unauthorized', 'No console session');
  return principalActor(request.principal);
}

/** The string fields of a form body (repeated fields: the last one). */
export function formFields(request: FastifyRequest): Record<string, string | undefined> {
  const body = request.body;
  if (typeof body !== 'object' || body === null) return {};
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    if (key === csrfFieldName) continue;
    const last: unknown = Array.isArray(value) ? value.at(-1) : value;
    if (typeof last === 'string') out[key] = last;
  }
  return out;
}

export function humanDuration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
  return `${Math.floor(hours / 24)} days`;
}
