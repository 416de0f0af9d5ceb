import type { FastifyInstance } from 'fastify';
import { handleGatewayWebhook } from '../payments/gateway-webhook.js';
import type { RetryDeps } from '../payments/retry-session.js';

/**
 * POST /webhooks/payments/:gateway. Signatures are computed over the exact bytes the gateway
 * sent, so this scope keeps every body as a raw Buffer.
 */
export async function paymentWebhookRoutes(app: FastifyInstance, deps: RetryDeps): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.post<{ Params: { gateway: string } }>('/webhooks/payments/:gateway', async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const outcome = await handleGatewayWebhook(deps, request.params.gateway, body, request.headers);
    request.log.info({ gateway: request.params.gateway, outcome }, 'payment webhook');
    return reply.status(200).send({ received: true, outcome });
  });
}
