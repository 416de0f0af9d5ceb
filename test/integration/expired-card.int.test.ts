import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageStrings } from '../../src/http/pages/page-strings.js';
import { startRetryHarness, type RetryHarness } from '../helpers/retry-harness.js';

// A card that has expired cannot be fixed by checking the details typed: the reminder and the retry
// page say it has expired and point to another card or another method.

const cadences = `
name: default
expire_after: 3d
steps:
  - { after: 1m, channel: email, template: nudge }
`;

describe('an expired card', () => {
  let h: RetryHarness;

  beforeAll(async () => {
    h = await startRetryHarness({ cadences, start: '2026-11-25T12:00:00Z' });
  });
  afterAll(async () => {
    await h?.close();
  });

  const expired = { gateway: 'stripe', method: 'card', failure_code: 'expired_card', failure_message: null };

  it('is named in the reminder and on the page, in English', async () => {
    const link = await h.remind({}, expired, { locale: 'en-US' });
    expect(link.message.text).toContain('The card you used has expired.');
    expect(link.message.text).toContain('Please pay with another card, or choose another payment method.');
    expect(link.message.text).not.toMatch(/didn't match|check your card details/);

    const page = (await h.get(`/r/${link.token}`)).body;
    expect(page).toContain(pageStrings.en.reasonDetails.card_expired);
    expect(page).not.toContain(pageStrings.en.reasons.card_data);
  });

  it('is named in the reminder and on the page, in Chinese', async () => {
    const link = await h.remind({}, expired, { locale: 'zh-CN' });
    expect(link.message.text).toContain('您使用的银行卡已过期。');
    expect(link.message.text).not.toContain('核对银行卡信息');

    const page = (await h.get(`/r/${link.token}`)).body;
    expect(page).toContain(pageStrings['zh-CN'].reasonDetails.card_expired);
    expect(page).not.toContain(pageStrings['zh-CN'].reasons.card_data);
  });

  it('leaves a wrong security code explained as details that did not match', async () => {
    const link = await h.remind({}, { ...expired, failure_code: 'incorrect_cvc' }, { locale: 'en' });
    expect(link.message.text).toContain("Some of the card details didn't match");
    expect((await h.get(`/r/${link.token}`)).body).toContain(pageStrings.en.reasons.card_data);
  });
});
