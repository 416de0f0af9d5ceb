import type { FailureCategory, FailureDetail, PaymentMethod } from '../../domain/vocabulary.js';

/**
 * The wording of the customer-facing retry pages, per page locale. Plain strings only:
 * placeholders like `{amount}` are filled in by `fillIn` before a value reaches a template,
 * and every value is HTML-escaped there. Add a locale by adding a table of the same shape.
 */

export const pageLocales = ['en', 'zh-CN'] as const;
export type PageLocale = (typeof pageLocales)[number];

export interface PageStrings {
  /** Labels the templates use directly. */
  orderSummary: string;
  /** The accessible name of the list of cart lines. */
  itemsLabel: string;
  total: string;
  orderAmount: string;
  incentive: string;
  contactHeading: string;
  contactHint: string;
  emailLabel: string;
  phoneLabel: string;
  /** `{example}`: a mobile number of the customer's country, as the form wants it. */
  phoneHint: string;
  methodHeading: string;
  noMethods: string;
  errorSummary: string;
  checkPaid: string;
  checkAgain: string;
  otherMethod: string;
  backToPayment: string;
  /** Shown by the polling script only: the page moves on by itself once paid. */
  qrPending: string;
  /** The QR page without JavaScript: `{button}` is the check button's label. */
  qrNoScript: string;
  /** Sandbox gateway only: the link that does what scanning the code would. */
  qrSimulate: string;
  /** Before the shop's order reference on the success page. */
  orderReference: string;
  cardNoScript: string;
  cardSubmit: string;
  cardProcessing: string;
  cardFailed: string;
  methods: Record<PaymentMethod, string>;

  /** Page titles and sentences the routes assemble; `{…}` are placeholders. */
  retryTitle: string;
  failedTitle: string;
  failedIntro: string;
  payButton: string;
  couponApplied: string;
  couponAppliedPlain: string;
  couponExpired: string;
  couponExpiredPlain: string;
  unavailable: string;
  previousAttemptOpen: string;
  cancelledAttempt: string;
  qrExpired: string;
  reasons: Record<FailureCategory, string>;
  /** Said in place of the category's reason when the failure's code tells more. */
  reasonDetails: Record<FailureDetail, string>;
  emailInvalid: string;
  phoneInvalid: string;
  phoneNeedsCountry: string;
  methodRequired: string;
  methodNotOffered: string;
  qrTitle: string;
  qrAlt: string;
  qrSteps: string[];
  qrPhoneHint: string;
  qrNotYet: string;
  pendingTitle: string;
  pendingText: string;
  successTitle: string;
  successText: string;
  /** When the amount paid cannot be shown. */
  successTextPlain: string;
  successNote: string;
  cardTitle: string;
  cardIntro: string;
  completedTitle: string;
  completedText: string;
  closedTitle: string;
  closedText: string;
  expiredTitle: string;
  expiredText: string;
  freshLinkButton: string;
  freshLinkHint: string;
  expiredNoFreshLink: string;
  invalidTitle: string;
  invalidText: string;
  freshSentTitle: string;
  freshSentText: string;
  freshTooSoonTitle: string;
  freshTooSoonText: string;
  /** `{time}`: when the quiet hours end, in the customer's timezone. */
  freshQuietTitle: string;
  freshQuietText: string;
  freshDailyLimitTitle: string;
  freshDailyLimitText: string;
  freshNotPossibleTitle: string;
  freshNotPossibleText: string;
  forbiddenTitle: string;
  forbiddenText: string;
  rateLimitedTitle: string;
  rateLimitedText: string;
  badRequestTitle: string;
  badRequestText: string;
  errorTitle: string;
  errorText: string;
}

const en: PageStrings = {
  orderSummary: 'Your order',
  itemsLabel: 'Items in your order',
  total: 'Total to pay',
  orderAmount: 'Order amount',
  incentive: 'Special discount',
  contactHeading: 'Your contact details',
  contactHint: 'Check or correct them: we use them only for messages about this order.',
  emailLabel: 'Email',
  phoneLabel: 'Mobile number',
  phoneHint: 'With the country code, e.g. {example}',
  methodHeading: 'Payment method',
  noMethods: 'No payment method is available for this order right now. Please contact the shop.',
  errorSummary: 'Please check the highlighted fields.',
  checkPaid: 'I have paid — check',
  checkAgain: 'Check again',
  otherMethod: 'Choose another payment method',
  backToPayment: 'Back to the payment page',
  qrPending: 'This page moves on by itself once you have paid.',
  qrNoScript: 'Once you have paid, press “{button}” to continue.',
  qrSimulate: 'Test mode: simulate scanning this code',
  orderReference: 'Order reference:',
  cardNoScript: 'Card payment needs JavaScript. Please turn it on, or choose another payment method.',
  cardSubmit: 'Pay now',
  cardProcessing: 'Processing…',
  cardFailed: 'The card payment could not be completed. Please check the details or choose another method.',
  methods: { card: 'Card', alipay: 'Alipay', wechat_pay: 'WeChat Pay' },

  retryTitle: 'Complete your payment',
  failedTitle: 'Payment failed — try another method',
  failedIntro: 'Nothing was charged. You can try again with another payment method below.',
  payButton: 'Pay {amount}',
  couponApplied: 'Coupon {code} applied: you save {discount}.',
  couponAppliedPlain: 'Coupon {code} applied.',
  couponExpired:
    'Coupon {code} has expired and no longer applies, so its discount of {discount} is not included. You will be charged {total}.',
  couponExpiredPlain: 'Coupon {code} has expired and no longer applies. You will be charged {total}.',
  unavailable: 'The payment service is briefly unavailable, so nothing was charged. Please try again in a minute.',
  previousAttemptOpen:
    'Your earlier payment could not be closed just now, so no new one was started: that way you cannot be charged twice. Please try again in a minute.',
  cancelledAttempt: 'That payment was closed before it was completed. Nothing was charged. Please start again.',
  qrExpired: 'The payment code has expired. Please start the payment again.',
  reasons: {
    network: 'Your last payment did not go through because the connection was interrupted.',
    gateway_outage: 'Your last payment did not go through because the payment service was briefly unavailable.',
    insufficient_funds:
      'Your last payment did not go through: the bank or wallet declined it, possibly because of the balance or a spending limit.',
    card_data:
      'Your last payment did not go through: some card details, such as the expiry date or security code, did not match.',
    authentication_required: 'Your last payment needed an extra confirmation from your bank that was not completed.',
    account_frozen: 'Your last payment did not go through: the bank declined the payment.',
    method_unsupported: 'Your last payment did not go through: that payment method cannot be used for this order.',
    fraud_suspected: 'Your last payment could not be completed.',
    coupon_invalid: 'The coupon on your order could not be applied.',
    abandoned: 'Your payment was not finished.',
    unknown: 'Your last payment did not go through.',
  },
  reasonDetails: {
    card_expired:
      'Your last payment did not go through: the card has expired. Please pay with another card, or choose another payment method.',
  },
  emailInvalid: 'Enter a valid email address, like name@example.com.',
  phoneInvalid: 'Enter a valid mobile number, like {example}.',
  phoneNeedsCountry: 'Start the number with + and the country code, like {example}.',
  methodRequired: 'Choose a payment method.',
  methodNotOffered: 'This payment method is not available for this order. Please choose another one.',
  qrTitle: 'Pay with WeChat Pay',
  qrAlt: 'WeChat Pay QR code for {amount}',
  qrSteps: [
    'Open WeChat on your phone.',
    'Tap + and then Scan, and point the camera at this code.',
    'Confirm the payment of {amount} in WeChat.',
  ],
  qrPhoneHint:
    'On the phone that has WeChat? Take a screenshot, then in WeChat choose Scan and pick the screenshot from your album.',
  qrNotYet: 'We have not received the payment yet. If you have just paid, wait a moment and check again.',
  pendingTitle: 'We are confirming your payment',
  pendingText: 'This usually takes a few seconds. This page moves on by itself.',
  successTitle: 'Thank you!',
  successText: 'Your payment of {amount} is confirmed.',
  successTextPlain: 'Your payment is confirmed.',
  successNote: 'You can close this page now.',
  cardTitle: 'Pay by card',
  cardIntro: 'Enter your card details to pay {amount}.',
  completedTitle: 'Already paid',
  completedText: 'This order has already been paid. Thank you!',
  closedTitle: 'Order cancelled',
  closedText: 'This order was cancelled, so there is nothing to pay.',
  expiredTitle: 'This link has expired',
  expiredText: 'For your security, payment links work only for a limited time.',
  freshLinkButton: 'Send me a new link',
  freshLinkHint: 'We will send it to the phone number or email address we have on file.',
  expiredNoFreshLink: 'Please use the most recent message from {shop}, or contact the shop.',
  invalidTitle: 'Link not found',
  invalidText:
    'This link does not work. Please check that you opened the complete link from your message, or contact the shop.',
  freshSentTitle: 'A new link is on its way',
  freshSentText:
    'We have sent a new payment link to the contact details we have on file. It should arrive in a minute.',
  freshTooSoonTitle: 'A new link was sent recently',
  freshTooSoonText: 'We sent you a new link a few minutes ago. Please check your messages, or try again in 10 minutes.',
  freshQuietTitle: 'We do not send messages at this hour',
  freshQuietText: 'So as not to disturb you, we send no messages at this time of day. Please ask again after {time}.',
  freshDailyLimitTitle: 'No more new links today',
  freshDailyLimitText:
    'We have sent you as many messages as we send in one day. Please check your messages, or ask again tomorrow.',
  freshNotPossibleTitle: 'We could not send a new link',
  freshNotPossibleText: 'We could not send a new link for this order. Please contact {shop} directly.',
  forbiddenTitle: 'Please try again',
  forbiddenText:
    'This form has expired or was opened in another browser, so nothing was changed. Please open your payment link again.',
  rateLimitedTitle: 'Too many requests',
  rateLimitedText: 'There were too many requests from your network. Please wait a minute and try again.',
  badRequestTitle: 'Something was wrong with that request',
  badRequestText: 'Nothing was changed. Please go back and try again.',
  errorTitle: 'Something went wrong',
  errorText: 'Something went wrong on our side. Please try again in a minute. Reference: {reference}.',
};

const zhCN: PageStrings = {
  orderSummary: '您的订单',
  itemsLabel: '订单商品',
  total: '应付金额',
  orderAmount: '订单金额',
  incentive: '专属优惠',
  contactHeading: '您的联系方式',
  contactHint: '请核对或更正：我们只会用它们发送与此订单有关的消息。',
  emailLabel: '电子邮箱',
  phoneLabel: '手机号码',
  phoneHint: '请包含国家区号，例如 {example}',
  methodHeading: '支付方式',
  noMethods: '此订单目前没有可用的支付方式，请联系商家。',
  errorSummary: '请检查标出的字段。',
  checkPaid: '我已付款，查看结果',
  checkAgain: '再次查看',
  otherMethod: '选择其他支付方式',
  backToPayment: '返回付款页面',
  qrPending: '付款成功后，此页面会自动跳转。',
  qrNoScript: '付款完成后，请点击“{button}”继续。',
  qrSimulate: '测试模式：模拟扫描此二维码',
  orderReference: '订单号：',
  cardNoScript: '银行卡支付需要启用 JavaScript。请启用后重试，或选择其他支付方式。',
  cardSubmit: '立即支付',
  cardProcessing: '处理中…',
  cardFailed: '银行卡支付未能完成。请核对卡信息，或选择其他支付方式。',
  methods: { card: '银行卡', alipay: '支付宝', wechat_pay: '微信支付' },

  retryTitle: '完成付款',
  failedTitle: '付款失败，请换一种支付方式',
  failedIntro: '本次未产生任何扣款。您可以在下方选择其他支付方式重新付款。',
  payButton: '支付 {amount}',
  couponApplied: '已使用优惠券 {code}，为您节省 {discount}。',
  couponAppliedPlain: '已使用优惠券 {code}。',
  couponExpired: '优惠券 {code} 已过期，不再适用，因此不含 {discount} 的优惠。实际扣款金额为 {total}。',
  couponExpiredPlain: '优惠券 {code} 已过期，不再适用。实际扣款金额为 {total}。',
  unavailable: '支付服务暂时不可用，本次未产生任何扣款。请一分钟后重试。',
  previousAttemptOpen: '您之前发起的付款暂时无法关闭，为避免重复扣款，本次未发起新的付款。请一分钟后重试。',
  cancelledAttempt: '该笔付款在完成前已关闭，未产生任何扣款。请重新发起付款。',
  qrExpired: '付款码已过期，请重新发起付款。',
  reasons: {
    network: '您上次的付款因网络连接中断未能完成。',
    gateway_outage: '您上次的付款因支付服务暂时不可用未能完成。',
    insufficient_funds: '您上次的付款未能完成：银行或支付账户拒绝了这笔付款，可能是余额或限额的原因。',
    card_data: '您上次的付款未能完成：部分银行卡信息（例如有效期或安全码）不匹配。',
    authentication_required: '您上次的付款需要银行的额外验证，但验证未完成。',
    account_frozen: '您上次的付款未能完成：银行拒绝了这笔付款。',
    method_unsupported: '您上次的付款未能完成：该支付方式不适用于此订单。',
    fraud_suspected: '您上次的付款未能完成。',
    coupon_invalid: '您订单中的优惠券未能使用。',
    abandoned: '您的付款尚未完成。',
    unknown: '您上次的付款未能完成。',
  },
  reasonDetails: {
    card_expired: '您上次的付款未能完成：该银行卡已过期。请换一张银行卡付款，或选择其他支付方式。',
  },
  emailInvalid: '请输入有效的电子邮箱，例如 name@example.com。',
  phoneInvalid: '请输入有效的手机号码，例如 {example}。',
  phoneNeedsCountry: '请以 + 和国家区号开头，例如 {example}。',
  methodRequired: '请选择一种支付方式。',
  methodNotOffered: '此订单不支持该支付方式，请选择其他方式。',
  qrTitle: '微信支付',
  qrAlt: '微信支付二维码，金额 {amount}',
  qrSteps: ['在手机上打开微信。', '点击右上角“+”，选择“扫一扫”，对准此二维码。', '在微信中确认支付 {amount}。'],
  qrPhoneHint: '正在使用装有微信的手机？请截屏，然后在微信“扫一扫”中从相册选择该截图。',
  qrNotYet: '我们尚未收到付款。如果您刚刚完成付款，请稍候再查看。',
  pendingTitle: '正在确认您的付款',
  pendingText: '通常只需几秒钟，此页面会自动跳转。',
  successTitle: '谢谢！',
  successText: '您支付的 {amount} 已确认。',
  successTextPlain: '您的付款已确认。',
  successNote: '现在可以关闭此页面。',
  cardTitle: '银行卡支付',
  cardIntro: '请输入银行卡信息，支付 {amount}。',
  completedTitle: '订单已付款',
  completedText: '此订单已完成付款，谢谢！',
  closedTitle: '订单已取消',
  closedText: '此订单已取消，无需付款。',
  expiredTitle: '链接已过期',
  expiredText: '为保障您的安全，付款链接仅在一定时间内有效。',
  freshLinkButton: '给我发送新链接',
  freshLinkHint: '我们会将新链接发送到您留存的手机号码或电子邮箱。',
  expiredNoFreshLink: '请使用 {shop} 最新发送的消息，或联系商家。',
  invalidTitle: '链接无效',
  invalidText: '此链接无法使用。请确认您打开的是消息中的完整链接，或联系商家。',
  freshSentTitle: '新链接已发送',
  freshSentText: '我们已将新的付款链接发送到您留存的联系方式，通常一分钟内送达。',
  freshTooSoonTitle: '新链接刚刚已发送',
  freshTooSoonText: '我们几分钟前已给您发送新链接。请查看您的消息，或 10 分钟后再试。',
  freshQuietTitle: '此时段不发送消息',
  freshQuietText: '为避免打扰您，我们在此时段不发送消息。请在 {time} 之后再申请。',
  freshDailyLimitTitle: '今天无法再发送新链接',
  freshDailyLimitText: '今天我们已向您发送了一天内可发送的全部消息。请查看您的消息，或明天再申请。',
  freshNotPossibleTitle: '无法发送新链接',
  freshNotPossibleText: '我们无法为此订单发送新链接，请直接联系 {shop}。',
  forbiddenTitle: '请重试',
  forbiddenText: '此表单已过期或在其他浏览器中打开，因此未做任何更改。请重新打开您的付款链接。',
  rateLimitedTitle: '请求过于频繁',
  rateLimitedText: '来自您网络的请求过多，请稍等一分钟后重试。',
  badRequestTitle: '请求有误',
  badRequestText: '未做任何更改。请返回后重试。',
  errorTitle: '出错了',
  errorText: '我们这边出了点问题，请一分钟后重试。参考编号：{reference}。',
};

export const pageStrings: Readonly<Record<PageLocale, PageStrings>> = { en, 'zh-CN': zhCN };

/**
 * The page locale for a customer's stored locale, resolved like message locales: any
 * Chinese (zh, zh-CN, zh-TW, zh_CN.UTF-8) reads the zh-CN pages, everything else English.
 */
export function resolvePageLocale(locale: string | null | undefined): PageLocale {
  const language = (locale ?? '')
    .trim()
    .toLowerCase()
    .split(/[-_.@]/)[0];
  return language === 'zh' ? 'zh-CN' : 'en';
}

/**
 * The page locale for a visitor recoup knows nothing about (a bad link, a rate-limited
 * request): the browser's most preferred language among those recoup has.
 */
export function localeFromAcceptLanguage(header: string | undefined): PageLocale {
  if (!header) return 'en';
  const ranked = header
    .split(',')
    .slice(0, 20)
    .map((part, index) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([01](?:\.\d{0,3})?)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
      return { tag: tag.trim(), q: q === undefined ? 1 : Number(q), index };
    })
    .filter((entry) => entry.tag && entry.tag !== '*' && entry.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index);
  for (const { tag } of ranked) {
    const language = tag.toLowerCase().split('-')[0];
    if (language === 'zh') return 'zh-CN';
    if (language === 'en') return 'en';
  }
  return 'en';
}

/** Replaces `{name}` placeholders; unknown names are left as they are (a test catches them). */
export function fillIn(text: string, values: Record<string, string>): string {
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}
