import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { isGatewayError } from '../../payment-gateway.js';
import type { SandboxGateway, SandboxOutcome } from './sandbox-gateway.js';
import { checkoutPage, finalPage, messagePage, sandboxStylesheet } from './sandbox-pages.js';
import type { SandboxPayment } from './sandbox-store.js';

/**
 * The sandbox's simulated hosted checkout, served by recoup itself. Register it at the root
 * (no prefix): the gateway builds its URLs as `${publicUrl}/sandbox/…`.
 *
 * - `GET /sandbox/checkout/:id`: card or Alipay page (where `redirect` next actions point);
 * - `GET /sandbox/scan/:id`: what a phone shows after scanning a WeChat Pay QR code;
 * - `POST` to either: the customer's choice (succeed, decline with a code, time out), then a
 *   303 back to the payment's returnUrl with `?payment=<id>`; the signed webhook goes out first;
 * - `GET /sandbox/assets/sandbox.css`: the pages' only asset.
 *
 * Viewing a page changes nothing (apart from expiring a payment whose time is up, as a real
 * gateway would on its own). Posts carry a per-payment token derived from the webhook secret.
 * The pages bring their own strict Content-Security-Policy: no scripts at all.
 */
export function sandboxRoutes(gateway: SandboxGateway): FastifyPluginAsync {
  return async (app) => {
    // Encapsulated in this plugin: the rest of the app keeps its own body parsing.
    if (!app.hasContentTypeParser('application/x-www-form-urlencoded')) {
      app.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 4096 },
        (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
      );
    }

    app.get('/sandbox/assets/sandbox.css', async (_request, reply) =>
      reply
        .header('content-type', 'text/css; charset=utf-8')
        .header('cache-control', 'public, max-age=3600')
        .header('x-content-type-options', 'nosniff')
        .send(sandboxStylesheet),
    );

    // A payment's id opens its checkout page (and, with the page's form token, pays it).
    const config = { secretParams: ['id'] };
    for (const page of ['checkout', 'scan'] as const) {
      const path = `/sandbox/${page}/:id`;

      app.get<{ Params: { id: string } }>(path, { config }, async (request, reply) => {
        const payment = await gateway.checkout(request.params.id);
        if (!payment) return sendPage(reply, 404, messagePage('notFound'));
        if (payment.status !== 'requires_action') {
          return sendPage(reply, 200, finalPage(payment, backUrl(payment)), payment);
        }
        const action = `/sandbox/${page}/${encodeURIComponent(payment.id)}`;
        return sendPage(reply, 200, checkoutPage(payment, action, gateway.formToken(payment.id)), payment);
      });

      app.post<{ Params: { id: string } }>(path, { config }, async (request, reply) => {
        const id = request.params.id;
        const form = isRecord(request.body) ? request.body : {};
        const payment = await gateway.checkout(id);
        if (!payment) return sendPage(reply, 404, messagePage('notFound'));
        if (!gateway.checkFormToken(id, stringField(form.token))) {
          return sendPage(reply, 403, messagePage('forbidden', payment.locale), payment);
        }
        const outcome = parseOutcome(form);
        if (!outcome) return sendPage(reply, 400, messagePage('badRequest', payment.locale), payment);
        try {
          const done = await gateway.complete(id, outcome);
          return reply.header('cache-control', 'no-store').redirect(backUrl(done), 303);
        } catch (error) {
          if (isGatewayError(error, 'conflict')) {
            const current = (await gateway.checkout(id)) ?? payment;
            return sendPage(reply, 409, finalPage(current, backUrl(current)), current);
          }
          if (isGatewayError(error, 'invalid_request')) {
            return sendPage(reply, 400, messagePage('badRequest', payment.locale), payment);
          }
          throw error;
        }
      });
    }
  };
}

function parseOutcome(form: Record<string, unknown>): SandboxOutcome | undefined {
  const action = stringField(form.action);
  if (action === 'succeed' || action === 'timeout') return { type: action };
  const code = stringField(form.code);
  if (action === 'decline' && code) return { type: 'decline', code };
  return undefined;
}

/** The payment's returnUrl with `payment=<id>` added to its query. */
function backUrl(payment: SandboxPayment): string {
  const url = new URL(payment.returnUrl);
  url.searchParams.set('payment', payment.id);
  return url.toString();
}

function sendPage(reply: FastifyReply, status: number, body: string, payment?: SandboxPayment): FastifyReply {
  // The form posts here, then the answer redirects to the shop's returnUrl: both must be allowed targets.
  const formTargets = payment ? `'self' ${new URL(payment.returnUrl).origin}` : `'self'`;
  return reply
    .status(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'self'; img-src 'self' data:; form-action ${formTargets}; base-uri 'none'; frame-ancestors 'none'`,
    )
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .send(body);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function stringField(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
