import type { Channel, FailureCategory, PaymentMethod } from '../domain/vocabulary.js';

/**
 * The console's words, per locale. Every console page wears the frame (navigation, sign-out);
 * the dashboard, read by finance in English or Chinese, is translated whole, its charts' labels
 * included. Plain strings only, HTML-escaped by the templates; `{n}` is a placeholder. A table
 * per locale, of one shape, so a missing word is a type error.
 */

export const consoleLocales = ['en', 'zh-CN'] as const;
export type ConsoleLocale = (typeof consoleLocales)[number];

/** Words of the frame around every page. */
export interface FrameStrings {
  /** The brand's second word: `recoup console`. */
  console: string;
  sections: string;
  nav: { dashboard: string; cadences: string; orders: string; suppressions: string; webhooks: string; health: string };
  /** Tooltip before the signed-in key's scopes. */
  scopes: string;
  signOut: string;
}

export interface DashboardStrings {
  title: string;
  period: string;
  from: string;
  to: string;
  currency: string;
  timezone: string;
  show: string;
  csv: string;
  /** The link to the page in the other language, named in that language. */
  language: string;
  revenueByDay: string;
  funnel: string;
  entered: string;
  messaged: string;
  clicked: string;
  recovered: string;
  rateByStep: string;
  rateByCategory: string;
  rateByMethod: string;
  holdout: string;
  treated: string;
  control: string;
  noHoldout: string;
  lift: string;
  interval: string;
  incremental: string;
  significant: string;
  notSignificant: string;
  /** A rate difference in percentage points: `{n}` is the signed number. */
  points: string;
  table: string;
  day: string;
  ordersEntered: string;
  recoveredCount: string;
  rate: string;
  recoveredAmount: string;
  refunded: string;
  incentives: string;
  net: string;
  organic: string;
  messages: string;
  cost: string;
  median: string;
  empty: string;
  /** A cadence step, numbered as the order timeline and the API number them (0 = the first). */
  step: string;
  rateAxis: string;
  channels: Record<Channel, string>;
  failureCategories: Record<FailureCategory, string>;
  /** Payment methods, and `unknown` for a failure the shop named no method for. */
  methods: Record<PaymentMethod | 'unknown', string>;
}

export interface ConsoleStrings {
  frame: FrameStrings;
  dashboard: DashboardStrings;
}

const en: ConsoleStrings = {
  frame: {
    console: 'console',
    sections: 'Sections',
    nav: {
      dashboard: 'Dashboard',
      cadences: 'Cadences',
      orders: 'Orders',
      suppressions: 'Suppressions',
      webhooks: 'Webhooks',
      health: 'Health',
    },
    scopes: 'scopes',
    signOut: 'Sign out',
  },
  dashboard: {
    title: 'Recovered revenue',
    period: 'Period',
    from: 'From',
    to: 'To',
    currency: 'Currency',
    timezone: 'Timezone',
    show: 'Show',
    csv: 'Download CSV',
    language: '中文',
    revenueByDay: 'Recovered revenue per day, by channel',
    funnel: 'Recovery funnel',
    entered: 'Entered',
    messaged: 'Messaged',
    clicked: 'Clicked',
    recovered: 'Paid',
    rateByStep: 'Recovery rate by cadence step',
    rateByCategory: 'Recovery rate by failure category',
    rateByMethod: 'Recovery rate by payment method',
    holdout: 'Treated vs holdout',
    treated: 'Treated',
    control: 'Holdout',
    noHoldout: 'No holdout orders in this period: set HOLDOUT_PERCENT or a cadence’s holdout_percent.',
    lift: 'Difference in recovery rate',
    interval: '95 % interval',
    incremental: 'Incremental recovered revenue',
    significant: 'significant',
    notSignificant: 'not significant yet',
    points: '{n} pp',
    table: 'By day',
    day: 'Day',
    ordersEntered: 'Orders',
    recoveredCount: 'Recovered',
    rate: 'Rate',
    recoveredAmount: 'Recovered',
    refunded: 'Refunded',
    incentives: 'Incentives',
    net: 'Net',
    organic: 'Organic',
    messages: 'Messages',
    cost: 'Cost',
    median: 'Median min.',
    empty: 'No recoveries in this period.',
    step: 'Step {n}',
    rateAxis: 'Recovery rate (%)',
    channels: { sms: 'SMS', email: 'Email' },
    failureCategories: {
      network: 'Network error',
      gateway_outage: 'Payment gateway outage',
      insufficient_funds: 'Insufficient funds',
      card_data: 'Wrong card details',
      authentication_required: 'Authentication required',
      account_frozen: 'Declined by the bank',
      method_unsupported: 'Method not supported',
      fraud_suspected: 'Suspected fraud',
      coupon_invalid: 'Coupon not valid',
      abandoned: 'Abandoned checkout',
      unknown: 'Unknown',
    },
    methods: { card: 'Card', alipay: 'Alipay', wechat_pay: 'WeChat Pay', unknown: 'Unknown' },
  },
};

const zhCN: ConsoleStrings = {
  frame: {
    console: '控制台',
    sections: '栏目',
    nav: {
      dashboard: '数据看板',
      cadences: '提醒流程',
      orders: '订单',
      suppressions: '免打扰名单',
      webhooks: '回调通知',
      health: '运行状况',
    },
    scopes: '权限范围',
    signOut: '退出登录',
  },
  dashboard: {
    title: '挽回收入',
    period: '期间',
    from: '开始',
    to: '结束',
    currency: '币种',
    timezone: '时区',
    show: '查看',
    csv: '下载 CSV',
    language: 'English',
    revenueByDay: '每日挽回收入（按渠道）',
    funnel: '挽回漏斗',
    entered: '进入挽回',
    messaged: '已发送提醒',
    clicked: '已点击链接',
    recovered: '已付款',
    rateByStep: '各步骤挽回率',
    rateByCategory: '各失败原因挽回率',
    rateByMethod: '各支付方式挽回率',
    holdout: '实验组与对照组',
    treated: '实验组',
    control: '对照组',
    noHoldout: '本期间没有对照组订单：请设置 HOLDOUT_PERCENT 或流程的 holdout_percent。',
    lift: '挽回率差异',
    interval: '95% 置信区间',
    incremental: '增量挽回收入',
    significant: '显著',
    notSignificant: '尚不显著',
    points: '{n} 个百分点',
    table: '按日明细',
    day: '日期',
    ordersEntered: '订单',
    recoveredCount: '已挽回',
    rate: '挽回率',
    recoveredAmount: '挽回金额',
    refunded: '退款',
    incentives: '优惠',
    net: '净额',
    organic: '自然付款',
    messages: '消息',
    cost: '成本',
    median: '中位分钟',
    empty: '本期间没有挽回记录。',
    step: '步骤 {n}',
    rateAxis: '挽回率 (%)',
    channels: { sms: '短信', email: '邮件' },
    failureCategories: {
      network: '网络错误',
      gateway_outage: '支付网关故障',
      insufficient_funds: '余额不足',
      card_data: '银行卡信息有误',
      authentication_required: '需要身份验证',
      account_frozen: '被银行拒绝',
      method_unsupported: '不支持该支付方式',
      fraud_suspected: '疑似欺诈',
      coupon_invalid: '优惠券无效',
      abandoned: '放弃结账',
      unknown: '未知',
    },
    methods: { card: '银行卡', alipay: '支付宝', wechat_pay: '微信支付', unknown: '未知' },
  },
};

export const consoleStrings: Readonly<Record<ConsoleLocale, ConsoleStrings>> = { en, 'zh-CN': zhCN };

/**
 * The label of a report group's code (`sms`, `gateway_outage`, `wechat_pay`) in `table`; a code
 * the table does not know (a method the shop named itself) is shown as the shop sent it.
 */
export function labelOf(table: Readonly<Record<string, string>>, code: string): string {
  return Object.hasOwn(table, code) ? (table[code] ?? code) : code;
}
