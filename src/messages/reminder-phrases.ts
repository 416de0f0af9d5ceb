import type { FailureCategory, FailureDetail, PaymentMethod } from '../domain/vocabulary.js';

/**
 * The phrases every reminder template shares (payment method names, why a payment failed and
 * what to do about it), per language; src/messages/template-renderer.ts puts them in the view.
 */

export interface Phrases {
  methods: Record<PaymentMethod, { name: string; title: string }>;
  reasons: Record<FailureCategory, string>;
  advice: Record<FailureCategory, string>;
  /** Said in place of the category's reason and advice when the failure's code tells more. */
  details: Record<FailureDetail, { reason: string; advice: string }>;
  /** `coupon_invalid` when the order names its coupon. */
  couponReason: (code: string) => string;
  /** Under a cart list cut short: `count` lines are not shown. */
  moreItems: (count: number) => string;
}

/**
 * Phrases shared by every template, per language. A template locale in another language uses the
 * English phrases until a table is added here.
 */
const phrasesByLanguage: Record<'en' | 'zh', Phrases> = {
  en: {
    methods: {
      card: { name: 'card', title: 'Card' },
      alipay: { name: 'Alipay', title: 'Alipay' },
      wechat_pay: { name: 'WeChat Pay', title: 'WeChat Pay' },
    },
    reasons: {
      network: 'The connection dropped before your payment could finish.',
      gateway_outage: 'Our payment service had a temporary problem.',
      insufficient_funds:
        "Your bank or wallet didn't approve the payment. This sometimes happens because of a balance or daily limit.",
      card_data: "Some of the card details didn't match, such as the expiry date or security code.",
      authentication_required: "Your bank asked for an extra confirmation step that wasn't completed.",
      account_frozen: "Your bank or wallet didn't accept the payment.",
      method_unsupported: "The payment method you chose isn't available for this order.",
      fraud_suspected: "The payment couldn't be completed.",
      coupon_invalid: "The coupon on your order couldn't be applied.",
      abandoned: "It looks like checkout wasn't quite finished.",
      unknown: "The payment didn't go through.",
    },
    advice: {
      network: 'Trying again with the same method usually works.',
      gateway_outage: "It's working again, so you can use the same method.",
      insufficient_funds: 'You can try again later, or choose another payment method now.',
      card_data: 'Please check your card details, or choose another payment method.',
      authentication_required: 'Please keep your phone nearby so you can confirm the payment with your bank.',
      account_frozen: 'You could choose another payment method, or ask your bank or wallet provider for details.',
      method_unsupported: 'Please choose one of the other payment methods.',
      fraud_suspected: 'If you have any questions, please get in touch with us.',
      coupon_invalid: 'The amount shown is your current total.',
      abandoned: 'It only takes a moment.',
      unknown: 'You can simply try again.',
    },
    details: {
      card_expired: {
        reason: 'The card you used has expired.',
        advice: 'Please pay with another card, or choose another payment method.',
      },
    },
    couponReason: (code) => `The coupon ${code} couldn't be applied to your order.`,
    moreItems: (count) => (count === 1 ? 'and 1 more item' : `and ${count} more items`),
  },
  zh: {
    methods: {
      card: { name: '银行卡', title: '银行卡' },
      alipay: { name: '支付宝', title: '支付宝' },
      wechat_pay: { name: '微信支付', title: '微信支付' },
    },
    reasons: {
      network: '付款过程中网络连接中断了。',
      gateway_outage: '我们的支付服务刚才出现了临时故障。',
      insufficient_funds: '您的银行或支付账户未批准这笔付款，可能是余额或单日限额的原因。',
      card_data: '部分银行卡信息未能通过验证，例如有效期或安全码。',
      authentication_required: '银行需要您完成一步额外验证，但验证尚未完成。',
      account_frozen: '您的银行或支付账户未能受理这笔付款。',
      method_unsupported: '您选择的支付方式暂不适用于此订单。',
      fraud_suspected: '这笔付款未能完成。',
      coupon_invalid: '您订单中的优惠券未能使用。',
      abandoned: '您的订单还没有完成付款。',
      unknown: '这笔付款未能完成。',
    },
    advice: {
      network: '使用原来的支付方式重新尝试，通常就能成功。',
      gateway_outage: '服务现已恢复，您可以继续使用原来的支付方式。',
      insufficient_funds: '您可以稍后再试，也可以现在换一种支付方式。',
      card_data: '请核对银行卡信息，或换一种支付方式。',
      authentication_required: '付款时请将手机放在身边，以便完成银行验证。',
      account_frozen: '您可以换一种支付方式，或联系您的银行、支付平台了解详情。',
      method_unsupported: '请选择其他支付方式完成付款。',
      fraud_suspected: '如有任何疑问，欢迎与我们联系。',
      coupon_invalid: '下方显示的是当前应付金额。',
      abandoned: '只需片刻即可完成。',
      unknown: '您可以直接重新尝试。',
    },
    details: {
      card_expired: {
        reason: '您使用的银行卡已过期。',
        advice: '请换一张银行卡，或选择其他支付方式。',
      },
    },
    couponReason: (code) => `优惠券“${code}”未能用于您的订单。`,
    moreItems: (count) => `另有 ${count} 件商品`,
  },
};

/** Categories where the customer is better served by another method than by the same one again. */
export const suggestOtherMethod: ReadonlySet<FailureCategory> = new Set([
  'insufficient_funds',
  'card_data',
  'account_frozen',
  'method_unsupported',
]);

export function phrasesFor(locale: string): Phrases {
  return locale.toLowerCase().split('-')[0] === 'zh' ? phrasesByLanguage.zh : phrasesByLanguage.en;
}
