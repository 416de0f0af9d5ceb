import type { FastifyInstance } from 'fastify';
import { actorOf, formFields, type ConsoleContext } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';
import { shownTime } from './format.js';
import { listSuppressions, removeSuppression } from './suppression-list.js';

/** Suppressions: the list (`/console/suppressions?q=`) and removing one (an opt-in recorded by ops). */
export function consoleSuppressionRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, ops, opsForm, frame, page } = ctx;

  app.get<{ Querystring: Record<string, unknown> }>('/console/suppressions', ops, async (request, reply) => {
    const q = typeof request.query.q === 'string' ? request.query.q.trim().slice(0, 254) : '';
    const list = await listSuppressions(deps.db, { q, limit: 200 });
    const removed = request.query.removed;
    const notice: ConsoleFrame['notice'] =
      removed === 'sms' || removed === 'email'
        ? {
            tone: 'success',
            text: `Removed: the ${removed === 'sms' ? 'number' : 'address'} gets reminders again (recorded as an opt-in by ops).`,
          }
        : null;
    return page(reply, 200, 'suppressions', frame(request, 'suppressions', 'Suppressions', notice), {
      q,
      total: list.total,
      shown: list.rows.length,
      more: list.total > list.rows.length,
      suppressions: list.rows.map((s) => ({
        ...s,
        channel: s.channel === 'sms' ? 'SMS' : 'email',
        createdAt: shownTime(s.createdAt),
      })),
    });
  });

  app.post('/console/suppressions/remove', opsForm, async (request, reply) => {
    const ref = formFields(request).ref ?? '';
    const removed = await removeSuppression(deps.db, ref, { actor: actorOf(request), at: deps.clock.now() });
    return reply.redirect(`/console/suppressions?removed=${removed.channel}`, 303);
  });
}
