import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleItems, sampleMessageContext } from '../../src/cadences/cadence-checks.js';
import { parseCadenceDocument, validateCadence } from '../../src/cadences/parse-cadence.js';
import { runPreview } from '../../src/console/cadence-preview.js';
import { previewCadence, type PreviewDeps, type PreviewInput, type PreviewOrder } from '../../src/cadences/preview.js';
import { isRecoupError } from '../../src/platform/errors.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';

const renderer = TemplateRenderer.load('templates');
const deps: PreviewDeps = {
  renderer,
  publicUrl: 'https://pay.example-shop.com',
  shopName: 'Example Shop',
  defaultTimezone: 'UTC',
};
const retryUrl = 'https://pay.example-shop.com/r/PREVIEW000000000000000';

function order(customer: Partial<PreviewOrder['customer']> = {}): PreviewOrder {
  return {
    id: 'ord_1',
    amount: 12900,
    currency: 'CNY',
    description: '2 items',
    customer: {
      name: 'Li Lei',
      email: 'li@example.com',
      phone: '+8613800138000',
      locale: 'zh-CN',
      timezone: 'America/New_York',
      ...customer,
    },
  };
}

function input(doc: Record<string, unknown>, overrides: Partial<PreviewInput> = {}): PreviewInput {
  return {
    name: String(doc.name),
    version: 1,
    cadence: validateCadence(doc, { templates: renderer, requiredLocales: ['en', 'zh-CN'] }),
    order: order(),
    startAt: new Date('2026-11-01T00:00:00Z'),
    failureCategory: 'insufficient_funds',
    ...overrides,
  };
}

// New York falls back from EDT (-04:00) to EST (-05:00) at 02:00 local on 2026-11-01.
const dstCadence = {
  name: 'dst',
  quiet_hours: { start: '21:00', end: '09:00' },
  max_messages_per_day: 2,
  expire_after: '3d',
  steps: [
    { after: '30m', channel: 'sms', template: 'nudge' },
    { after: '2h', channel: 'email', template: 'alternative-methods', offer_methods: ['alipay', 'card'] },
    { after: '25h', channel: 'sms', template: 'last-call' },
  ],
};

describe('previewCadence', () => {
  it('plans a schedule across the fall-back night in the customer timezone, quiet hours applied', () => {
    // Start: 2026-10-31 20:00 EDT.
    const preview = previewCadence(input(dstCadence), deps);
    expect(preview).toMatchObject({
      cadence: 'dst',
      version: 1,
      order_id: 'ord_1',
      timezone: 'America/New_York',
      start_at: '2026-11-01T00:00:00.000Z',
      expires_at: '2026-11-04T00:00:00.000Z',
    });
    expect(
      preview.steps.map(({ step, channel, template, due_at, planned_at, local_time, deferred_by, skipped }) => ({
        step,
        channel,
        template,
        due_at,
        planned_at,
        local_time,
        deferred_by,
        skipped,
      })),
    ).toEqual([
      {
        step: 0,
        channel: 'sms',
        template: 'nudge',
        due_at: '2026-11-01T00:30:00.000Z',
        planned_at: '2026-11-01T00:30:00.000Z',
        local_time: '2026-10-31T20:30:00-04:00',
        deferred_by: null,
        skipped: null,
      },
      {
        // 22:00 EDT is quiet; the night ends at 09:00 EST, an hour later in UTC than the evening's offset says.
        step: 1,
        channel: 'email',
        template: 'alternative-methods',
        due_at: '2026-11-01T02:00:00.000Z',
        planned_at: '2026-11-01T14:00:00.000Z',
        local_time: '2026-11-01T09:00:00-05:00',
        deferred_by: 'quiet_hours',
        skipped: null,
      },
      {
        // 25h after 20:00 EDT is 20:00 EST (not 21:00): outside quiet hours, sent as due.
        step: 2,
        channel: 'sms',
        template: 'last-call',
        due_at: '2026-11-02T01:00:00.000Z',
        planned_at: '2026-11-02T01:00:00.000Z',
        local_time: '2026-11-01T20:00:00-05:00',
        deferred_by: null,
        skipped: null,
      },
    ]);
    expect(preview.steps[1]?.offer_methods).toEqual(['alipay', 'card']);
  });

  it('renders every step in en and zh-CN, SMS and email, with a placeholder link of real length', () => {
    const preview = previewCadence(input(dstCadence), deps);
    const first = preview.steps[0];
    expect(Object.keys(first?.rendered ?? {})).toEqual(['en', 'zh-CN']);

    const en = first?.rendered.en;
    expect(en?.sms).toEqual({
      locale: 'en',
      body: `Example Shop: your payment of CN¥129.00 didn't go through. You can finish it here: ${retryUrl} Reply STOP to opt out.`,
      segments: { encoding: 'GSM-7', units: 159, segments: 1 },
    });
    expect(en?.email.subject).toBe("Your payment to Example Shop didn't go through");
    expect(en?.email.text).toContain(retryUrl);
    expect(en?.email.html).toContain('<html lang="en"');

    const zh = first?.rendered['zh-CN'];
    expect(zh?.sms.body).toBe(
      `【Example Shop】您好，您的订单（¥129.00）付款未成功，点击链接即可继续支付：${retryUrl} 如已付款请忽略。回复STOP退订`,
    );
    // Chinese is UCS-2: 70 units fit one message, longer bodies go in 67-unit segments.
    expect(zh?.sms.segments).toEqual({ encoding: 'UCS-2', units: zh?.sms.body.length, segments: 2 });
    expect(zh?.email.subject).toBe('您在Example Shop的订单付款未成功，可继续完成支付');
    expect(zh?.email.text).toContain(retryUrl);
    // The real token is 22 characters: the placeholder keeps lengths (and segment counts) exact.
    expect(retryUrl.slice(retryUrl.lastIndexOf('/') + 1)).toHaveLength(22);
  });

  it('defers a step past the daily cap to the next local day, counting the steps planned before it', () => {
    const preview = previewCadence(
      input(
        {
          name: 'capped',
          quiet_hours: { start: '21:00', end: '09:00' },
          max_messages_per_day: 1,
          expire_after: '3d',
          steps: [
            { after: '15m', channel: 'sms', template: 'nudge' },
            { after: '2h', channel: 'sms', template: 'last-call' },
          ],
        },
        {
          order: order({ timezone: 'Asia/Shanghai' }),
          startAt: new Date('2026-03-10T02:00:00Z'), // 10:00 in Shanghai
        },
      ),
      deps,
    );
    expect(preview.steps.map((s) => [s.planned_at, s.local_time, s.deferred_by])).toEqual([
      ['2026-03-10T02:15:00.000Z', '2026-03-10T10:15:00+08:00', null],
      // The cap moves it to the next day, whose first allowed minute is the end of quiet hours.
      ['2026-03-11T01:00:00.000Z', '2026-03-11T09:00:00+08:00', 'daily_cap'],
    ]);
  });

  it('counts messages already sent to the customer toward the cap', () => {
    const preview = previewCadence(
      input(
        {
          name: 'capped',
          max_messages_per_day: 1,
          expire_after: '3d',
          steps: [{ after: '15m', channel: 'sms', template: 'nudge' }],
        },
        {
          order: order({ timezone: 'Asia/Shanghai' }),
          startAt: new Date('2026-03-10T02:00:00Z'),
          recentSends: [new Date('2026-03-10T01:00:00Z')],
        },
      ),
      deps,
    );
    expect(preview.steps[0]).toMatchObject({
      planned_at: '2026-03-10T16:00:00.000Z',
      local_time: '2026-03-11T00:00:00+08:00',
      deferred_by: 'daily_cap',
    });
  });

  it("counts messages sent to the step's address under other customer ids toward the cap, on that channel only", () => {
    const previewOn = (channel: 'sms' | 'email') =>
      previewCadence(
        input(
          {
            name: 'capped',
            max_messages_per_day: 1,
            expire_after: '3d',
            steps: [{ after: '15m', channel, template: 'nudge' }],
          },
          {
            order: order({ timezone: 'Asia/Shanghai' }),
            startAt: new Date('2026-03-10T02:00:00Z'),
            addressSends: new Map([['sms', [new Date('2026-03-10T01:00:00Z')]]]),
          },
        ),
        deps,
      ).steps[0];
    expect(previewOn('sms')).toMatchObject({ planned_at: '2026-03-10T16:00:00.000Z', deferred_by: 'daily_cap' });
    expect(previewOn('email')).toMatchObject({ planned_at: '2026-03-10T02:15:00.000Z', deferred_by: null });
  });

  it('marks a step that the deferral pushes past expire_after as expired, and every later one', () => {
    const preview = previewCadence(
      input(
        {
          name: 'short',
          max_messages_per_day: 1,
          expire_after: '3h',
          steps: [
            { after: '15m', channel: 'sms', template: 'nudge' },
            { after: '2h', channel: 'sms', template: 'nudge' },
            { after: '150m', channel: 'email', template: 'last-call' },
          ],
        },
        { order: order({ timezone: 'Asia/Shanghai' }), startAt: new Date('2026-03-10T02:00:00Z') },
      ),
      deps,
    );
    expect(preview.steps.map((s) => s.skipped)).toEqual([null, 'expired', 'expired']);
  });

  it('applies the contact rule: a missing or bad address switches channel, an opt-out with no fallback skips', () => {
    const noPhone = previewCadence(input(dstCadence, { order: order({ phone: null }) }), deps);
    expect(noPhone.steps.map((s) => [s.channel, s.skipped])).toEqual([
      ['email', null],
      ['email', null],
      ['email', null],
    ]);

    const badEmail = previewCadence(input(dstCadence, { order: order({ emailBadReason: 'invalid_address' }) }), deps);
    expect(badEmail.steps.map((s) => s.channel)).toEqual(['sms', 'sms', 'sms']);

    const optedOut = previewCadence(
      input(dstCadence, { order: order({ email: null }), suppressed: new Map([['sms', 'stop_reply']]) }),
      deps,
    );
    expect(optedOut.steps.map((s) => [s.channel, s.skipped])).toEqual([
      ['sms', 'suppressed'],
      ['email', 'no_contact'],
      ['sms', 'suppressed'],
    ]);
  });

  it('falls back to the default timezone for a customer without one', () => {
    const preview = previewCadence(input(dstCadence, { order: order({ timezone: null }) }), deps);
    expect(preview.timezone).toBe('UTC');
    // 00:30 UTC is inside 21:00–09:00 UTC quiet hours; the next step, due at 02:00, waits for the first
    // and then keeps the cadence's 1 h 30 min from it: deferred by the same quiet hours.
    expect(preview.steps.map((s) => [s.due_at, s.planned_at, s.deferred_by])).toEqual([
      ['2026-11-01T00:30:00.000Z', '2026-11-01T09:00:00.000Z', 'quiet_hours'],
      ['2026-11-01T02:00:00.000Z', '2026-11-01T10:30:00.000Z', 'quiet_hours'],
      ['2026-11-02T01:00:00.000Z', '2026-11-02T09:00:00.000Z', 'quiet_hours'],
    ]);
  });

  describe('with a template that fails in strict mode', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-preview-'));
    fs.cpSync('templates', dir, { recursive: true });
    for (const locale of ['en', 'zh-CN']) {
      const folder = path.join(dir, 'broken', locale);
      fs.mkdirSync(folder, { recursive: true });
      fs.writeFileSync(path.join(folder, 'sms.hbs'), '{{shop.name}}: {{order.total}} {{retryUrl}}');
      fs.writeFileSync(path.join(folder, 'subject.hbs'), 'Subject');
      fs.writeFileSync(path.join(folder, 'html.hbs'), '<p>{{retryUrl}}</p>');
      fs.writeFileSync(path.join(folder, 'text.hbs'), '{{retryUrl}}');
    }
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('throws a validation error naming the step and the template part', () => {
      const broken = TemplateRenderer.load(dir);
      const cadence = validateCadence(
        {
          name: 'broken',
          expire_after: '1d',
          steps: [
            { after: '1m', channel: 'sms', template: 'nudge' },
            { after: '2m', channel: 'sms', template: 'broken' },
          ],
        },
        { templates: broken },
      );
      const run = () =>
        previewCadence({ ...input(dstCadence), name: 'broken', cadence }, { ...deps, renderer: broken });
      let caught: unknown;
      try {
        run();
      } catch (err) {
        caught = err;
      }
      expect(isRecoupError(caught, 'validation')).toBe(true);
      const issues = isRecoupError(caught) ? caught.issues : [];
      expect(issues.map((i) => i.path)).toEqual(['steps[1].template', 'steps[1].template']);
      expect(issues[0]?.message).toMatch(/^broken\/en\/sms: .*total/);
      expect(issues[1]?.message).toMatch(/^broken\/zh-CN\/sms: /);
    });
  });
});

describe('previews of the cart', () => {
  it("renders an order's lines in each preview email", () => {
    const items = [{ name: 'Longjing tea', quantity: 2, amount: 9800, image_url: 'https://cdn.example.com/t.jpg' }];
    const preview = previewCadence(input(dstCadence, { order: { ...order(), items } }), deps);
    const email = preview.steps[1]?.rendered['en']?.email;
    expect(email?.text).toContain('Longjing tea × 2  CN¥98.00');
    expect(email?.html).toContain('<img src="https://cdn.example.com/t.jpg"');
  });

  it('gives the console preview and the sample context (checks, test sends) a sample cart', () => {
    const doc = validateCadence(dstCadence, { templates: renderer, requiredLocales: ['en', 'zh-CN'] });
    const outcome = runPreview(
      { name: 'dst', version: 1, cadence: doc },
      { timezone: 'Asia/Shanghai', locale: 'zh-CN', start: '' },
      deps,
      new Date('2026-11-01T00:00:00Z'),
    );
    if (!outcome.ok) throw new Error(JSON.stringify(outcome.issues));
    const text = outcome.view.steps[1]?.renders[0]?.email.text;
    expect(text).toContain('West Lake Longjing tea gift box × 2  ¥98.00\nCeladon tea cup × 1  ¥31.00\n');

    const context = sampleMessageContext({ publicUrl: deps.publicUrl, shopName: deps.shopName });
    expect(context.order.items).toEqual(sampleItems);
    expect(renderer.renderEmail('nudge', 'en', context).text).toContain('Celadon tea cup × 1  CN¥31.00');
  });
});

describe('the default cadence after an evening failure', () => {
  const [defaultCadence] = parseCadenceDocument(fs.readFileSync('cadences/default.yaml', 'utf8'), {
    templates: renderer,
  });
  if (!defaultCadence) throw new Error('cadences/default.yaml has no cadence');
  // 20:50 in Shanghai: the SMS (15 min) and the email (2 h) both fall in the 21:00–09:00 quiet hours.
  const startAt = new Date('2026-03-10T12:50:00Z');

  it('sends the SMS at 09:00 and the email its cadence spacing later, both noted as deferred by quiet hours', () => {
    const preview = previewCadence(
      {
        name: 'default',
        version: 1,
        cadence: defaultCadence,
        order: order({ timezone: 'Asia/Shanghai' }),
        startAt,
        failureCategory: 'insufficient_funds',
      },
      deps,
    );
    expect(preview.steps.map((s) => [s.channel, s.local_time, s.deferred_by])).toEqual([
      ['sms', '2026-03-11T09:00:00+08:00', 'quiet_hours'],
      ['email', '2026-03-11T10:45:00+08:00', 'quiet_hours'],
      // Two messages that day already: the daily cap of 2 moves the last one to the next morning.
      ['sms', '2026-03-12T09:00:00+08:00', 'daily_cap'],
    ]);
    // With the gap turned off the email would go out with the SMS, as before it existed.
    const stacked = previewCadence(
      {
        name: 'default',
        version: 1,
        cadence: defaultCadence,
        order: order({ timezone: 'Asia/Shanghai' }),
        startAt,
        failureCategory: 'insufficient_funds',
      },
      { ...deps, stepMinGapMs: 0 },
    );
    expect(stacked.steps[1]?.local_time).toBe('2026-03-11T09:00:00+08:00');
  });

  it('shows the deferral note on both steps in the console preview', () => {
    const outcome = runPreview(
      { name: 'default', version: 1, cadence: defaultCadence },
      { timezone: 'Asia/Shanghai', locale: 'en', start: '2026-03-10T20:50' },
      deps,
      startAt,
    );
    if (!outcome.ok) throw new Error(JSON.stringify(outcome.issues));
    expect(outcome.view.steps.map((s) => [s.plannedLocal, s.deferredBy, s.dueLocal])).toEqual([
      [expect.stringContaining('09:00'), 'quiet hours', expect.stringContaining('21:05')],
      [expect.stringContaining('10:45'), 'quiet hours', expect.stringContaining('22:50')],
      [expect.stringContaining('09:00'), 'daily cap', expect.stringContaining('20:50')],
    ]);
  });
});
