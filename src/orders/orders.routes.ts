import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Db } from '../db/client.js';
import { RecoupError, validationError, zodIssues } from '../platform/errors.js';
import { loadOrderView } from './order-view.js';
import { requestRefund } from '../payments/refunds.js';
import type { RetryDeps } from '../payments/retry-session.js';
import type { Clock } from '../platform/clock.js';
import { issueRetryLink, type LinkSettings } from '../recoveries/ops-actions.js';
import { principalActor } from '../access/audit.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { requireJson } from '../http/request.js';

export interface OrderRouteDeps {
  db: Db;
  keys: KeyResolver;
  payments: { retry: RetryDeps } | undefined;
  /** Where retry links lead; unset when the retry pages are not served (no link would work). */
  retryLinks?: (LinkSettings & { clock: Clock }) | undefined;
}

const reason = z.string().trim().min(1, 'say why').max(500);

const refundBodySchema = z.object({
  amount: z.number().int('must be an integer in minor units').positive('must be positive').optional(),
  reason,
});

const retryLinkBodySchema = z.object({ reason });

/**
 * An order's story (scope `ops`), refunds of its payments (scope `ops`), and a retry link issued
 * by hand (scope `admin`: the link is a bearer credential that shows the customer's contact unmasked
 * and lets its holder change it, which the order's story withholds from `ops`).
 */
export async function orderRoutes(app: FastifyInstance, deps: OrderRouteDeps): Promise<void> {
  app.get<{ Params: { id: string } }>(
    '/v1/orders/:id',
    { onRequest: requireScope(deps.keys, 'ops') },
    async (request) => {
      const view = await loadOrderView(deps.db, request.params.id);
      if (!view) throw new RecoupError('not_found', `No order ${request.params.id}`);
      return view;
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/orders/:id/refunds',
    { onRequest: requireScope(deps.keys, 'ops') },
    async (request, reply) => {
      if (!deps.payments) throw new RecoupError('not_found', 'Payments are not configured');
      requireJson(request);
      const parsed = refundBodySchema.safeParse(request.body);
      if (!parsed.success) throw validationError(zodIssues(parsed.error));
      const idempotencyKey = request.headers['idempotency-key'];
      const result = await requestRefund(deps.payments.retry, {
        orderId: request.params.id,
        amount: parsed.data.amount,
        reason: parsed.data.reason,
        requestedBy: request.principal ? principalActor(request.principal) : 'api',
        idempotencyKey: typeof idempotencyKey === 'string' ? idempotencyKey : undefined,
      });
      return reply.status(202).send({ refund_id: result.refundId, status: result.status });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/orders/:id/retry-link',
    { onRequest: requireScope(deps.keys, 'admin') },
    async (request, reply) => {
      const links = deps.retryLinks;
      if (!links) throw new RecoupError('not_found', 'Retry pages are not configured');
      requireJson(request);
      const parsed = retryLinkBodySchema.safeParse(request.body);
      if (!parsed.success) throw validationError(zodIssues(parsed.error));
      if (!request.principal) throw new RecoupError('unauthorized', 'No credentials');
      const link = await issueRetryLink(
        deps.db,
        request.params.id,
        { actor: principalActor(request.principal), at: links.clock.now(), reason: parsed.data.reason },
        links,
      );
      request.log.info({ orderId: request.params.id, messageId: link.messageId }, 'retry link issued by ops');
      // The answer carries a credential: no cache keeps it.
      return reply.status(201).header('cache-control', 'no-store').send({
        url: link.url,
        expires_at: link.expiresAt.toISOString(),
        message_id: link.messageId,
        recovery_id: link.recoveryId,
      });
    },
  );
}
