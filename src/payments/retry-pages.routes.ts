import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PhoneNumberType } from '../domain/phone-numbers.js';
import { RecoupError } from '../platform/errors.js';
import { PageCsrf } from '../http/page-csrf.js';
import type { Notice, PageRenderer } from '../http/pages/page-renderer.js';
import { fillIn, pageStringsFor, resolvePageLocale, type PageLocale } from '../http/pages/page-strings.js';
import { sendProblem } from '../http/problem.js';
import type { FreshLinkResult } from '../recoveries/fresh-link.js';
import { refreshAttempt } from './attempt-status.js';
import { initiatePayment } from './initiate-payment.js';
import type { PaymentNextAction } from './payment-gateway.js';
import { attemptIdPattern, attemptPage } from './retry-attempt-page.js';
import { csrfField, formFields, validateForm } from './retry-form.js';
import {
  afterFailure,
  continuePage,
  forbiddenPage,
  invalidPage,
  message,
  retryPage,
  sendErrorPage,
  sendPage,
  statePage,
  type RetryPageContext,
} from './retry-page-views.js';
import { loadRetryLink, recordClick, type RetryDeps, type RetryView } from './retry-session.js';
import { shopPaymentPage } from './platform-link.js';

export interface RetryPageDeps {
  /** The retry session's domain logic: loadRetryLink, recordClick, initiatePayment, refreshAttempt. */
  retry: RetryDeps;
  /** Key of the CSRF tokens (HMAC-SHA256), e.g. RECOUP_SECRET. Every server process must share it. */
  secret: string;
  /** `PageRenderer.load(path.join(templatesDir, 'pages'))`. */
  pages: PageRenderer;
  /** Requests per client IP across `/r/*`. Default 60 per minute. */
  rateLimit?: { max: number; timeWindowMs: number };
  /** Sends a fresh link for an expired one (`sendFreshLink`). Unset: the expired page offers no button. */
  freshLink?: (messageId: string) => Promise<FreshLinkResult>;
  /**
   * Origins a form POST may end up on after a redirect (the gateways' hosted pages, e.g.
   * `https://checkout.stripe.com`), for the CSP `form-action`. recoup's own PUBLIC_URL origin is
   * always allowed (the sandbox's hosted pages live there). Default none.
   */
  formActionOrigins?: string[];
  /**
   * Whether a shop platform's order is paid on the platform's own page (its connector's link mode
   * is `platform`, or only the platform can collect it): an open link for it shows a page that
   * leads there once a person's click is counted. Default: never.
   */
  paidOnPlatform?: (platform: string, orderId: string) => boolean;
  /** The kinds of phone number the form takes (SMS_NUMBER_TYPES). Default: mobile and fixed-line ones. */
  smsNumberTypes?: readonly PhoneNumberType[] | undefined;
}

/** The deps plus what registration derived from them. */
type Ctx = RetryPageDeps & RetryPageContext;

const defaultRateLimit = { max: 60, timeWindowMs: 60_000 };

const stripeSources = {
  script: ['https://js.stripe.com', 'https://*.js.stripe.com'],
  frame: ['https://js.stripe.com', 'https://*.js.stripe.com', 'https://hooks.stripe.com'],
  connect: ['https://api.stripe.com'],
  img: ['https://*.stripe.com'],
};

/**
 * The customer-facing retry pages behind the link in every reminder, in one encapsulated
 * plugin (its body parser, cookies, security headers, rate limit and error pages stay inside):
 *
 * - `GET /r/:token`: the page; it writes nothing (link scanners and prefetchers GET every link);
 * - `POST /r/:token/click`: the page's script reporting that a person opened it: the click
 *   (once per message; 204, or 403 problem JSON without the page's CSRF token);
 * - `POST /r/:token`: confirm details, pick a method, (re-)initiate the payment, then 303 to
 *   the gateway, the QR page or the card page, or re-render the form with what went wrong;
 *   a click too, for browsers without JavaScript;
 * - `POST /r/:token/continue`: the click, then 303 to the shop's own payment page (orders paid
 *   there; with JavaScript the page reports the click and moves on by itself);
 * - `GET /r/:token/pay/:attemptId` (WeChat Pay QR), `/card/:attemptId` (Stripe.js card form),
 *   `/return?attempt=` (gateways send the customer back here), `/done?attempt=`: the attempt's page;
 * - `GET /r/:token/status/:attemptId`: `{ status }` for the polling script;
 * - `POST /r/:token/fresh-link`: a new link for an expired one, to the contact on file;
 * - `GET /assets/recoup.css`, `/assets/retry.js`: the pages' only assets.
 *
 * Forms carry a stateless double-submit CSRF token: an httpOnly `recoup_csrf` cookie holds a
 * random nonce, the form `HMAC(secret, token + '.' + nonce)`. Every page has a strict CSP
 * (scripts only from recoup; the card page alone also allows Stripe.js), no referrer (the
 * token is in the URL), and `Cache-Control: no-store`.
 */
export async function retryPageRoutes(app: FastifyInstance, deps: RetryPageDeps): Promise<void> {
  if (!deps.secret) throw new RecoupError('config', 'The retry pages need a secret for their CSRF tokens');
  const formAction = ["'self'", ...formActionOrigins(deps)];
  const limit = deps.rateLimit ?? defaultRateLimit;
  const ctx: Ctx = {
    ...deps,
    cardCsp: stripeCsp(formAction),
    csrf: new PageCsrf({
      secret: deps.secret,
      publicUrl: deps.retry.publicUrl,
      cookie: 'recoup_csrf',
      path: '/r/',
      purpose: '',
    }),
  };

  await app.register(async (scope) => {
    await scope.register(cookie);
    await scope.register(helmet, {
      global: true,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          formAction,
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
        },
      },
      referrerPolicy: { policy: 'no-referrer' },
      frameguard: { action: 'deny' },
    });

    for (const name of ['recoup.css', 'retry.js']) {
      scope.get(`/assets/${name}`, async (request, reply) => {
        const asset = deps.pages.asset(name);
        if (!asset) throw new RecoupError('not_found', `No asset ${name}`);
        reply.header('cache-control', 'public, max-age=86400').header('etag', asset.etag).type(asset.contentType);
        if (request.headers['if-none-match'] === asset.etag) return reply.status(304).send();
        return reply.send(asset.body);
      });
    }

    await scope.register(
      async (r) => {
        await r.register(rateLimit, {
          global: true,
          max: limit.max,
          timeWindow: limit.timeWindowMs,
        });
        await r.register(formbody, { bodyLimit: 8_192 });
        r.addHook('onSend', async (_request, reply) => {
          reply.header('cache-control', 'no-store');
          reply.header('x-robots-tag', 'noindex, nofollow');
        });
        r.setErrorHandler((error, request, reply) => sendErrorPage(ctx, request, reply, error));
        r.setNotFoundHandler((request, reply) => invalidPage(ctx, request, reply));
        routes(r, ctx);
      },
      { prefix: '/r' },
    );
  });
}

type TokenParams = { Params: { token: string } };
type AttemptParams = { Params: { token: string; attemptId: string } };
type AttemptQuery = { Params: { token: string }; Querystring: { attempt?: string } };

function routes(r: FastifyInstance, deps: Ctx): void {
  r.get<TokenParams>('/:token', async (request, reply) => {
    const { token } = request.params;
    const state = await loadRetryLink(deps.retry, token);
    if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
    const shopPage = await shopPageOf(deps, state.view);
    if (shopPage) return continuePage(deps, request, reply, state.view, shopPage);
    return retryPage(deps, request, reply, { view: state.view, status: 200 });
  });

  r.post<TokenParams>('/:token/click', async (request, reply) => {
    const { token } = request.params;
    if (!deps.csrf.valid(request, token, formFields(request.body)[csrfField])) {
      return sendProblem(request, reply, new RecoupError('forbidden', "A click is reported only by the link's page"));
    }
    const state = await loadRetryLink(deps.retry, token);
    // Paid or closed since the page was shown: nothing left to count.
    if (state.kind === 'open') await countClick(deps, request, state.view);
    return reply.status(204).send();
  });

  r.post<TokenParams>('/:token/continue', async (request, reply) => {
    const { token } = request.params;
    if (!deps.csrf.valid(request, token, formFields(request.body)[csrfField])) {
      return forbiddenPage(deps, request, reply, token);
    }
    const state = await loadRetryLink(deps.retry, token);
    if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
    await countClick(deps, request, state.view);
    return reply.redirect((await shopPageOf(deps, state.view)) ?? `/r/${token}`, 303);
  });

  r.post<TokenParams>('/:token', async (request, reply) => {
    const { token } = request.params;
    const form = formFields(request.body);
    if (!deps.csrf.valid(request, token, form[csrfField])) return forbiddenPage(deps, request, reply, token);
    const state = await loadRetryLink(deps.retry, token);
    if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
    const { view } = state;
    // Before the payment starts, so its attempt is credited to the click.
    await countClick(deps, request, view);

    const t = pageStringsFor(resolvePageLocale(view.locale));
    const input = validateForm(form, view, t, deps.smsNumberTypes);
    if (!input.ok) {
      return retryPage(deps, request, reply, {
        view,
        status: 400,
        form: { email: form.email ?? '', phone: form.phone ?? '' },
        errors: input.errors,
        checked: input.method,
      });
    }

    const result = await initiatePayment(deps.retry, {
      token,
      method: input.method,
      email: input.email,
      phone: input.phone,
      device: /Mobi|Android|iPhone|iPad/i.test(request.headers['user-agent'] ?? '') ? 'mobile' : 'desktop',
      clientIp: request.ip,
    });
    switch (result.kind) {
      case 'next_action':
        return reply.redirect(nextActionUrl(token, result.attemptId, result.action), 303);
      case 'declined':
        return afterFailure(deps, request, reply, token, {
          category: result.category ?? 'unknown',
          code: result.code,
          method: input.method,
        });
      case 'unavailable':
      case 'previous_attempt_open': {
        const again = await loadRetryLink(deps.retry, token);
        if (again.kind !== 'open') return statePage(deps, request, reply, token, again);
        // Not a 5xx: the customer did nothing wrong, and some proxies replace 5xx pages with their own.
        return retryPage(deps, request, reply, {
          view: again.view,
          status: 200,
          notice: { tone: 'warn', text: result.kind === 'unavailable' ? t.unavailable : t.previousAttemptOpen },
          failure: null,
          checked: input.method,
        });
      }
      case 'method_not_offered':
        return retryPage(deps, request, reply, {
          view,
          status: 400,
          form: { email: form.email ?? '', phone: form.phone ?? '' },
          errors: { method: t.methodNotOffered },
          checked: null,
        });
      default:
        return statePage(deps, request, reply, token, await loadRetryLink(deps.retry, token));
    }
  });

  r.get<AttemptParams>('/:token/pay/:attemptId', async (request, reply) =>
    attemptPage(deps, request, reply, request.params.token, request.params.attemptId, 'pay'),
  );

  r.get<AttemptParams>('/:token/card/:attemptId', async (request, reply) =>
    attemptPage(deps, request, reply, request.params.token, request.params.attemptId, 'card'),
  );

  for (const path of ['/:token/return', '/:token/done'] as const) {
    r.get<AttemptQuery>(path, async (request, reply) =>
      attemptPage(deps, request, reply, request.params.token, request.query.attempt, 'done'),
    );
  }

  r.get<AttemptParams>('/:token/status/:attemptId', async (request, reply) => {
    const { token, attemptId } = request.params;
    const attempt = attemptIdPattern.test(attemptId) ? await refreshAttempt(deps.retry, token, attemptId) : undefined;
    if (!attempt) return sendProblem(request, reply, new RecoupError('not_found', 'No such payment attempt'));
    return reply.send({ status: attempt.status });
  });

  r.post<TokenParams>('/:token/fresh-link', async (request, reply) => {
    const { token } = request.params;
    const form = formFields(request.body);
    if (!deps.csrf.valid(request, token, form[csrfField])) return forbiddenPage(deps, request, reply, token);
    const state = await loadRetryLink(deps.retry, token);
    // The link works after all (e.g. a fresh link was opened meanwhile): just show the page.
    if (state.kind === 'open') return reply.redirect(`/r/${token}`, 303);
    if (state.kind !== 'expired' || !deps.freshLink) return statePage(deps, request, reply, token, state);
    const result = await deps.freshLink(state.messageId);
    const locale = resolvePageLocale(state.locale);
    const shop = deps.retry.shopName;
    const [title, text, tone] = freshLinkNotice(result, locale, shop);
    return sendPage(deps, reply, 200, 'message', locale, message(shop, title, [text], tone));
  });
}

/** A person's click (attribution only): a lost click must not block paying. */
async function countClick(deps: Ctx, request: FastifyRequest, view: RetryView): Promise<void> {
  await recordClick(deps.retry, view, request.headers['user-agent']).catch((err: unknown) =>
    request.log.warn({ err }, 'could not record a retry-link click'),
  );
}

/** The shop's own payment page, for an order paid there. */
async function shopPageOf(deps: Ctx, view: RetryView): Promise<string | undefined> {
  return deps.paidOnPlatform ? shopPaymentPage(deps.retry.db, view.orderId, deps.paidOnPlatform) : undefined;
}

/** What the page says to a fresh-link request: a title, a paragraph and the notice's tone. */
function freshLinkNotice(result: FreshLinkResult, locale: PageLocale, shop: string): [string, string, Notice['tone']] {
  const t = pageStringsFor(locale);
  switch (result.kind) {
    case 'sent':
      return [t.freshSentTitle, t.freshSentText, 'success'];
    case 'too_soon':
      return [t.freshTooSoonTitle, t.freshTooSoonText, 'info'];
    case 'quiet_hours': {
      const time = new Intl.DateTimeFormat(locale, {
        timeZone: result.timezone,
        weekday: 'short',
        hour: '2-digit',
        minute: '2-digit',
        timeZoneName: 'short',
      }).format(result.until);
      return [t.freshQuietTitle, fillIn(t.freshQuietText, { time }), 'info'];
    }
    case 'daily_limit':
      return [t.freshDailyLimitTitle, t.freshDailyLimitText, 'info'];
    case 'not_possible':
      return [t.freshNotPossibleTitle, fillIn(t.freshNotPossibleText, { shop }), 'warn'];
  }
}

function nextActionUrl(token: string, attemptId: string, action: PaymentNextAction): string {
  switch (action.type) {
    case 'redirect':
      return action.url;
    case 'qr':
      return `/r/${token}/pay/${attemptId}`;
    case 'client_secret':
      return `/r/${token}/card/${attemptId}`;
  }
}

function formActionOrigins(deps: RetryPageDeps): string[] {
  const origins = new Set<string>();
  for (const value of [deps.retry.publicUrl, ...(deps.formActionOrigins ?? [])]) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new RecoupError('config', `"${value}" is not an origin for the retry pages' form-action`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new RecoupError('config', `"${value}" is not an http(s) origin`);
    }
    origins.add(url.origin);
  }
  return [...origins];
}

function stripeCsp(formAction: string[]): string {
  return [
    "default-src 'none'",
    `script-src 'self' ${stripeSources.script.join(' ')}`,
    "style-src 'self'",
    `img-src 'self' data: ${stripeSources.img.join(' ')}`,
    `connect-src 'self' ${stripeSources.connect.join(' ')}`,
    `frame-src ${stripeSources.frame.join(' ')}`,
    `form-action ${formAction.join(' ')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}
