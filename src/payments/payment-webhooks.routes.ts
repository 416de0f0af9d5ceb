import type { FastifyInstance } from 'fastify';
import { errorCodes } from '../platform/errors.js';
import { handleGatewayWebhook } from './gateway-webhook.js';
import type { WebhookReply, WebhookResult } from './payment-gateway.js';
import type { RetryDeps } from './retry-session.js';
import { toRecoupError } from '../http/problem.js';

/**
 * POST /webhooks/payments/:gateway. Signatures are computed over the exact bytes the gateway
 * sent, so this scope keeps every body as a raw Buffer. Gateways that prescribe their answer
 * (Alipay, WeChat Pay) get it, for failures too: only their success answer stops the resends,
 * and it is sent only once the event is durably recorded.
 */
export async function paymentWebhookRoutes(app: FastifyInstance, deps: RetryDeps): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.post<{ Params: { gateway: string } }>('/webhooks/payments/:gateway', async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const gateway = deps.gateways.byName(request.params.gateway);
    const answer = (prescribed: WebhookReply) => {
      const sent = reply.status(prescribed.status);
      if (prescribed.contentType) sent.type(prescribed.contentType);
      return sent.send(prescribed.contentType ? prescribed.body : undefined);
    };
    let outcome;
    try {
      outcome = await handleGatewayWebhook(deps, request.params.gateway, body, request.headers);
    } catch (err) {
      if (!gateway?.webhookReply) throw err;
      const error = toRecoupError(err);
      const status = errorCodes[error.code].status;
      request.log[status >= 500 ? 'error' : 'warn']({ err, gateway: gateway.name }, 'payment webhook refused');
      const result: WebhookResult = {
        ok: false,
        status,
        message: status >= 500 ? `Internal error; request id ${request.id}` : error.message,
      };
      return answer(gateway.webhookReply(result));
    }
    request.log.info({ gateway: request.params.gateway, outcome }, 'payment webhook');
    if (gateway?.webhookReply) return answer(gateway.webhookReply({ ok: true }));
    return reply.status(200).send({ received: true, outcome });
  });
}
