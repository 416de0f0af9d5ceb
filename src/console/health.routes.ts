import type { FastifyInstance } from 'fastify';
import { heldReminderCounts } from '../circuits/circuit-hold.js';
import { circuitStates } from '../circuits/gateway-health.js';
import { humanDuration, orderHref, type ConsoleContext } from './console-context.js';
import { money, shownTime } from './format.js';
import { findStuckOrders } from './stuck-orders.js';

/** `/console/health`: gateway circuits, reminders held by an open circuit, stuck orders. */
export function consoleHealthRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, ops, frame, page } = ctx;

  app.get('/console/health', ops, async (request, reply) => {
    const now = deps.clock.now();
    const [circuits, held, stuck] = await Promise.all([
      circuitStates(deps.db, deps.gateways?.all().map((g) => g.name) ?? []),
      heldReminderCounts(deps.db),
      findStuckOrders(deps.db, { now, olderThanMs: deps.stuckOrderAfterMs, limit: 100 }),
    ]);
    return page(reply, 200, 'health', frame(request, 'health', 'Health'), {
      circuits: circuits.map((c) => ({
        gateway: c.gateway,
        open: c.state === 'open',
        state: c.state,
        reason: c.reason,
        openedAt: shownTime(c.openedAt),
        closedAt: shownTime(c.closedAt),
      })),
      anyOpen: circuits.some((c) => c.state === 'open'),
      noGateways: circuits.length === 0,
      held,
      stuck: {
        total: stuck.total,
        threshold: humanDuration(deps.stuckOrderAfterMs),
        more: stuck.total > stuck.orders.length,
        orders: stuck.orders.map((o) => ({
          id: o.id,
          href: orderHref(o.id),
          customerId: o.customerId,
          amount: money(o.amount, o.currency),
          createdAt: shownTime(o.createdAt),
          age: humanDuration(now.getTime() - o.createdAt.getTime()),
          lastEvent: o.lastEventType ? `${o.lastEventType} (${o.lastEventOutcome ?? '?'})` : 'none',
          hint: stuckHint(o.lastEventType, o.requestedCadence),
        })),
      },
    });
  });
}

function stuckHint(lastEvent: string | null, requestedCadence: string | null): string {
  if (lastEvent === 'order.created') return 'no payment.failed event arrived (and the abandon check did not start one)';
  if (lastEvent === 'payment.failed') {
    return requestedCadence
      ? `asked for cadence "${requestedCadence}": does it exist and match?`
      : 'no cadence matched';
  }
  return 'check the shop’s events';
}
