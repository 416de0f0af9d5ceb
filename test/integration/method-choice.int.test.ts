import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRetryHarness, type RetryHarness } from '../helpers/retry-harness.js';

// The retry page adapts to where the customer is: the order of the payment methods, which one is
// pre-selected after a failure, and the example phone number of the form.

const cadences = `
name: default
expire_after: 3d
steps:
  - { after: 1m, channel: sms, template: nudge, offer_methods: [alipay, wechat_pay, card] }
`;

const american = { phone: '+12015550123', locale: 'en-US' };
const chinese = { phone: '+8613800138000', locale: 'zh-CN' };

/** The radio buttons of the page, in order, and the checked one. */
function methodsOn(html: string) {
  const inputs = [...html.matchAll(/<input type="radio" name="method" value="(\w+)"( checked)?>/g)];
  return { order: inputs.map((m) => m[1]), checked: inputs.filter((m) => m[2]).map((m) => m[1]) };
}

describe('the retry page follows the customer', () => {
  let h: RetryHarness;

  beforeAll(async () => {
    h = await startRetryHarness({ cadences, start: '2026-11-25T12:00:00Z' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('in the US, paying in USD: card first and kept after a soft decline, and an American example number', async () => {
    const link = await h.remind({ currency: 'USD' }, { failure_code: 'insufficient_funds' }, american);
    const html = (await h.get(`/r/${link.token}`)).body;
    expect(methodsOn(html)).toEqual({ order: ['card', 'alipay', 'wechat_pay'], checked: ['card'] });
    expect(html).toContain('With the country code, e.g. +1 201 555 0123');
    expect(html).not.toContain('+86');

    // A number the form cannot read is explained with the same example.
    const refused = await h.submit(link.token, { phone: '12', method: 'card' });
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toMatch(/like \+1 201 555 0123\./);
    expect(refused.body).not.toContain('+86');
  });

  it('pre-selects nothing after an expired card, and another method after a refused account', async () => {
    const expired = await h.remind({ currency: 'USD' }, { failure_code: 'expired_card' }, american);
    expect(methodsOn((await h.get(`/r/${expired.token}`)).body)).toEqual({
      order: ['card', 'alipay', 'wechat_pay'],
      checked: [],
    });

    const refused = await h.remind({ currency: 'USD' }, { failure_code: 'do_not_honor' }, american);
    expect(methodsOn((await h.get(`/r/${refused.token}`)).body).checked).toEqual(['alipay']);
  });

  it('in China, paying in CNY: the wallets first, in the step order, and a Chinese example number', async () => {
    const link = await h.remind({ currency: 'CNY' }, { failure_code: 'do_not_honor' }, chinese);
    const html = (await h.get(`/r/${link.token}`)).body;
    expect(methodsOn(html)).toEqual({ order: ['alipay', 'wechat_pay', 'card'], checked: ['alipay'] });
    expect(html).toContain('请包含国家区号，例如 +86 131 2345 6789');
  });
});
