import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onRequestHookHandler,
} from 'fastify';
import type { Db } from '../db/client.js';
import { bearerMatches } from './metrics-server.js';
import type { OpsMetrics } from './metrics.js';
import { checkReadiness, migrationsCheck, postgresCheck, redisCheck, type Pingable } from './readiness.js';
import type { StepQueue } from '../queue/queues.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { sendProblem } from '../http/problem.js';

export interface OpsRouteDeps {
  db: Db;
  queue: StepQueue;
  keys: KeyResolver;
  /** The producer connection (no offline queue): PING fails at once while Redis is away. */
  redis: Pingable;
  /** True when every migration has been applied (Database.isMigrated). */
  isMigrated: () => Promise<boolean>;
  /** This process's registry; without it there is no `/metrics`. */
  metrics?: OpsMetrics | undefined;
  /** METRICS_TOKEN: a bearer token that reads `/metrics` without an `ops` key. */
  metricsToken?: string | undefined;
  /** Deadline of each readiness check. Default 2 s. */
  readinessTimeoutMs?: number;
}

export const bullBoardPath = '/admin/queues';

/**
 * Operations endpoints:
 * - `GET /readyz` (no auth): 200 when Postgres answers, Redis answers PING and every migration
 *   is applied; 503 naming the failing check otherwise. A dependency probe for load balancers;
 *   `/healthz` stays a process probe.
 * - `GET /metrics` (scope `ops`, or `Authorization: Bearer $METRICS_TOKEN`): Prometheus text.
 * - `/admin/queues` (scope `ops`, bearer key or console session): bull-board over the steps
 *   queue, read-only, loading nothing from another origin (see below).
 */
export async function opsRoutes(app: FastifyInstance, deps: OpsRouteDeps): Promise<void> {
  app.get('/readyz', async (request, reply) => {
    const report = await checkReadiness(
      {
        postgres: postgresCheck(deps.db),
        redis: redisCheck(deps.redis),
        migrations: migrationsCheck(deps.isMigrated),
      },
      deps.readinessTimeoutMs,
    );
    if (report.status !== 'ready') {
      request.log.warn({ checks: report.checks, errors: report.errors }, 'not ready');
    }
    return reply
      .status(report.status === 'ready' ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status: report.status, checks: report.checks });
  });

  const metrics = deps.metrics;
  if (metrics) {
    const opsOnly = requireScope(deps.keys, 'ops');
    const token = deps.metricsToken;
    const canScrape: onRequestHookHandler = async function (request, reply) {
      if (token !== undefined && bearerMatches(request.headers.authorization, token)) return;
      await passes(opsOnly, this, request, reply);
    };
    app.get('/metrics', { onRequest: canScrape }, async (_request, reply) =>
      reply
        .header('cache-control', 'no-store')
        .type(metrics.contentType)
        .send(await metrics.text()),
    );
  }

  await app.register(async (scope) => {
    const guard = requireScope(deps.keys, 'ops');
    // bull-board installs its own error handler, which would turn a 401 into a 500: answer here.
    scope.addHook('onRequest', async function (request, reply) {
      try {
        await passes(guard, this, request, reply);
      } catch (err) {
        return sendProblem(request, reply, err);
      }
    });
    // Every answer under /admin/queues carries the policy; the board's page (its one HTML answer)
    // also loses its links to other origins.
    scope.addHook('onSend', async (_request, reply, payload) => {
      reply.headers(boardHeaders);
      const html = typeof payload === 'string' && String(reply.getHeader('content-type')).startsWith('text/html');
      return html ? ownOriginOnly(payload) : payload;
    });
    const serverAdapter = new FastifyAdapter().setBasePath(bullBoardPath);
    createBullBoard({
      // @bull-board/fastify pins its own copy of @bull-board/api's types (9.10.1 beside our 9.10.2);
      // the adapter contract is the same. Drop the cast once `npm dedupe` leaves one copy.
      // Read-only: the queue is derived from Postgres (the reconciler re-creates lost wake-ups),
      // and a job promoted, retried or removed by hand would bypass the audit log.
      queues: [new BullMQAdapter(deps.queue.queue, { readOnlyMode: true })],
      serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'],
      options: { uiConfig: { boardTitle: 'recoup queues' } },
    });
    await scope.register(serverAdapter.registerPlugin(), { prefix: bullBoardPath });
  });
}

/**
 * bull-board's page may load only from recoup's origin: its scripts, stylesheets, locales, icons
 * and highlighting worker are served under /admin/queues, and it calls nothing but its own API
 * there. Its React code renders `<style>` elements without a nonce (an inline SVG logo, base-ui's
 * scrollbar rule, CodeMirror's themes), hence inline styles; scripts stay same-origin files. The
 * page sets `<base href>` under /admin/queues, hence `base-uri 'self'`.
 */
const boardHeaders = {
  'content-security-policy': [
    "default-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

/**
 * bull-board's page without links to other origins: its template asks Google Fonts for a
 * stylesheet, which would tell Google whenever someone opens the board (the policy would refuse
 * it anyway, noisily). The board then falls back to system fonts.
 */
function ownOriginOnly(html: string): string {
  return html.replace(/<link\b[^>]*\bhref="(?:https?:)?\/\/[^"]*"[^>]*>/g, '');
}

/** Runs a guard hook (callback or async style) from inside another hook; rejects with its error. */
function passes(
  guard: onRequestHookHandler,
  instance: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const done: HookHandlerDoneFunction = (err) => (err ? reject(err) : resolve());
    const result: unknown = guard.call(instance, request, reply, done);
    if (result instanceof Promise) result.then(() => resolve(), reject);
  });
}
