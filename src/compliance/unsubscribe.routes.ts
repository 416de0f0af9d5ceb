import { PageCsrf } from '../http/page-csrf.js';
import type { InFlightWait } from '../messages/in-flight.js';
import { httpStatusOf } from '../http/problem.js';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../platform/clock.js';
import { loadUnsubscribeTarget, unsubscribeEmail, type UnsubscribeTarget } from './email-unsubscribe.js';
import type { UnsubscribeLinks } from './unsubscribe-links.js';
import { type UnsubscribePageData, type UnsubscribePageName, type UnsubscribePages } from './unsubscribe-pages.js';
import type { Db } from '../db/client.js';
import { maskAddress } from '../platform/logger.js';
import {
  fillIn,
  localeFromAcceptLanguage,
  pageStringsFor,
  resolvePageLocale,
  type PageLocale,
} from '../http/pages/page-strings.js';

export interface UnsubscribeRouteDeps {
  db: Db;
  clock: Clock;
  links: UnsubscribeLinks;
  pages: UnsubscribePages;
  /** Key of the CSRF tokens (RECOUP_SECRET). */
  secret: string;
  shopName: string;
  /** PUBLIC_URL: Secure cookies when it is https. */
  publicUrl: string;
  /** Requests per link (token) across `/u/*`. Default 60 per minute. */
  rateLimit?: { max: number; timeWindowMs: number };
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
}

const bodyLimit = 8_192;

/**
 * The email unsubscribe endpoint behind `List-Unsubscribe` and the footer link of every reminder:
 *
 * - `POST /u/:token` with `List-Unsubscribe=One-Click` (RFC 8058, form-encoded or multipart, as
 *   mail providers send it): unsubscribes at once, no cookie, no login; answers 200 text.
 * - `GET /u/:token`: a confirmation page with one button. It changes nothing: link scanners and
 *   mail previews open every link.
 * - `POST /u/:token` from that button (CSRF double-submit token, as on the retry pages): the done page.
 *
 * The token (see UnsubscribeLinks) is the capability; pages are `no-store`, `noindex`, no referrer.
 */
export async function unsubscribeRoutes(app: FastifyInstance, deps: UnsubscribeRouteDeps): Promise<void> {
  const limit = deps.rateLimit ?? { max: 60, timeWindowMs: 60_000 };
  await app.register(
    async (scope) => {
      await scope.register(cookie);
      await scope.register(helmet, {
        global: true,
        contentSecurityPolicy: {
          useDefaults: false,
          directives: {
            defaultSrc: ["'none'"],
            styleSrc: ["'self'"],
            imgSrc: ["'self'"],
            formAction: ["'self'"],
            frameAncestors: ["'none'"],
            baseUri: ["'none'"],
          },
        },
        referrerPolicy: { policy: 'no-referrer' },
        frameguard: { action: 'deny' },
      });
      await scope.register(rateLimit, {
        global: true,
        max: limit.max,
        timeWindow: limit.timeWindowMs,
        // Per link, not per IP: mail providers send every recipient's one-click POST from a few
        // addresses. A forged token costs one HMAC and no query, so floods of them are cheap.
        keyGenerator: (request) => (request.params as { token?: string }).token ?? request.ip,
      });
      await scope.register(formbody, { bodyLimit });
      // Some providers send the one-click POST as multipart/form-data (RFC 8058 allows both).
      scope.addContentTypeParser('multipart/form-data', { parseAs: 'string', bodyLimit }, (request, body, done) => {
        done(null, parseMultipart(String(body), request.headers['content-type'] ?? ''));
      });
      scope.addHook('onSend', async (_request, reply) => {
        reply.header('cache-control', 'no-store');
        reply.header('x-robots-tag', 'noindex, nofollow');
      });
      scope.setErrorHandler((error, request, reply) => errorPage(deps, request, reply, error));
      scope.setNotFoundHandler((request, reply) => invalidPage(deps, request, reply));

      scope.get<TokenParams>('/:token', async (request, reply) => {
        const messageId = deps.links.verify(request.params.token);
        const target = messageId ? await loadUnsubscribeTarget(deps.db, messageId) : undefined;
        if (!target) return invalidPage(deps, request, reply);
        if (target.alreadySuppressed) return donePage(deps, reply, target, 'already');
        return confirmPage(deps, request, reply, target, 200);
      });

      scope.post<TokenParams>('/:token', async (request, reply) => {
        const { token } = request.params;
        const form = formFields(request.body);
        const messageId = deps.links.verify(token);
        if (form['List-Unsubscribe'] === 'One-Click') {
          // The mail provider's server, not a browser: plain text, no page.
          const result = messageId ? await unsubscribeEmail(deps, messageId, 'email_one_click') : undefined;
          const locale = resolvePageLocale(result?.target?.locale);
          if (!result || result.outcome === 'unknown_message') {
            return reply
              .status(404)
              .type('text/plain; charset=utf-8')
              .send(pageStringsFor(locale).unsubscribe.invalidTitle);
          }
          return reply.status(200).type('text/plain; charset=utf-8').send(pageStringsFor(locale).unsubscribe.oneClick);
        }
        const target = messageId ? await loadUnsubscribeTarget(deps.db, messageId) : undefined;
        if (!messageId || !target) return invalidPage(deps, request, reply);
        if (!csrfOf(deps).valid(request, token, form.csrf)) {
          // Usually a browser that arrived without our cookie: ask again, with a fresh token.
          return confirmPage(deps, request, reply, target, 403);
        }
        const result = await unsubscribeEmail(deps, messageId, 'email_page');
        return donePage(deps, reply, result.target ?? target, result.outcome === 'unsubscribed' ? 'done' : 'already');
      });
    },
    { prefix: '/u' },
  );
}

type TokenParams = { Params: { token: string } };

function confirmPage(
  deps: UnsubscribeRouteDeps,
  request: FastifyRequest<TokenParams>,
  reply: FastifyReply,
  target: UnsubscribeTarget,
  status: 200 | 403,
) {
  const locale = resolvePageLocale(target.locale);
  const t = pageStringsFor(locale).unsubscribe;
  const { token } = request.params;
  const values = { shop: deps.shopName, address: maskAddress(target.address) ?? '' };
  return send(deps, reply, status, 'unsubscribe-confirm', locale, {
    title: t.confirmTitle,
    shopName: deps.shopName,
    tone: status === 403 ? 'warn' : 'info',
    paragraphs: [fillIn(t.confirmText, values), ...(status === 403 ? [t.retryText] : [])],
    formAction: `/u/${token}`,
    csrf: csrfOf(deps).issue(request, reply, token),
    button: t.confirmButton,
    hint: t.confirmHint,
  });
}

function donePage(
  deps: UnsubscribeRouteDeps,
  reply: FastifyReply,
  target: UnsubscribeTarget,
  kind: 'done' | 'already',
) {
  const locale = resolvePageLocale(target.locale);
  const t = pageStringsFor(locale).unsubscribe;
  const values = { shop: deps.shopName, address: maskAddress(target.address) ?? '' };
  return send(deps, reply, 200, 'unsubscribe-done', locale, {
    title: kind === 'done' ? t.doneTitle : t.alreadyTitle,
    shopName: deps.shopName,
    tone: 'success',
    paragraphs: [fillIn(kind === 'done' && target.address ? t.doneText : t.alreadyText, values)],
  });
}

function invalidPage(deps: UnsubscribeRouteDeps, request: FastifyRequest, reply: FastifyReply) {
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStringsFor(locale).unsubscribe;
  return send(deps, reply, 404, 'unsubscribe-done', locale, {
    title: t.invalidTitle,
    shopName: deps.shopName,
    tone: 'warn',
    paragraphs: [t.invalidText],
  });
}

function errorPage(deps: UnsubscribeRouteDeps, request: FastifyRequest, reply: FastifyReply, error: unknown) {
  const status = httpStatusOf(error);
  if (status >= 500) request.log.error({ err: error }, 'unsubscribe page failed');
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStringsFor(locale).unsubscribe;
  const text = status >= 500 ? fillIn(t.errorText, { reference: String(request.id) }) : t.invalidText;
  try {
    return send(deps, reply, status, 'unsubscribe-done', locale, {
      title: status >= 500 ? t.errorTitle : t.invalidTitle,
      shopName: deps.shopName,
      tone: 'error',
      paragraphs: [text],
    });
  } catch (err) {
    request.log.error({ err }, 'unsubscribe error page failed to render');
    return reply.status(status).type('text/plain; charset=utf-8').send(text);
  }
}

function send<P extends UnsubscribePageName>(
  deps: UnsubscribeRouteDeps,
  reply: FastifyReply,
  status: number,
  page: P,
  locale: PageLocale,
  data: UnsubscribePageData[P],
): FastifyReply {
  return reply
    .status(status)
    .type('text/html; charset=utf-8')
    .send(deps.pages.render(page, locale, data));
}

type FormFields = Partial<Record<string, string>>;

function formFields(body: unknown): FormFields {
  if (typeof body !== 'object' || body === null) return {};
  const fields: FormFields = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === 'string') fields[key] = first;
  }
  return fields;
}

/** The text fields of a small multipart/form-data body (files are not expected here and ignored). */
export function parseMultipart(body: string, contentType: string): FormFields {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const marker = boundary?.[1] ?? boundary?.[2];
  const fields: FormFields = {};
  if (!marker) return fields;
  for (const part of body.split(`--${marker}`)) {
    const split = part.indexOf('\r\n\r\n');
    if (split < 0) continue;
    const headers = part.slice(0, split);
    const name = /content-disposition:[^\r\n]*\bname="([^"]*)"/i.exec(headers)?.[1];
    if (!name || /\bfilename=/i.test(headers)) continue;
    fields[name] ??= part.slice(split + 4).replace(/\r\n$/, '');
  }
  return fields;
}

/** The pages' CSRF: own cookie and path, and a purpose that makes retry-page values worthless here. */
function csrfOf(deps: UnsubscribeRouteDeps): PageCsrf {
  return new PageCsrf({
    secret: deps.secret,
    publicUrl: deps.publicUrl,
    cookie: 'recoup_u_csrf',
    path: '/u/',
    purpose: 'unsubscribe.',
  });
}
