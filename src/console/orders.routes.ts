import type { FastifyInstance } from 'fastify';
import { hasScope } from '../access/auth.js';
import { RecoupError } from '../platform/errors.js';
import { restartRecovery, stopRecovery, stoppedByOps } from '../recoveries/ops-actions.js';
import { actorOf, cadenceHref, orderHref, type ConsoleContext } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';
import { addressFingerprint, masked, money, shownTime } from './format.js';
import { searchOrders } from './order-search.js';
import { loadOrderTimeline } from './order-timeline.js';

/**
 * Orders: search (`/console/orders?q=`), an order's story (`/console/orders/:id`), and for ops
 * stopping or restarting its recovery. Finance reads these pages without the buttons.
 */
export function consoleOrderRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, opsForm, readers, frame, page } = ctx;
  const fingerprint = addressFingerprint(deps.secret);

  app.get<{ Querystring: Record<string, unknown> }>('/console/orders', readers, async (request, reply) => {
    const q = typeof request.query.q === 'string' ? request.query.q.trim().slice(0, 254) : '';
    const hits = await searchOrders(deps.db, q);
    return page(reply, 200, 'orders', frame(request, 'orders', q ? `Orders: ${q}` : 'Orders'), {
      q,
      searched: q !== '',
      orders: hits.map((o) => ({
        id: o.id,
        href: orderHref(o.id),
        customerId: o.customerId,
        email: masked(o.email),
        phone: masked(o.phone),
        status: o.status,
        amount: money(o.amount, o.currency),
        recovery: o.recoveryState,
        createdAt: shownTime(o.createdAt),
      })),
    });
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/console/orders/:id',
    readers,
    async (request, reply) => {
      const timeline = await loadOrderTimeline(deps.db, request.params.id, {
        configuredKeys: deps.keys.configured?.() ?? [],
        fingerprint,
      });
      if (!timeline) throw new RecoupError('not_found', `No order ${request.params.id}`);
      const { view, customer } = timeline;
      const tz = customer?.timezone ?? null;
      const recovery = view.recovery;
      const canAct = hasScope(request.principal, ['ops']);
      const done = request.query.done;
      const notice: ConsoleFrame['notice'] =
        done === 'stopped'
          ? { tone: 'success', text: 'Recovery stopped: nothing more goes out and its retry links no longer work.' }
          : done === 'restarted'
            ? { tone: 'success', text: 'Recovery restarted from its current step.' }
            : null;
      return page(reply, 200, 'order', frame(request, 'orders', `Order ${view.order.id}`, notice), {
        order: {
          id: view.order.id,
          status: view.order.status,
          amount: money(view.order.amount, view.order.currency),
          description: view.order.description,
          coupon: view.order.coupon_code,
          lastFailure: view.order.last_failure
            ? [view.order.last_failure.code, view.order.last_failure.category].filter(Boolean).join(' · ')
            : null,
          createdAt: shownTime(new Date(view.order.created_at), tz),
          paidAt: shownTime(view.order.paid_at ? new Date(view.order.paid_at) : null, tz),
        },
        customer: customer
          ? {
              id: customer.id,
              href: `/console/orders?q=${encodeURIComponent(customer.id)}`,
              name: customer.name,
              email: customer.email,
              phone: customer.phone,
              locale: customer.locale,
              timezone: customer.timezone,
              bad:
                [
                  customer.emailBadReason ? `email: ${customer.emailBadReason}` : null,
                  customer.phoneBadReason ? `phone: ${customer.phoneBadReason}` : null,
                ]
                  .filter(Boolean)
                  .join(' · ') || null,
              forgotten: customer.forgottenAt !== null,
            }
          : null,
        recovery: recovery
          ? {
              id: recovery.id,
              state: recovery.state,
              cadence: recovery.cadence,
              cadenceHref: `${cadenceHref(recovery.cadence)}?version=${recovery.cadence_version}`,
              version: recovery.cadence_version,
              category: recovery.failure_category,
              step: recovery.step,
              nextRun: shownTime(recovery.next_run_at ? new Date(recovery.next_run_at) : null, tz),
              expires: shownTime(new Date(recovery.expires_at), tz),
              endedReason: recovery.ended_reason,
              holdout: recovery.holdout,
              stopAction: canAct && recovery.state === 'active' ? `${orderHref(view.order.id)}/stop` : null,
              restartAction:
                canAct &&
                recovery.state === 'stopped' &&
                view.order.status === 'pending' &&
                recovery.ended_reason !== 'customer_forgotten'
                  ? `${orderHref(view.order.id)}/restart`
                  : null,
              stoppedByOps: recovery.ended_reason === stoppedByOps,
            }
          : null,
        entries: timeline.entries.map((e) => ({
          ...e,
          time: shownTime(e.at, tz),
          // Links lead to ops pages (a webhook endpoint): finance gets the text only.
          details: canAct ? e.details : e.details.map(({ label, value }) => ({ label, value })),
        })),
        readOnly: !canAct,
      });
    },
  );

  app.post<{ Params: { id: string } }>('/console/orders/:id/stop', opsForm, async (request, reply) => {
    const result = await stopRecovery(
      deps.db,
      request.params.id,
      { actor: actorOf(request), at: deps.clock.now() },
      deps.inFlightWait,
    );
    const pending = result.pendingWakeup;
    // Only tidies the queue: the wake-up would find the recovery stopped and do nothing.
    if (pending) deps.queue.remove(pending.recoveryId, pending.wakeSeq).catch(() => undefined);
    request.log.info({ recoveryId: result.recoveryId }, 'recovery stopped by ops');
    return reply.redirect(`${orderHref(request.params.id)}?done=stopped`, 303);
  });

  app.post<{ Params: { id: string } }>('/console/orders/:id/restart', opsForm, async (request, reply) => {
    const now = deps.clock.now();
    const result = await restartRecovery(deps.db, request.params.id, { actor: actorOf(request), at: now });
    try {
      // The clock read after the commit: a wake-up beyond the horizon is then one the promotion pass finds.
      await deps.queue.add([result.wakeup], deps.clock.now());
    } catch (err) {
      // Committed already: the reconciler re-creates wake-ups that are overdue and missing.
      request.log.warn(
        { err, recoveryId: result.recoveryId },
        'could not queue the restarted recovery; the reconciler will',
      );
    }
    request.log.info({ recoveryId: result.recoveryId, step: result.step }, 'recovery restarted by ops');
    return reply.redirect(`${orderHref(request.params.id)}?done=restarted`, 303);
  });
}
