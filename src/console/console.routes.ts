import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errorCodes, RecoupError } from '../platform/errors.js';
import { sendProblem, toRecoupError } from '../http/problem.js';
import { consoleCadenceEditorRoutes, maxYamlChars } from './cadence-editor.routes.js';
import { consoleCadenceRoutes } from './cadences.routes.js';
import { loginPath } from './console-auth.js';
import { consoleContext, type ConsoleRouteDeps } from './console-context.js';
import { dashboardRoutes } from './dashboard.routes.js';
import { consoleHealthRoutes } from './health.routes.js';
import { consoleOrderRoutes } from './orders.routes.js';
import { consoleSuppressionRoutes } from './suppressions.routes.js';
import { consoleWebhookRoutes } from './webhooks.routes.js';

export type { ConsoleRouteDeps };

/**
 * The ops console: server-rendered pages, no client build. Every page needs a console session
 * (`requireConsole`): cadences, suppressions, webhooks and health need `ops`; order pages also let
 * `finance` read (without the stop/restart buttons). Every POST carries the session's CSRF token
 * and answers with a 303 to a page (post/redirect/get), except an editor save with errors, which
 * re-renders the editor (422) with the errors beside it.
 *
 * - `/console/cadences`, `/console/cadences/new`, `/console/cadences/:name` (editor + preview),
 *   `/console/cadences/:name/versions` (history, diffs, activate);
 * - `/console/orders?q=`, `/console/orders/:id` (the order's story), `POST …/stop`, `POST …/restart`;
 * - `/console/suppressions`, `POST /console/suppressions/remove`;
 * - `/console/webhooks` (the shop's endpoints), `/console/webhooks/:id` (its delivery log),
 *   `POST …/deliveries/:deliveryId/resend`, `POST …/enable`, `POST …/disable`;
 * - `/console/health`: gateway circuits, held reminders, stuck orders;
 * - `/dashboard`: recovery figures, for finance and ops;
 * - `/console/assets/:name`: the pages' stylesheet and script.
 */
export async function consoleRoutes(app: FastifyInstance, deps: ConsoleRouteDeps): Promise<void> {
  await app.register(formbody, { bodyLimit: 4 * maxYamlChars });
  const ctx = consoleContext(deps);
  const { sessions, pages } = deps;
  const { frame, page } = ctx;

  // Errors on console routes become pages for browsers (a stale form, an order that is gone);
  // scripts still get problem JSON.
  app.setErrorHandler((err, request, reply) => {
    if (!/text\/html/.test(request.headers.accept ?? '')) return sendProblem(request, reply, err);
    const error = toRecoupError(err);
    const status = errorCodes[error.code].status;
    if (status >= 500) request.log.error({ err }, 'console request failed');
    return page(reply, status, 'error', frame(request, null, titles[error.code] ?? 'Something went wrong'), {
      status,
      message: status >= 500 ? `Something went wrong on our side. Quote request id ${request.id}.` : error.message,
      signIn: error.code === 'unauthorized' ? `${loginPath}?next=${encodeURIComponent(backTo(request))}` : null,
      back: backTo(request),
    });
  });

  app.get<{ Params: { name: string } }>(
    '/console/assets/:name',
    { onRequest: sessions.requireConsole() },
    async (request, reply) => {
      const asset = pages.asset(request.params.name);
      if (!asset) throw new RecoupError('not_found', 'No such asset');
      // The URL carries the content hash, so it may be cached for good (by this browser only).
      reply.header('cache-control', 'private, max-age=31536000, immutable').header('etag', asset.etag);
      if (request.headers['if-none-match'] === asset.etag) return reply.status(304).send();
      return reply.type(asset.contentType).header('x-content-type-options', 'nosniff').send(asset.body);
    },
  );

  consoleCadenceRoutes(app, ctx);
  consoleCadenceEditorRoutes(app, ctx);
  consoleOrderRoutes(app, ctx);
  consoleSuppressionRoutes(app, ctx);
  consoleWebhookRoutes(app, ctx);
  dashboardRoutes(app, ctx);
  consoleHealthRoutes(app, ctx);
}

const titles: Partial<Record<keyof typeof errorCodes, string>> = {
  validation: 'Not accepted',
  unauthorized: 'Signed out',
  forbidden: 'Not allowed',
  not_found: 'Not found',
  conflict: 'Not possible now',
  payload_too_large: 'Too large',
};

/** Where "back" goes from an error page: the referring console page, else the console's start. */
function backTo(request: FastifyRequest): string {
  const url = request.url.split('?')[0] ?? '/console';
  if (request.method === 'GET') return url;
  // A POST's page: the order, cadence or webhook endpoint it was about.
  const match = /^\/console\/(orders|cadences|webhooks)\/[^/]+/.exec(url);
  return match?.[0] ?? '/console/cadences';
}
