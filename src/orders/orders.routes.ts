import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Db } from '../db/client.js';
import { RecoupError, validationError, zodIssues } from '../platform/errors.js';
import { loadOrderView } from './order-view.js';
import { requestRefund } from '../payments/refunds.js';
import type { RetryDeps } from '../payments/retry-session.js';
import { principalActor } from '../access/audit.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { requireJson } from '../http/request.js';

export interface OrderRouteDeps {
  db: Db;
  keys: KeyResolver;
  payments: { retry: RetryDeps } | undefined;
}

const refundBodySchema = z.object({
  amount: z.number().int('must be an integer in minor units').positive('must be positive').optional(),
  reason: z.string().trim().min(1, 'say why').max(500),
});

/** An order's story (scope `ops`) and refunds of its payments (scope `ops`). */
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
}
