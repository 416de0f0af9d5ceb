import type { FastifyReply, FastifyRequest } from 'fastify';
import { displayEmail } from '../domain/addresses.js';
import type { FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { RecoupError } from '../platform/errors.js';
import type { PageCsrf } from '../http/page-csrf.js';
import type { MessagePageData, Notice, PageData, PageName, PageRenderer } from '../http/pages/page-renderer.js';
import {
  fillIn,
  localeFromAcceptLanguage,
  pageStringsFor,
  resolvePageLocale,
  type PageLocale,
  type PageStrings,
} from '../http/pages/page-strings.js';
import { httpStatusOf, sendProblem } from '../http/problem.js';
import { formatAmount } from '../platform/format-amount.js';
import { failureDetail } from '../recoveries/classify-failure.js';
import type { FreshLinkResult } from '../recoveries/fresh-link.js';
import { examplePhone, likelyCountry } from './method-choice.js';
import { loadRetryLink, type RetryDeps, type RetryLinkState, type RetryView } from './retry-session.js';

/** What the retry pages render with: the retry session, the templates, the CSRF tokens, the card page's CSP. */
export interface RetryPageContext {
  retry: RetryDeps;
  pages: PageRenderer;
  csrf: PageCsrf;
  /** The card page's CSP: the pages' own plus Stripe.js. */
  cardCsp: string;
  /** Sends a fresh link for an expired one. Unset: the expired page offers no button. */
  freshLink?: ((messageId: string) => Promise<FreshLinkResult>) | undefined;
}

const tokenPattern = /^[A-Za-z0-9_-]{22}$/;

export interface RetryRender {
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
  failure?: { category: FailureCategory; code: string | null } | null;
}

/** The retry form: the order, its total and what failed, contact details and the methods on offer. */
export function retryPage(deps: RetryPageContext, request: FastifyRequest, reply: FastifyReply, r: RetryRender) {
  const { view } = r;
  const locale = resolvePageLocale(view.locale);
  const t = pageStringsFor(locale);
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
  const failure = r.failure !== undefined ? r.failure : view.lastFailure;
  const wanted = r.checked !== undefined ? r.checked : view.defaultMethod;
  const checked = wanted && view.methods.includes(wanted) ? wanted : null;
  // Phone wording carries `{example}`: a number of the customer's country, not always a Chinese one.
  const example = { example: examplePhone(view.country, likelyCountry(locale)) };
  const errors = {
    email: r.errors?.email ?? null,
    phone: r.errors?.phone ? fillIn(r.errors.phone, example) : null,
    method: r.errors?.method ?? null,
  };
  const items = view.items.map((item) => ({
    name: item.name,
    quantity: item.quantity,
    amount: money(item.amount),
    imageUrl: item.image_url && imageOrigin(item.image_url) ? item.image_url : null,
  }));
  allowImages(
    reply,
    items.flatMap((item) => (item.imageUrl ? [imageOrigin(item.imageUrl)!] : [])),
  );
  return sendPage(deps, reply, r.status, 'retry', locale, {
    title: r.title ?? t.retryTitle,
    shopName: view.shopName,
    notice: r.notice ?? null,
    intro: r.intro ?? null,
    description: view.description,
    items,
    orderAmount: charge.total !== charge.orderAmount ? money(charge.orderAmount) : null,
    coupon,
    incentive: charge.incentiveAmount > 0 ? `−${money(charge.incentiveAmount)}` : null,
    total,
    failureReason: failure ? failureReason(t, failure.category, failure.code) : null,
    formAction: `/r/${view.token}`,
    csrf: deps.csrf.issue(request, reply, view.token),
    clickUrl: `/r/${view.token}/click`,
    // The address on file as its owner writes it (`bücher.de`, not `xn--bcher-kva.de`).
    form: r.form ?? {
      email: view.contact.email ? displayEmail(view.contact.email) : '',
      phone: view.contact.phone ?? '',
    },
    phoneHint: fillIn(t.phoneHint, example),
    errors,
    hasErrors: Boolean(errors.email || errors.phone || errors.method),
    methods: view.methods.map((code) => ({ code, title: t.methods[code], checked: code === checked })),
    payLabel: fillIn(t.payButton, { amount: total }),
  });
}

/** The failure in customer language: what its code tells (an expired card), else its category. */
function failureReason(t: PageStrings, category: FailureCategory, code: string | null): string {
  const detail = failureDetail(category, code);
  return detail ? t.reasonDetails[detail] : t.reasons[category];
}

/**
 * The page of an open link whose order is paid on the shop's own page (`shopPage`): it moves on
 * there once it has reported the click, or, without JavaScript, once the customer presses its button.
 */
export function continuePage(
  deps: RetryPageContext,
  request: FastifyRequest,
  reply: FastifyReply,
  view: RetryView,
  shopPage: string,
) {
  const locale = resolvePageLocale(view.locale);
  const t = pageStringsFor(locale);
  // The button's POST is redirected to the shop's page, and form-action covers redirects too.
  const origin = new URL(shopPage).origin;
  if (/^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/.test(origin)) extendCsp(reply, 'form-action', [origin]);
  return sendPage(deps, reply, 200, 'continue', locale, {
    title: t.continueTitle,
    shopName: view.shopName,
    text: fillIn(t.continueText, { shop: view.shopName }),
    formAction: `/r/${view.token}/continue`,
    csrf: deps.csrf.issue(request, reply, view.token),
    label: t.continueButton,
    clickUrl: `/r/${view.token}/click`,
    continueUrl: shopPage,
  });
}

/**
 * The origin of a cart line's picture when the page may show it: https, and a host that can stand in
 * a CSP source list as it is. Other addresses (not from the event schema, e.g. older rows) are left out.
 */
function imageOrigin(url: string): string | undefined {
  if (!URL.canParse(url)) return undefined;
  const { protocol, origin } = new URL(url);
  return protocol === 'https:' && /^https:\/\/[a-z0-9.-]+(:\d{1,5})?$/.test(origin) ? origin : undefined;
}

/**
 * Lets this response load the pictures of its cart lines: their origins join the `img-src` of the
 * CSP the retry pages send (nothing else changes, and other pages keep recoup's own images only).
 */
function allowImages(reply: FastifyReply, origins: string[]): void {
  extendCsp(reply, 'img-src', origins);
}

/** Adds `origins` to one directive of the CSP this response carries; the rest stays as it is. */
function extendCsp(reply: FastifyReply, directive: 'img-src' | 'form-action', origins: string[]): void {
  const csp = reply.getHeader('content-security-policy');
  if (origins.length === 0 || typeof csp !== 'string') return;
  const sources = [...new Set(origins)].join(' ');
  const name = new RegExp(`^\\s*${directive}\\b`);
  reply.header(
    'content-security-policy',
    csp
      .split(';')
      .map((part) => (name.test(part) ? `${part.trimEnd()} ${sources}` : part))
      .join(';'),
  );
}

/** The "payment failed, try another method" page: the form again, another method pre-selected. */
export async function afterFailure(
  deps: RetryPageContext,
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  failed: { category: FailureCategory; code: string | null; method: string | null },
) {
  const state = await loadRetryLink(deps.retry, token);
  if (state.kind !== 'open') return statePage(deps, request, reply, token, state);
  const { view } = state;
  const t = pageStringsFor(resolvePageLocale(view.locale));
  return retryPage(deps, request, reply, {
    view,
    status: 200,
    title: t.failedTitle,
    intro: t.failedIntro,
    failure: { category: failed.category, code: failed.code },
    checked: view.methods.find((m) => m !== failed.method) ?? view.methods[0] ?? null,
  });
}

/** Pages for a link that is not open: no order data, only what the state allows. */
export function statePage(
  deps: RetryPageContext,
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  state: RetryLinkState,
) {
  const shop = deps.retry.shopName;
  switch (state.kind) {
    case 'open':
      return retryPage(deps, request, reply, { view: state.view, status: 200 });
    case 'invalid':
      return invalidPage(deps, request, reply);
    case 'completed': {
      const locale = resolvePageLocale(state.locale);
      const t = pageStringsFor(locale);
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
      const t = pageStringsFor(locale);
      return sendPage(deps, reply, 410, 'message', locale, message(shop, t.closedTitle, [t.closedText], 'info'));
    }
    case 'expired': {
      const locale = resolvePageLocale(state.locale);
      const t = pageStringsFor(locale);
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

export function invalidPage(deps: RetryPageContext, request: FastifyRequest, reply: FastifyReply) {
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStringsFor(locale);
  return sendPage(
    deps,
    reply,
    404,
    'message',
    locale,
    message(deps.retry.shopName, t.invalidTitle, [t.invalidText], 'warn'),
  );
}

export function forbiddenPage(deps: RetryPageContext, request: FastifyRequest, reply: FastifyReply, token: string) {
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStringsFor(locale);
  const data = message(deps.retry.shopName, t.forbiddenTitle, [t.forbiddenText], 'warn');
  if (tokenPattern.test(token)) data.link = { href: `/r/${token}`, label: t.backToPayment };
  return sendPage(deps, reply, 403, 'message', locale, data);
}

export function sendPage<P extends PageName>(
  deps: RetryPageContext,
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

export function message(shopName: string, title: string, paragraphs: string[], tone: Notice['tone']): MessagePageData {
  return { title, shopName, tone, paragraphs, action: null, link: null };
}

/** The error handler's page; the scripts' own routes (status polling, the click report) get problem JSON instead. */
export function sendErrorPage(deps: RetryPageContext, request: FastifyRequest, reply: FastifyReply, error: unknown) {
  const status = httpStatusOf(error);
  const route = request.routeOptions.url ?? '';
  if (route.endsWith('/status/:attemptId') || route.endsWith('/:token/click')) {
    return sendProblem(
      request,
      reply,
      status === 429 ? new RecoupError('rate_limited', 'Too many requests; slow down') : error,
    );
  }
  if (status >= 500) request.log.error({ err: error }, 'retry page failed');
  const locale = localeFromAcceptLanguage(request.headers['accept-language']);
  const t = pageStringsFor(locale);
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

/** Money in the customer's locale, or the page's when the stored locale is not one Intl knows. */
export function formatMoney(minor: number, currency: string, customerLocale: string, pageLocale: PageLocale): string {
  try {
    return formatAmount(minor, currency, customerLocale);
  } catch {
    return formatAmount(minor, currency, pageLocale);
  }
}
