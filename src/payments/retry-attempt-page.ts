import { sql } from 'drizzle-orm';
import type { FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { rows } from '../db/rows.js';
import type { PollData } from '../http/pages/page-renderer.js';
import { fillIn, pageStringsFor, resolvePageLocale } from '../http/pages/page-strings.js';
import { refreshAttempt } from './attempt-status.js';
import type { AttemptView } from './payment-attempts.js';
import { paymentMethodOf } from './retry-form.js';
import {
  afterFailure,
  formatMoney,
  invalidPage,
  retryPage,
  sendPage,
  statePage,
  type RetryPageContext,
} from './retry-page-views.js';
import { loadRetryLink } from './retry-session.js';

export const attemptIdPattern = /^att_[0-9a-f]{24}$/;

/** An attempt's page: QR code, card form, success, "failed, try another method" or "confirming". */
export async function attemptPage(
  deps: RetryPageContext,
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
  const t = pageStringsFor(locale);
  const shop = deps.retry.shopName;
  const amount = info ? formatMoney(info.amount, info.currency, info.locale, locale) : null;

  if (attempt.status === 'succeeded') {
    return sendPage(deps, reply, 200, 'success', locale, {
      title: t.successTitle,
      shopName: shop,
      text: amount ? fillIn(t.successText, { amount }) : t.successTextPlain,
      reference: attempt.orderId,
      note: t.successNote,
    });
  }
  if (attempt.status === 'failed') {
    return afterFailure(deps, request, reply, token, {
      category: attempt.failureCategory ?? 'unknown',
      code: attempt.failureCode,
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
      noScriptHint: fillIn(t.qrNoScript, { button: t.checkPaid }),
      checkUrl: done,
      simulateUrl: action.simulateUrl ?? null,
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

/** What an attempt's pages show besides its status: amount charged, description, the customer's locale. */
async function attemptInfo(
  deps: RetryPageContext,
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
