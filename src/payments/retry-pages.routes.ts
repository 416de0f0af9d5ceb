import { PageCsrf } from '../http/page-csrf.js';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import { sql } from 'drizzle-orm';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parsePhoneNumberWithError, type CountryCode } from 'libphonenumber-js/max';
import QRCode from 'qrcode';
import { z } from 'zod';
import { normaliseAddress } from '../addresses.js';
import { rows } from '../db/rows.js';
import { paymentMethods, type FailureCategory, type PaymentMethod } from '../domain.js';
import { RecoupError } from '../errors.js';
import { formatAmount } from '../messages/format-amount.js';
import type { PaymentNextAction } from './payment-gateway.js';
import { refreshAttempt } from './attempt-status.js';
import { initiatePayment } from './initiate-payment.js';
import type { AttemptView } from './payment-attempts.js';
import { loadRetryLink, recordClick, type RetryDeps, type RetryLinkState, type RetryView } from './retry-session.js';
import type { FreshLinkResult } from '../retry-links/fresh-link.js';
import type {
  MessagePageData,
  Notice,
  PageData,
  PageName,
  PageRenderer,
  PollData,
} from '../http/pages/page-renderer.js';
import {
  fillIn,
  localeFromAcceptLanguage,
  pageStrings,
  resolvePageLocale,
  type PageLocale,
  type PageStrings,
} from '../http/pages/page-strings.js';
import { httpStatusOf, sendProblem } from '../http/problem.js';

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
}

/** The deps plus what registration derived from them. */
type Ctx = RetryPageDeps & { cardCsp: string; csrf: PageCsrf };

const csrfField = 'csrf';
const tokenPattern = /^[A-Za-z0-9_-]{22}$/;
const attemptIdPattern = /^att_[0-9a-f]{24}$/;
const defaultRateLimit = { max: 60, timeWindowMs: 60_000 };

const emailSchema = z.email().max(254);

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
 * - `GET /r/:token`: the page (records the click, the only write a GET does);
 * - `POST /r/:token`: confirm details, pick a method, (re-)initiate the payment, then 303 to
 *   the gateway, the QR page or the card page, or re-render the form with what went wrong;
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
    // Attribution only; HEAD (link checkers) is not a click, and a lost click must not block paying.
    if (request.method === 'GET') {
      await recordClick(deps.retry, state.view, request.headers['user-agent']).catch((err: unknown) =>
        request.log.warn({ err }, 'could not record a retry-link click'),
      );
    }
    return retryPage(deps, request, reply, { view: state.view, status: 200 });
  });

  r.post<TokenParams>('/:token', async (request, reply) => {
    const { token } = request.params;
    const form = formFields(request.body);
    if (!deps.csrf.valid(request, token, form[csrfField])) return forbiddenPage(deps, request, reply, token);
    const state = await loadRetryLink(deps.retry, token);
    if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
    const { view } = state;

    const t = pageStrings[resolvePageLocale(view.locale)];
    const input = validateForm(form, view, t);
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
          method: input.method,
        });
      case 'unavailable': {
        const again = await loadRetryLink(deps.retry, token);
        if (again.kind !== 'open') return statePage(deps, request, reply, token, again);
        // Not a 5xx: the customer did nothing wrong, and some proxies replace 5xx pages with their own.
        return retryPage(deps, request, reply, {
          view: again.view,
          status: 200,
          notice: { tone: 'warn', text: t.unavailable },
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
    const t = pageStrings[locale];
    const shop = deps.retry.shopName;
    const page: Record<FreshLinkResult, [string, string, Notice['tone']]> = {
      sent: [t.freshSentTitle, t.freshSentText, 'success'],
      too_soon: [t.freshTooSoonTitle, t.freshTooSoonText, 'info'],
      not_possible: [t.freshNotPossibleTitle, fillIn(t.freshNotPossibleText, { shop }), 'warn'],
    };
    const [title, text, tone] = page[result];
    return sendPage(deps, reply, 200, 'message', locale, message(shop, title, [text], tone));
  });
}

// ---------------------------------------------------------------------------------------------
// Pages

interface RetryRender {
  view: RetryView;
  status: number;
  title?: string;
  intro?: string | null;
  notice?: Notice | null;
  /** What the customer typed (kept on errors); default: the contact on file. */
  form?: { email: string; phone: string };
  errors?: Partial<Record<'email' | 'phone' | 'method', string>>;
  /** The pre-selected method; default `view.defaultMethod`. */
  checked?: PaymentMethod | null;
  /** The failure to explain; default the order's last failure. */
  failure?: FailureCategory | null;
}

function retryPage(deps: Ctx, request: FastifyRequest, reply: FastifyReply, r: RetryRender) {
  const { view } = r;
  const locale = resolvePageLocale(view.locale);
  const t = pageStrings[locale];
  const money = (minor: number) => formatMoney(minor, view.currency, view.locale, locale);
  const { charge } = view;
  const total = money(charge.total);
  let coupon: Notice | null = null;
  if (charge.coupon) {
    const values = { code: charge.coupon.code, discount: money(charge.coupon.discountAmount), total };
    const hasDiscount = charge.coupon.discountAmount > 0;
    coupon =
      charge.coupon.status === 'applied'
        ? { tone: 'success', text: fillIn(hasDiscount ? t.couponApplied : t.couponAppliedPlain, values) }
        : { tone: 'warn', text: fillIn(hasDiscount ? t.couponExpired : t.couponExpiredPlain, values) };
  }
  const failure = r.failure !== undefined ? r.failure : (view.lastFailure?.category ?? null);
  const wanted = r.checked !== undefined ? r.checked : view.defaultMethod;
  const checked = wanted && view.methods.includes(wanted) ? wanted : (view.methods[0] ?? null);
  const errors = { email: r.errors?.email ?? null, phone: r.errors?.phone ?? null, method: r.errors?.method ?? null };
  return sendPage(deps, reply, r.status, 'retry', locale, {
    title: r.title ?? t.retryTitle,
    shopName: view.shopName,
    notice: r.notice ?? null,
    intro: r.intro ?? null,
    description: view.description,
    orderAmount: charge.total !== charge.orderAmount ? money(charge.orderAmount) : null,
    coupon,
    incentive: charge.incentiveAmount > 0 ? `−${money(charge.incentiveAmount)}` : null,
    total,
    failureReason: failure ? t.reasons[failure] : null,
    formAction: `/r/${view.token}`,
    csrf: deps.csrf.issue(request, reply, view.token),
    form: r.form ?? { email: view.contact.email ?? '', phone: view.contact.phone ?? '' },
    errors,
    hasErrors: Boolean(errors.email || errors.phone || errors.method),
    methods: view.methods.map((code) => ({ code, title: t.methods[code], checked: code === checked })),
    payLabel: fillIn(t.payButton, { amount: total }),
  });
}

/** The "payment failed, try another method" page: the form again, another method pre-selected. */
async function afterFailure(
  deps: Ctx,
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  failed: { category: FailureCategory; method: string | null },
) {
  const state = await loadRetryLink(deps.retry, token);
  if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
  const { view } = state;
  const t = pageStrings[resolvePageLocale(view.locale)];
  return retryPage(deps, request, reply, {
    view,
    status: 200,
    title: t.failedTitle,
    intro: t.failedIntro,
    failure: failed.category,
    checked: view.methods.find((m) => m !== failed.method) ?? view.methods[0] ?? null,
  });
}

/** Pages for a link that is not open: no order data, only what the state allows. */
function statePage(deps: Ctx, request: FastifyRequest, reply: FastifyReply, token: string, state: RetryLinkState) {
  const shop = deps.retry.shopName;
  switch (state.kind) {
    case 'open':
      return retryPage(deps, request, reply, { view: state.view, status: 200 });
    case 'invalid':
      return invalidPage(deps, request, reply);
    case 'completed': {
      const locale = resolvePageLocale(state.locale);
      const t = pageStrings[locale];
      return sendPage(
        deps,
        reply,
        200,
        'message',
        locale,
        message(shop, t.completedTitle, [t.completedText], 'success'),
      );
    }
    case 'closed': {
      const locale = resolvePageLocale(state.locale);
      const t = pageStrings[locale];
      return sendPage(deps, reply, 410, 'message', locale, message(shop, t.closedTitle, [t.closedText], 'info'));
    }
    case 'expired': {
      const locale = resolvePageLocale(state.locale);
      const t = pageStrings[locale];
      const data = message(shop, t.expiredTitle, [t.expiredText], 'info');
      if (deps.freshLink) {
        data.action = {
          formAction: `/r/${token}/fresh-link`,
          csrf: deps.csrf.issue(request, reply, token),
          label: t.freshLinkButton,
          hint: t.freshLinkHint,
        };
      } else {
        data.paragraphs.push(fillIn(t.expiredNoFreshLink, { shop }));
      }
      return sendPage(deps, reply, 410, 'message', locale, data);
    }
  }
}

function invalidPage(deps: Ctx, request: FastifyRequest, reply: FastifyReply) {
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStrings[locale];
  return sendPage(
    deps,
    reply,
    404,
    'message',
    locale,
    message(deps.retry.shopName, t.invalidTitle, [t.invalidText], 'warn'),
  );
}

function forbiddenPage(deps: Ctx, request: FastifyRequest, reply: FastifyReply, token: string) {
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStrings[locale];
  const data = message(deps.retry.shopName, t.forbiddenTitle, [t.forbiddenText], 'warn');
  if (tokenPattern.test(token)) data.link = { href: `/r/${token}`, label: t.backToPayment };
  return sendPage(deps, reply, 403, 'message', locale, data);
}

/** An attempt's page: QR code, card form, success, "failed, try another method" or "confirming". */
async function attemptPage(
  deps: Ctx,
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  attemptId: string | undefined,
  from: 'pay' | 'card' | 'done',
) {
  const attempt =
    attemptId && attemptIdPattern.test(attemptId) ? await refreshAttempt(deps.retry, token, attemptId) : undefined;
  if (!attempt) {
    const state = await loadRetryLink(deps.retry, token);
    // A working link with an attempt that is not its own: nothing to show about either.
    return state.kind === 'open' ? invalidPage(deps, request, reply) : statePage(deps, request, reply, token, state);
  }
  const info = await attemptInfo(deps, attempt);
  const locale = resolvePageLocale(info?.locale ?? deps.retry.defaultLocale);
  const t = pageStrings[locale];
  const shop = deps.retry.shopName;
  const amount = info ? formatMoney(info.amount, info.currency, info.locale, locale) : null;

  if (attempt.status === 'succeeded') {
    return sendPage(deps, reply, 200, 'success', locale, {
      title: t.successTitle,
      shopName: shop,
      text: amount ? fillIn(t.successText, { amount }) : t.completedText,
      note: t.successNote,
    });
  }
  if (attempt.status === 'failed') {
    return afterFailure(deps, request, reply, token, {
      category: attempt.failureCategory ?? 'unknown',
      method: attempt.method,
    });
  }
  if (attempt.status === 'cancelled') {
    const state = await loadRetryLink(deps.retry, token);
    if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
    return retryPage(deps, request, reply, {
      view: state.view,
      status: 200,
      notice: { tone: 'info', text: t.cancelledAttempt },
      failure: null,
      checked: paymentMethodOf(attempt.method),
    });
  }

  const action = attempt.nextAction;
  const done = `/r/${token}/done?attempt=${attempt.attemptId}`;
  const poll: PollData = { statusUrl: `/r/${token}/status/${attempt.attemptId}`, doneUrl: done, failedUrl: done };
  if (action?.type === 'qr' && from !== 'card') {
    if (new Date(action.expiresAt) <= deps.retry.clock.now()) {
      const state = await loadRetryLink(deps.retry, token);
      if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
      return retryPage(deps, request, reply, {
        view: state.view,
        status: 200,
        notice: { tone: 'warn', text: t.qrExpired },
        failure: null,
        checked: 'wechat_pay',
      });
    }
    // Rendered afresh on every view: WeChat Pay codes expire, and nothing about them is cached.
    const svg = await QRCode.toString(action.payload, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    const shown = amount ?? '';
    return sendPage(deps, reply, 200, 'qr', locale, {
      title: t.qrTitle,
      shopName: shop,
      notice: from === 'done' ? { tone: 'info', text: t.qrNotYet } : null,
      description: info?.description ?? '',
      amount: shown,
      qrImage: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`,
      qrAlt: fillIn(t.qrAlt, { amount: shown }),
      steps: t.qrSteps.map((step) => fillIn(step, { amount: shown })),
      phoneHint: t.qrPhoneHint,
      poll,
      checkUrl: done,
      otherMethodUrl: `/r/${token}`,
    });
  }
  if (action?.type === 'client_secret' && action.publishableKey && from === 'card') {
    // The card page loads Stripe.js: its CSP (and only its) allows Stripe's origins.
    reply.header('content-security-policy', deps.cardCsp);
    return sendPage(deps, reply, 200, 'card', locale, {
      title: t.cardTitle,
      shopName: shop,
      intro: fillIn(t.cardIntro, { amount: amount ?? '' }),
      publishableKey: action.publishableKey,
      clientSecret: action.clientSecret,
      returnUrl: `${deps.retry.publicUrl}/r/${token}/return?attempt=${attempt.attemptId}`,
      otherMethodUrl: `/r/${token}`,
    });
  }
  return sendPage(deps, reply, 200, 'pending', locale, {
    title: t.pendingTitle,
    shopName: shop,
    text: t.pendingText,
    amount,
    poll,
    checkUrl: done,
  });
}

function sendPage<P extends PageName>(
  deps: Ctx,
  reply: FastifyReply,
  status: number,
  page: P,
  locale: PageLocale,
  data: PageData[P],
): FastifyReply {
  return reply
    .status(status)
    .type('text/html; charset=utf-8')
    .send(deps.pages.render(page, locale, data));
}

function message(shopName: string, title: string, paragraphs: string[], tone: Notice['tone']): MessagePageData {
  return { title, shopName, tone, paragraphs, action: null, link: null };
}

function sendErrorPage(deps: Ctx, request: FastifyRequest, reply: FastifyReply, error: unknown) {
  const status = httpStatusOf(error);
  if (request.routeOptions.url?.endsWith('/status/:attemptId')) {
    return sendProblem(
      request,
      reply,
      status === 429 ? new RecoupError('rate_limited', 'Too many requests; slow down') : error,
    );
  }
  if (status >= 500) request.log.error({ err: error }, 'retry page failed');
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStrings[locale];
  const [code, title, text] =
    status === 429
      ? [429, t.rateLimitedTitle, t.rateLimitedText]
      : status >= 400 && status < 500
        ? [status, t.badRequestTitle, t.badRequestText]
        : [500, t.errorTitle, fillIn(t.errorText, { reference: String(request.id) })];
  try {
    return sendPage(deps, reply, code, 'message', locale, message(deps.retry.shopName, title, [text], 'error'));
  } catch (err) {
    request.log.error({ err }, 'error page failed to render');
    return reply.status(code).type('text/plain; charset=utf-8').send(text);
  }
}

// ---------------------------------------------------------------------------------------------
// Form, CSRF and helpers

type FormFields = Partial<Record<string, string>>;

/** The form's fields as single strings (a repeated field counts by its first value). */
function formFields(body: unknown): FormFields {
  if (typeof body !== 'object' || body === null) return {};
  const fields: FormFields = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === 'string') fields[key] = first;
  }
  return fields;
}

type FormResult =
  | { ok: true; email: string | null; phone: string | null; method: PaymentMethod }
  | { ok: false; errors: Partial<Record<'email' | 'phone' | 'method', string>>; method: PaymentMethod | null };

/** Empty email or phone means "keep what is on file"; a new email is stored normalised, a new phone in E.164. */
function validateForm(form: FormFields, view: RetryView, t: PageStrings): FormResult {
  const errors: Partial<Record<'email' | 'phone' | 'method', string>> = {};
  const emailInput = (form.email ?? '').trim();
  let email: string | null = null;
  if (emailInput) {
    if (emailSchema.safeParse(emailInput).success) email = normaliseAddress('email', emailInput);
    else errors.email = t.emailInvalid;
  }
  const phoneInput = (form.phone ?? '').trim();
  let phone: string | null = null;
  if (phoneInput) {
    const parsed = normalisePhone(phoneInput, defaultCountry(view));
    if (parsed.ok) phone = parsed.e164;
    else errors.phone = parsed.needsCountry ? t.phoneNeedsCountry : t.phoneInvalid;
  }
  const method = paymentMethodOf(form.method ?? null);
  if (!method) errors.method = t.methodRequired;
  else if (!view.methods.includes(method)) errors.method = t.methodNotOffered;
  if (errors.email || errors.phone || errors.method || !method) return { ok: false, errors, method };
  return { ok: true, email, phone, method };
}

function normalisePhone(
  input: string,
  country: CountryCode | undefined,
): { ok: true; e164: string } | { ok: false; needsCountry: boolean } {
  if (input.length > 32) return { ok: false, needsCountry: false };
  try {
    const number = parsePhoneNumberWithError(input, country);
    return number.isValid() ? { ok: true, e164: number.number } : { ok: false, needsCountry: false };
  } catch (err) {
    const code = err instanceof Error ? err.message : '';
    return { ok: false, needsCountry: code === 'INVALID_COUNTRY' };
  }
}

/** A number typed without +country is read in the country of the number on file, else of the locale. */
function defaultCountry(view: RetryView): CountryCode | undefined {
  if (view.contact.phone) {
    try {
      const country = parsePhoneNumberWithError(view.contact.phone).country;
      if (country) return country;
    } catch {
      // An odd number on file: fall back to the locale.
    }
  }
  try {
    const region = new Intl.Locale(view.locale.replaceAll('_', '-').replace(/[.@].*$/, '')).maximize().region;
    return region && /^[A-Z]{2}$/.test(region) ? (region as CountryCode) : undefined;
  } catch {
    return undefined;
  }
}

function paymentMethodOf(value: string | null): PaymentMethod | null {
  return paymentMethods.find((m) => m === value) ?? null;
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

/** Money in the customer's locale, or the page's when the stored locale is not one Intl knows. */
function formatMoney(minor: number, currency: string, customerLocale: string, pageLocale: PageLocale): string {
  try {
    return formatAmount(minor, currency, customerLocale);
  } catch {
    return formatAmount(minor, currency, pageLocale);
  }
}

/** What an attempt's pages show besides its status: amount charged, description, the customer's locale. */
async function attemptInfo(
  deps: Ctx,
  attempt: AttemptView,
): Promise<{ amount: number; currency: string; description: string; locale: string } | undefined> {
  const [row] = await rows<{ amount: string; currency: string; description: string | null; locale: string | null }>(
    deps.retry.db,
    sql`select a.amount::text as amount, a.currency, o.description, c.locale
        from payment_attempts a
        join orders o on o.id = a.order_id
        join customers c on c.id = o.customer_id
        where a.id = ${attempt.attemptId} and a.order_id = ${attempt.orderId}`,
  );
  if (!row) return undefined;
  return {
    amount: Number(row.amount),
    currency: row.currency,
    description: row.description ?? '',
    locale: row.locale ?? deps.retry.defaultLocale,
  };
}
