import type { PaymentMethod } from '../../../domain/vocabulary.js';
import type { GatewayPaymentStatus } from '../../payment-gateway.js';
import { sandboxDeclineCodes } from './sandbox-gateway.js';
import type { SandboxPayment } from './sandbox-store.js';

/**
 * Server-rendered pages of the sandbox's simulated hosted checkout: no scripts, one
 * stylesheet served by recoup itself, readable on a phone, English or Chinese by the
 * payment's locale.
 */

type Lang = 'en' | 'zh';

const texts = {
  en: {
    banner: 'Sandbox — no real money moves',
    card: 'Card payment',
    alipay: 'Alipay',
    wechat_pay: 'WeChat Pay',
    scanned: 'You scanned the payment code. Confirm the payment on your phone.',
    cardNote: 'Any card details work in the sandbox; nothing you type is sent.',
    alipayNote: 'Signed in to Alipay as a sandbox buyer.',
    pay: 'Pay',
    scanPay: 'Simulate scan & pay',
    declineWith: 'Decline with',
    decline: 'Decline',
    timeout: 'Let it time out',
    expires: 'Payable until',
    merchantOrder: 'Order',
    status: {
      requires_action: 'waiting for payment',
      pending: 'processing',
      succeeded: 'paid',
      failed: 'failed',
      cancelled: 'closed',
    } satisfies Record<GatewayPaymentStatus, string>,
    alreadyFinal: (status: string, reason: string) => `This payment is already ${status}${reason}.`,
    back: 'Back to the shop',
    notFound: 'This payment page does not exist, or the sandbox has forgotten it (it keeps payments in memory).',
    forbidden: 'This form has expired. Reload the page and try again.',
    badRequest: 'Choose what should happen to the payment.',
  },
  zh: {
    banner: '沙盒环境 — 不会产生真实扣款',
    card: '银行卡支付',
    alipay: '支付宝',
    wechat_pay: '微信支付',
    scanned: '已扫描付款码，请在手机上确认支付。',
    cardNote: '沙盒中任意卡信息均可使用，输入内容不会被发送。',
    alipayNote: '已以沙盒买家身份登录支付宝。',
    pay: '支付',
    scanPay: '模拟扫码并支付',
    declineWith: '模拟拒绝原因',
    decline: '拒绝',
    timeout: '模拟超时',
    expires: '支付截止',
    merchantOrder: '订单',
    status: {
      requires_action: '待支付',
      pending: '处理中',
      succeeded: '已支付',
      failed: '已失败',
      cancelled: '已关闭',
    } satisfies Record<GatewayPaymentStatus, string>,
    alreadyFinal: (status: string, reason: string) => `此笔支付${status}${reason}。`,
    back: '返回商家',
    notFound: '支付页面不存在，或沙盒已将其遗忘（沙盒仅在内存中保存支付）。',
    forbidden: '表单已失效，请刷新页面后重试。',
    badRequest: '请选择支付结果。',
  },
} as const;

export function langOf(locale: string | undefined): Lang {
  return locale?.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

/** The page a card or Alipay redirect lands on, or the one a WeChat Pay QR code opens. */
export function checkoutPage(payment: SandboxPayment, formAction: string, formToken: string): string {
  const lang = langOf(payment.locale);
  const t = texts[lang];
  const amount = formatMoney(payment.amount, payment.currency, payment.locale);
  const isScan = payment.method === 'wechat_pay';
  const intro =
    payment.method === 'card'
      ? html`<div class="card-fields" aria-hidden="true">
            <input disabled value="4242 4242 4242 4242" /><span class="row"
              ><input disabled value="12 / 34" /><input disabled value="123"
            /></span>
          </div>
          <p class="note">${t.cardNote}</p>`
      : payment.method === 'alipay'
        ? html`<p class="note">${t.alipayNote}</p>`
        : html`<p class="note">${t.scanned}</p>`;
  const options = sandboxDeclineCodes[payment.method].map(
    (decline) => html`<option value="${decline.code}">${decline.code} — ${decline.label}</option>`,
  );
  const body = html`<section class="summary">
      <p class="merchant">${payment.description}</p>
      <p class="amount">${amount}</p>
      <p class="meta">
        ${t.merchantOrder} ${payment.orderId} · ${t.expires} ${formatTime(payment.expiresAt, payment.locale)}
      </p>
    </section>
    ${intro}
    <form method="post" action="${formAction}">
      <input type="hidden" name="token" value="${formToken}" />
      <button class="primary" name="action" value="succeed">${isScan ? t.scanPay : `${t.pay} ${amount}`}</button>
      <fieldset>
        <label for="code">${t.declineWith}</label>
        <select id="code" name="code">
          ${raw(options.map((o) => o.value).join(''))}
        </select>
        <button name="action" value="decline">${t.decline}</button>
      </fieldset>
      <button class="secondary" name="action" value="timeout">${t.timeout}</button>
    </form>`;
  return layout(lang, payment.method, methodTitle(payment.method, lang), body);
}

/** Shown instead of the buttons when the payment is no longer open. */
export function finalPage(payment: SandboxPayment, backUrl: string): string {
  const lang = langOf(payment.locale);
  const t = texts[lang];
  const reason = payment.failureCode ? ` (${payment.failureCode})` : '';
  const body = html`<section class="summary">
      <p class="merchant">${payment.description}</p>
      <p class="amount">${formatMoney(payment.amount, payment.currency, payment.locale)}</p>
      <p class="state state-${payment.status}">${t.alreadyFinal(t.status[payment.status], reason)}</p>
    </section>
    <a class="primary" href="${backUrl}">${t.back}</a>`;
  return layout(lang, payment.method, methodTitle(payment.method, lang), body);
}

export function messagePage(kind: 'notFound' | 'forbidden' | 'badRequest', locale?: string): string {
  const lang = langOf(locale);
  return layout(lang, undefined, 'recoup sandbox', html`<p class="message">${texts[lang][kind]}</p>`);
}

export const sandboxStylesheet = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;background:#f4f5f7;color:#1f2329}
.banner{background:#fff4ce;color:#5c4400;text-align:center;font-size:.85rem;padding:.35rem .75rem}
header{padding:1rem;color:#fff;background:#3b4252;font-weight:600;font-size:1.1rem}
.m-card header{background:#635bff}
.m-alipay header{background:#1677ff}
.m-wechat_pay header{background:#07c160}
main{max-width:28rem;margin:0 auto;padding:1rem}
.summary{background:#fff;border-radius:.75rem;padding:1rem;margin-bottom:1rem;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.merchant{margin:0;color:#4e5969;word-break:break-word}
.amount{margin:.25rem 0;font-size:2rem;font-weight:700}
.meta,.note{margin:0;color:#86909c;font-size:.85rem}
.note{margin:0 0 1rem}
.state{margin:.5rem 0 0;font-weight:600}
.state-succeeded{color:#00a870}.state-failed,.state-cancelled{color:#d54941}
.card-fields{display:grid;gap:.5rem;margin-bottom:.5rem}
.card-fields .row{display:grid;grid-template-columns:1fr 1fr;gap:.5rem}
input,select{width:100%;font:inherit;padding:.6rem .75rem;border:1px solid #d0d3d9;border-radius:.5rem;background:#fff;color:inherit}
form{display:grid;gap:.75rem}
fieldset{border:1px solid #e5e6eb;border-radius:.75rem;padding:.75rem;display:grid;gap:.5rem;margin:0;background:#fff}
label{font-size:.85rem;color:#4e5969}
button,a.primary{display:block;width:100%;font:inherit;font-weight:600;text-align:center;text-decoration:none;padding:.8rem;border-radius:.5rem;border:1px solid #c9cdd4;background:#fff;color:#1f2329;cursor:pointer}
button.primary,a.primary{border:0;color:#fff;background:#3b4252}
.m-card .primary{background:#635bff}.m-alipay .primary{background:#1677ff}.m-wechat_pay .primary{background:#07c160}
button.secondary{background:transparent;border-style:dashed}
.message{background:#fff;border-radius:.75rem;padding:1rem}
`;

function layout(lang: Lang, method: PaymentMethod | undefined, title: string, body: Html): string {
  return `<!doctype html>${
    html`<html lang="${lang === 'zh' ? 'zh-CN' : 'en'}">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex" />
        <title>${title}</title>
        <link rel="stylesheet" href="/sandbox/assets/sandbox.css" />
      </head>
      <body class="m-${method ?? 'none'}">
        <div class="banner">${texts[lang].banner}</div>
        <header>${title}</header>
        <main>${body}</main>
      </body>
    </html>`.value
  }`;
}

function methodTitle(method: PaymentMethod, lang: Lang): string {
  return lang === 'zh' ? texts.zh[method] : `${texts.en[method]}${method === 'card' ? '' : ` · ${texts.zh[method]}`}`;
}

export function formatMoney(amount: number, currency: string, locale: string): string {
  const format = (tag: string) => {
    const formatter = new Intl.NumberFormat(tag, { style: 'currency', currency });
    const digits = formatter.resolvedOptions().maximumFractionDigits ?? 2;
    return formatter.format(amount / 10 ** digits);
  };
  try {
    return format(locale);
  } catch {
    return format('en');
  }
}

function formatTime(at: Date, locale: string): string {
  const options: Intl.DateTimeFormatOptions = { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' };
  let text: string;
  try {
    text = new Intl.DateTimeFormat(locale, options).format(at);
  } catch {
    text = new Intl.DateTimeFormat('en', options).format(at);
  }
  return `${text} UTC`;
}

/** Escaped HTML: interpolated values are escaped unless wrapped in `raw()` or produced by `html`. */
class Html {
  constructor(readonly value: string) {}
}

function raw(value: string): Html {
  return new Html(value);
}

function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  values.forEach((value, index) => {
    out += value instanceof Html ? value.value : escapeHtml(String(value));
    out += strings[index + 1] ?? '';
  });
  return new Html(out);
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
