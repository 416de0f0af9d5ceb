import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { validateCadence } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage } from '../../src/channels/email-sender.js';
import type { OutboxSmsFile } from '../../src/channels/outbox-sms-sender.js';
import type { SendReceipt, SmsMessage } from '../../src/channels/sms-sender.js';
import { FixedClock } from '../../src/platform/clock.js';
import { rows } from '../../src/db/rows.js';
import { createLogger } from '../../src/platform/logger.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { makeEvent, startTestService, testApiKey, type TestService } from '../helpers/service.js';

/** Records sends; dispatch is driven by hand so that each step runs exactly when the test says. */
class RecordingSender<M extends { messageId: string }> {
  readonly transport = 'recording';
  readonly sent: M[] = [];
  async send(message: M): Promise<SendReceipt> {
    this.sent.push(message);
    return { providerId: `rec-${this.sent.length}`, acceptedAt: new Date() };
  }
  async close() {}
}

interface Problem {
  status: number;
  errors?: Array<{ path: string; message: string }>;
}

interface RecoveryRow {
  id: string;
  cadence_version: number;
  step_index: number;
  wake_seq: number;
  next_run_at: Date | null;
  started_at: Date;
  expires_at: Date;
}

/** The bundled templates plus three that break the rules: no SMS text, English only, a strict-mode failure. */
function fixtureTemplates(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-templates-'));
  fs.cpSync('templates', dir, { recursive: true });
  const write = (template: string, locale: string, parts: Record<string, string>) => {
    const folder = path.join(dir, template, locale);
    fs.mkdirSync(folder, { recursive: true });
    for (const [part, text] of Object.entries(parts)) fs.writeFileSync(path.join(folder, `${part}.hbs`), text);
  };
  const emailOnly = {
    sms: '',
    subject: 'Your order at {{shop.name}}',
    html: '<p>{{retryUrl}}</p>',
    text: '{{retryUrl}}',
  };
  write('email-only', 'en', emailOnly);
  write('email-only', 'zh-CN', emailOnly);
  write('en-only', 'en', { sms: '{{shop.name}} {{retryUrl}}', subject: 'Hi', html: '<p>Hi</p>', text: 'Hi' });
  const broken = { sms: '{{shop.name}} {{order.total}}', subject: 'Hi', html: '<p>Hi</p>', text: 'Hi' };
  write('broken', 'en', broken);
  write('broken', 'zh-CN', broken);
  return dir;
}

describe('cadence management API', () => {
  let svc: TestService;
  let templatesDir: string;
  let financeKey: string;
  let opsKey: string;

  beforeAll(async () => {
    templatesDir = fixtureTemplates();
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: {
        TEMPLATES_DIR: templatesDir,
        // Alipay through Stripe, which does not take it in INR: an offer the gateways cannot honour.
        PAYMENT_GATEWAY_ALIPAY: 'stripe',
        STRIPE_SECRET_KEY: 'sk_test_cadences',
        STRIPE_WEBHOOK_SECRET: 'whsec_cadences',
      },
    });
    const ctx = { actor: 'test', at: new Date() };
    financeKey = (await createApiKey(svc.database.db, { name: 'finance', scopes: ['finance'] }, ctx)).key;
    opsKey = (await createApiKey(svc.database.db, { name: 'ops', scopes: ['ops'] }, ctx)).key;
  });
  afterAll(async () => {
    await svc?.close();
    fs.rmSync(templatesDir, { recursive: true, force: true });
  });

  async function call(
    method: string,
    url: string,
    body?: unknown,
    options: { key?: string | null; type?: string } = {},
  ): Promise<{ status: number; type: string; json: Record<string, unknown> }> {
    const type = options.type ?? 'application/json';
    const response = await fetch(`${svc.url}${url}`, {
      method,
      headers: {
        ...(options.key === null ? {} : { authorization: `Bearer ${options.key ?? testApiKey}` }),
        ...(body === undefined ? {} : { 'content-type': type }),
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return {
      status: response.status,
      type: response.headers.get('content-type') ?? '',
      json: (await response.json()) as Record<string, unknown>,
    };
  }

  async function auditRows(subject: string) {
    return rows<{ actor: string; action: string; before: unknown; after: Record<string, unknown> | null }>(
      svc.database.db,
      // A save and its activation share one instant: saved sorts first.
      sql`select actor, action, before, after from audit_log where subject = ${subject} order by at, action desc`,
    );
  }

  function paths(result: { json: Record<string, unknown> }): string[] {
    return ((result.json as unknown as Problem).errors ?? []).map((e) => e.path).sort();
  }

  function messageAt(result: { json: Record<string, unknown> }, path: string): string[] {
    return ((result.json as unknown as Problem).errors ?? []).filter((e) => e.path === path).map((e) => e.message);
  }

  describe('versions', () => {
    const yaml = `# Two SMS reminders
name: crud
description: First version
match: { currencies: [CNY] }
expire_after: 2d
steps:
  - { after: 15m, channel: sms, template: nudge }
  - { after: 2h, channel: email, template: alternative-methods, offer_methods: [alipay, card] }
`;
    const v2 = {
      name: 'crud',
      description: 'Second version',
      match: { currencies: ['CNY'] },
      quiet_hours: { start: '21:00', end: '09:00' },
      expire_after: '3d',
      steps: [
        { after: '30m', channel: 'sms', template: 'nudge' },
        { after: '1d', channel: 'sms', template: 'last-call' },
      ],
    };

    it('creates a cadence from YAML as version 1, active, keeping its source', async () => {
      const created = await call('POST', '/v1/cadences', yaml, { type: 'application/yaml' });
      expect(created.status).toBe(201);
      expect(created.json).toMatchObject({
        name: 'crud',
        version: 1,
        active: true,
        created: true,
        activated: true,
        previous_active: null,
        source: yaml,
        definition: {
          name: 'crud',
          description: 'First version',
          expire_after: '2d',
          steps: [
            { after: '15m', channel: 'sms', template: 'nudge', offer_methods: ['card', 'alipay', 'wechat_pay'] },
            { after: '2h', channel: 'email', template: 'alternative-methods', offer_methods: ['alipay', 'card'] },
          ],
        },
      });

      const again = await call('POST', '/v1/cadences', yaml, { type: 'text/yaml' });
      expect(again.status).toBe(409);
    });

    it('saves every changed PUT as a new immutable version that becomes active', async () => {
      const saved = await call('PUT', '/v1/cadences/crud', v2);
      expect(saved.status).toBe(201);
      expect(saved.json).toMatchObject({ version: 2, active: true, created: true, previous_active: 1 });
      expect(JSON.parse(String(saved.json.source))).toEqual(v2);

      // The same definition again is not a change: no version 3.
      const same = await call('PUT', '/v1/cadences/crud', v2);
      expect(same.status).toBe(200);
      expect(same.json).toMatchObject({ version: 2, created: false, activated: false });

      // Version 1 is untouched.
      const first = await call('GET', '/v1/cadences/crud/versions/1');
      expect(first.status).toBe(200);
      expect(first.json).toMatchObject({ version: 1, active: false, definition: { description: 'First version' } });
      expect((await call('GET', '/v1/cadences/crud/versions/7')).status).toBe(404);
      expect((await call('GET', '/v1/cadences/crud/versions/x')).status).toBe(404);
    });

    it('saves without activating on ?activate=false, then activates on request', async () => {
      const draft = await call('PUT', '/v1/cadences/crud?activate=false', { ...v2, description: 'Draft' });
      expect(draft.status).toBe(201);
      expect(draft.json).toMatchObject({ version: 3, active: false, activated: false });

      const history = await call('GET', '/v1/cadences/crud');
      expect(history.json).toMatchObject({
        name: 'crud',
        active_version: 2,
        latest_version: 3,
        active: { version: 2, definition: { description: 'Second version' } },
      });
      expect(history.json.versions).toEqual([
        expect.objectContaining({ version: 1, active: false, saved_by: 'key:env-0', description: 'First version' }),
        expect.objectContaining({ version: 2, active: true, saved_by: 'key:env-0', steps: 2 }),
        expect.objectContaining({ version: 3, active: false, description: 'Draft' }),
      ]);

      const listed = await call('GET', '/v1/cadences');
      expect((listed.json.cadences as Array<Record<string, unknown>>).find((c) => c.name === 'crud')).toMatchObject({
        active_version: 2,
        latest_version: 3,
        active: { version: 2 },
        latest: { version: 3, active: false },
      });

      const activated = await call('POST', '/v1/cadences/crud/activate', { version: 3 });
      expect(activated.status).toBe(200);
      expect(activated.json).toMatchObject({ version: 3, active: true, changed: true, previous_active: 2 });
      const twice = await call('POST', '/v1/cadences/crud/activate', { version: 3 });
      expect(twice.json).toMatchObject({ changed: false });
      expect((await call('POST', '/v1/cadences/crud/activate', { version: 9 })).status).toBe(404);
      expect(paths(await call('POST', '/v1/cadences/crud/activate', { version: '3' }))).toEqual(['version']);

      const list = await call('GET', '/v1/cadences');
      const crud = (list.json.cadences as Array<Record<string, unknown>>).find((c) => c.name === 'crud');
      expect(crud).toMatchObject({
        active_version: 3,
        latest_version: 3,
        active: { version: 3 },
        latest: { version: 3 },
      });
      // The bundled cadences are listed too.
      expect((list.json.cadences as Array<{ name: string }>).map((c) => c.name)).toEqual(
        expect.arrayContaining(['crud', 'default', 'demo']),
      );
    });

    it('audits every save and activation with the caller and before/after', async () => {
      const audit = await auditRows('cadence:crud');
      expect(audit.map((a) => [a.action, a.actor])).toEqual([
        ['cadence.saved', 'key:env-0'],
        ['cadence.activated', 'key:env-0'],
        ['cadence.saved', 'key:env-0'],
        ['cadence.activated', 'key:env-0'],
        ['cadence.saved', 'key:env-0'],
        ['cadence.activated', 'key:env-0'],
      ]);
      expect(audit[0]).toMatchObject({
        before: null,
        after: { version: 1, definition: { description: 'First version' } },
      });
      expect(audit[2]).toMatchObject({
        before: { version: 1, definition: { description: 'First version' } },
        after: { version: 2, definition: { description: 'Second version', quiet_hours: { start: '21:00' } } },
      });
      expect(audit[5]).toMatchObject({ before: { version: 2 }, after: { version: 3 } });
    });

    it('rejects a body whose name is not the path, lists, bad YAML and other media types', async () => {
      const mismatch = await call('PUT', '/v1/cadences/crud', { ...v2, name: 'other', expire_after: 'soon' });
      expect(mismatch.status).toBe(400);
      expect(mismatch.type).toMatch(/^application\/problem\+json/);
      expect(paths(mismatch)).toEqual(['expire_after', 'name']);
      expect(messageAt(mismatch, 'name')).toEqual(['must be "crud", the cadence in the path']);

      const list = await call('POST', '/v1/cadences', `- ${yaml.replace(/\n/g, '\n  ')}`, { type: 'application/yaml' });
      expect(list.status).toBe(400);
      expect(list.json).toMatchObject({ errors: [{ path: '', message: 'send one cadence (a mapping), not a list' }] });

      const syntax = await call('POST', '/v1/cadences', 'name: [unclosed', { type: 'application/yaml' });
      expect(syntax.status).toBe(400);
      expect(messageAt(syntax, '')[0]).toMatch(/^YAML syntax error/);

      expect((await call('POST', '/v1/cadences', yaml, { type: 'text/plain' })).status).toBe(415);
      expect(paths(await call('PUT', '/v1/cadences/crud?activate=maybe', v2))).toEqual(['activate']);
    });
  });

  describe('validation', () => {
    const bad = `name: bad
match: { currencies: [INR] }
quiet_hours: { start: '25:00', end: '09:00' }
expire_after: 1h
steps:
  - { after: 30m, channel: sms, template: email-only }
  - { after: 20m, channel: email, template: nosuch }
  - { after: 2h, channel: email, template: en-only, offer_methods: [card, alipay] }
`;

    it('reports every rule at once, each at its path', async () => {
      const result = await call('POST', '/v1/cadences', bad, { type: 'application/yaml' });
      expect(result.status).toBe(400);
      expect(result.type).toMatch(/^application\/problem\+json/);
      expect(paths(result)).toEqual([
        'quiet_hours.start',
        'steps[0].channel',
        'steps[1].after',
        'steps[1].template',
        'steps[2].after',
        'steps[2].offer_methods[1]',
        'steps[2].template',
      ]);
      expect(messageAt(result, 'quiet_hours.start')).toEqual(['must be a 24-hour time HH:MM, e.g. "21:00"']);
      expect(messageAt(result, 'steps[0].channel')).toEqual([
        'template "email-only" cannot be sent by SMS: its sms part renders empty in en, zh-CN',
      ]);
      expect(messageAt(result, 'steps[1].after')).toEqual([
        '20m must be later than steps[0].after (30m); steps run in the order listed',
      ]);
      expect(messageAt(result, 'steps[1].template')).toEqual(['unknown template "nosuch"']);
      expect(messageAt(result, 'steps[2].after')).toEqual([
        '2h must be earlier than expire_after (1h), or the step never runs',
      ]);
      expect(messageAt(result, 'steps[2].template')).toEqual(['template "en-only" is missing locale zh-CN']);
      expect(messageAt(result, 'steps[2].offer_methods[1]')).toEqual([
        'no configured payment gateway takes alipay in INR; offer another method or match other currencies',
      ]);
      // Nothing was stored.
      expect((await call('GET', '/v1/cadences/bad')).status).toBe(404);
    });

    it('checks the same rules for JSON bodies', async () => {
      const result = await call('PUT', '/v1/cadences/bad', {
        name: 'bad',
        quiet_hours: { start: '21:00', end: '21:00' },
        expire_after: '1d',
        steps: [{ after: '1h', channel: 'email', template: 'nudge', offer_methods: ['wechat_pay'] }],
      });
      expect(result.status).toBe(400);
      expect(paths(result)).toEqual(['quiet_hours.end']);
      expect(messageAt(result, 'quiet_hours.end')).toEqual(['must differ from start']);
    });

    it('accepts an offered method a gateway takes in one of the matched currencies', async () => {
      const result = await call('PUT', '/v1/cadences/wallets', {
        name: 'wallets',
        match: { currencies: ['INR', 'CNY'] },
        expire_after: '1d',
        steps: [{ after: '1h', channel: 'sms', template: 'nudge', offer_methods: ['alipay'] }],
      });
      expect(result.status).toBe(201);
    });

    it('refuses a template the step could fall back to but not send, unless switching is off', async () => {
      const doc = {
        name: 'fallback',
        expire_after: '1d',
        steps: [{ after: '1h', channel: 'email', template: 'email-only' }],
      };
      const refused = await call('PUT', '/v1/cadences/fallback', doc);
      expect(refused.status).toBe(400);
      expect(paths(refused)).toEqual(['steps[0].template']);
      expect(messageAt(refused, 'steps[0].template')[0]).toMatch(
        /^template "email-only" has no SMS .* switch_channel_on_failure would send this step by SMS/,
      );
      const saved = await call('PUT', '/v1/cadences/fallback', { ...doc, switch_channel_on_failure: false });
      expect(saved.status).toBe(201);
    });

    it('refuses a template that fails to render in strict mode', async () => {
      const result = await call('PUT', '/v1/cadences/broken', {
        name: 'broken',
        expire_after: '1d',
        steps: [{ after: '1h', channel: 'sms', template: 'broken' }],
      });
      expect(result.status).toBe(400);
      expect(paths(result)).toEqual(['steps[0].template']);
      expect(messageAt(result, 'steps[0].template')[0]).toMatch(/^broken\/en\/sms: .*total/);
    });
  });

  describe('version pinning and migration', () => {
    const sms = new RecordingSender<SmsMessage>();
    const email = new RecordingSender<EmailMessage>();
    const clock = new FixedClock(new Date());
    let dispatch: DispatchDeps;
    const v1 = {
      name: 'pin',
      match: { by_name_only: true },
      expire_after: '1h',
      steps: [
        { after: '1m', channel: 'sms', template: 'nudge' },
        { after: '2m', channel: 'sms', template: 'nudge' },
        { after: '3m', channel: 'sms', template: 'nudge' },
      ],
    };
    const v2 = {
      ...v1,
      expire_after: '2h',
      steps: [
        { after: '1m', channel: 'sms', template: 'nudge' },
        { after: '2m', channel: 'sms', template: 'last-call' },
      ],
    };

    beforeAll(() => {
      const core = svc.service.core;
      dispatch = {
        db: core.database.db,
        cadences: core.cadences,
        renderer: core.renderer,
        sms,
        email,
        clock,
        logger: createLogger('silent'),
        settings: {
          publicUrl: svc.config.publicUrl,
          shopName: 'Example Shop',
          defaultTimezone: 'UTC',
          defaultLocale: 'en',
          retryLinkTtlMs: 86_400_000,
          quietHoursSpreadMs: 0,
          sendMaxAttempts: 3,
          sendRetryBaseMs: 60_000,
          claimStaleAfterMs: 120_000,
        },
      };
    });

    async function startOrder(cadence = 'pin'): Promise<string> {
      const event = makeEvent({}, { cadence });
      const response = await svc.post(event);
      expect(response.status).toBeLessThan(300);
      return event.order.id;
    }

    async function recoveryOf(orderId: string): Promise<RecoveryRow> {
      const [row] = await rows<RecoveryRow>(
        svc.database.db,
        sql`select id, cadence_version, step_index, wake_seq, next_run_at, started_at, expires_at
            from recoveries where order_id = ${orderId}`,
      );
      if (!row) throw new Error(`no recovery for ${orderId}`);
      return row;
    }

    /** Runs the recovery's due wake-up as the worker would, at its time. */
    async function runStep(orderId: string): Promise<string> {
      const recovery = await recoveryOf(orderId);
      if (recovery.next_run_at) clock.set(recovery.next_run_at);
      const result = await dispatchStep(dispatch, { recoveryId: recovery.id, wakeSeq: recovery.wake_seq });
      expect(result.action).toBe('sent');
      const [message] = await rows<{ template: string }>(
        svc.database.db,
        sql`select template from messages where id = ${result.messageId ?? ''}`,
      );
      return message?.template ?? '';
    }

    it('keeps running recoveries on the version they started with after a new one is activated', async () => {
      expect((await call('PUT', '/v1/cadences/pin', v1)).status).toBe(201);
      const first = await startOrder();
      const second = await startOrder();
      expect((await recoveryOf(first)).cadence_version).toBe(1);

      const saved = await call('PUT', '/v1/cadences/pin', v2);
      expect(saved.json).toMatchObject({ version: 2, active: true });

      // The v1 recovery's second step still uses v1's template (nudge, not v2's last-call).
      expect(await runStep(first)).toBe('nudge');
      expect(await runStep(first)).toBe('nudge');
      expect(sms.sent.at(-1)?.body).toContain('点击链接即可继续支付'); // nudge in the customer's zh-CN
      expect((await recoveryOf(first)).cadence_version).toBe(1);

      // New orders start on v2.
      expect((await recoveryOf(await startOrder())).cadence_version).toBe(2);
      expect((await recoveryOf(second)).cadence_version).toBe(1);
    });

    it('moves active recoveries explicitly, past the templates they were sent', async () => {
      const [first, second] = await rows<{ order_id: string }>(
        svc.database.db,
        sql`select order_id from recoveries where cadence_name = 'pin' and cadence_version = 1 order by step_index desc`,
      );
      const ahead = await recoveryOf(first?.order_id ?? '');
      const behind = await recoveryOf(second?.order_id ?? '');
      expect([ahead.step_index, behind.step_index]).toEqual([2, 0]);

      const migrated = await call('POST', '/v1/cadences/pin/migrate', { from_version: 1, to_version: 2 });
      expect(migrated.status).toBe(200);
      expect(migrated.json).toEqual({ cadence: 'pin', from_version: 1, to_version: 2, moved: 2, to_expiry: 0 });

      // Sent nudge twice: v2's one nudge is done, its last-call is not; the expiry is v2's (start + 2h).
      const aheadAfter = await recoveryOf(first?.order_id ?? '');
      const expiry = new Date(ahead.started_at.getTime() + 2 * 3_600_000);
      expect(aheadAfter).toMatchObject({ cadence_version: 2, step_index: 1, expires_at: expiry });
      expect(aheadAfter.wake_seq).toBe(ahead.wake_seq + 1);
      expect(await runStep(first?.order_id ?? '')).toBe('last-call');
      expect(await recoveryOf(first?.order_id ?? '')).toMatchObject({ step_index: 2, next_run_at: expiry });

      // The other one continues on v2: its second step is v2's last-call.
      const behindAfter = await recoveryOf(second?.order_id ?? '');
      expect(behindAfter).toMatchObject({ cadence_version: 2, step_index: 0 });
      expect(await runStep(second?.order_id ?? '')).toBe('nudge');
      expect(await runStep(second?.order_id ?? '')).toBe('last-call');

      const audit = (await auditRows('cadence:pin')).filter((a) => a.action === 'cadence.migrated');
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({
        actor: 'key:env-0',
        before: { version: 1 },
        after: { version: 2, moved: 2, to_expiry: 0, recovery_ids: expect.arrayContaining([ahead.id, behind.id]) },
      });

      // Nothing is left on v1; bad requests are refused.
      const again = await call('POST', '/v1/cadences/pin/migrate', { from_version: 1, to_version: 2 });
      expect(again.json).toMatchObject({ moved: 0 });
      expect((await call('POST', '/v1/cadences/pin/migrate', { from_version: 1, to_version: 5 })).status).toBe(404);
      expect(paths(await call('POST', '/v1/cadences/pin/migrate', { from_version: 2, to_version: 2 }))).toEqual([
        'to_version',
      ]);
    });

    it('never sends a template again when steps are reordered, removed or added', async () => {
      const before = {
        name: 'reorder',
        match: { by_name_only: true },
        expire_after: '1h',
        steps: [
          { after: '1m', channel: 'sms', template: 'nudge' },
          { after: '2m', channel: 'sms', template: 'alternative-methods' },
          { after: '3m', channel: 'sms', template: 'last-call' },
        ],
      };
      // alternative-methods is gone, gateway-restored is new, nudge moved from first to last.
      const after = {
        ...before,
        steps: [
          { after: '1m', channel: 'sms', template: 'last-call' },
          { after: '2m', channel: 'sms', template: 'gateway-restored' },
          { after: '3m', channel: 'sms', template: 'nudge' },
        ],
      };
      expect((await call('PUT', '/v1/cadences/reorder', before)).status).toBe(201);
      const one = await startOrder('reorder');
      const two = await startOrder('reorder');
      const fresh = await startOrder('reorder');
      expect(await runStep(one)).toBe('nudge');
      expect(await runStep(two)).toBe('nudge');
      expect(await runStep(two)).toBe('alternative-methods');
      expect((await call('PUT', '/v1/cadences/reorder', after)).json).toMatchObject({ version: 2 });

      const migrated = await call('POST', '/v1/cadences/reorder/migrate', { from_version: 1, to_version: 2 });
      expect(migrated.json).toMatchObject({ moved: 3, to_expiry: 0 });
      for (const order of [one, two, fresh]) {
        expect(await recoveryOf(order)).toMatchObject({ cadence_version: 2, step_index: 0 });
      }

      /** Runs every wake-up until the recovery waits for its expiry; returns the templates sent, in order. */
      async function runToEnd(orderId: string): Promise<string[]> {
        for (let i = 0; i < 10; i += 1) {
          const recovery = await recoveryOf(orderId);
          if (recovery.step_index >= after.steps.length) break;
          if (recovery.next_run_at) clock.set(recovery.next_run_at);
          await dispatchStep(dispatch, { recoveryId: recovery.id, wakeSeq: recovery.wake_seq });
        }
        const sent = await rows<{ template: string }>(
          svc.database.db,
          sql`select m.template from messages m join recoveries r on r.id = m.recovery_id
              where r.order_id = ${orderId} and m.status = 'sent' order by m.sent_at, m.created_at`,
        );
        return sent.map((m) => m.template);
      }
      expect(await runToEnd(one)).toEqual(['nudge', 'last-call', 'gateway-restored']);
      expect(await runToEnd(two)).toEqual(['nudge', 'alternative-methods', 'last-call', 'gateway-restored']);
      expect(await runToEnd(fresh)).toEqual(['last-call', 'gateway-restored', 'nudge']);
    });

    it('moves a holdout recovery to the new expiry however many steps the new version has', async () => {
      const shorter = {
        name: 'control',
        match: { by_name_only: true },
        expire_after: '1h',
        holdout_percent: 50,
        steps: [{ after: '1m', channel: 'sms', template: 'nudge' }],
      };
      expect((await call('PUT', '/v1/cadences/control', shorter)).status).toBe(201);
      let holdout: string | undefined;
      for (let i = 0; i < 40 && !holdout; i += 1) {
        const order = await startOrder('control');
        if ((await recoveryOf(order)).step_index === 1) holdout = order;
      }
      if (!holdout) throw new Error('no order fell in the holdout group');
      const longer = { ...shorter, steps: [...shorter.steps, { after: '2m', channel: 'sms', template: 'last-call' }] };
      expect((await call('PUT', '/v1/cadences/control', longer)).json).toMatchObject({ version: 2 });

      expect((await call('POST', '/v1/cadences/control/migrate', { from_version: 1, to_version: 2 })).status).toBe(200);
      const after = await recoveryOf(holdout);
      expect(after).toMatchObject({ cadence_version: 2, step_index: 2, next_run_at: after.expires_at });
    });
  });

  describe('preview', () => {
    const dst = {
      name: 'dst',
      match: { by_name_only: true },
      quiet_hours: { start: '21:00', end: '09:00' },
      max_messages_per_day: 2,
      expire_after: '3d',
      steps: [
        { after: '30m', channel: 'sms', template: 'nudge' },
        { after: '2h', channel: 'email', template: 'alternative-methods' },
        { after: '25h', channel: 'sms', template: 'last-call' },
      ],
    };
    const order = {
      id: 'ord_preview',
      amount: 12900,
      currency: 'CNY',
      customer: {
        id: 'cus_preview',
        name: 'Li Lei',
        email: 'li@example.com',
        phone: '+8613800138000',
        timezone: 'America/New_York',
      },
    };

    beforeAll(async () => {
      expect((await call('PUT', '/v1/cadences/dst', dst)).status).toBe(201);
    });

    it('plans a DST-crossing schedule for an inline order, rendered in en and zh-CN', async () => {
      const result = await call('POST', '/v1/cadences/dst/preview', {
        order,
        start_at: '2026-10-31T20:00:00-04:00',
        failure_category: 'insufficient_funds',
      });
      expect(result.status).toBe(200);
      expect(result.json).toMatchObject({
        cadence: 'dst',
        version: 1,
        timezone: 'America/New_York',
        start_at: '2026-11-01T00:00:00.000Z',
        expires_at: '2026-11-04T00:00:00.000Z',
      });
      const steps = result.json.steps as Array<Record<string, unknown>>;
      expect(steps.map((s) => [s.channel, s.planned_at, s.local_time, s.deferred_by])).toEqual([
        ['sms', '2026-11-01T00:30:00.000Z', '2026-10-31T20:30:00-04:00', null],
        ['email', '2026-11-01T14:00:00.000Z', '2026-11-01T09:00:00-05:00', 'quiet_hours'],
        ['sms', '2026-11-02T01:00:00.000Z', '2026-11-01T20:00:00-05:00', null],
      ]);
      const rendered = steps[0]?.rendered as Record<string, { sms: Record<string, unknown> }>;
      expect(Object.keys(rendered)).toEqual(['en', 'zh-CN']);
      expect(rendered['zh-CN']?.sms).toMatchObject({
        locale: 'zh-CN',
        segments: { encoding: 'UCS-2', units: 113, segments: 2 },
      });
      expect(String(rendered['zh-CN']?.sms.body)).toContain('https://pay.example-shop.com/r/PREVIEW000000000000000');
    });

    it('previews a stored order: its failure category, its bad phone and what was already sent today', async () => {
      const event = makeEvent(
        { occurred_at: '2026-03-10T01:00:00Z' },
        { cadence: 'none-such', customer: { ...makeEvent().order.customer, timezone: 'Asia/Shanghai' } },
      );
      expect((await svc.post(event)).status).toBeLessThan(300);
      await svc.database.db.execute(
        sql`update customers set phone_bad_reason = 'invalid_address' where id = ${event.order.customer.id}`,
      );
      // One reminder of another recovery already went out that morning (09:30 in Shanghai).
      await svc.database.db.execute(
        sql`insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, sent_at)
            values ('msg_earlier', 'rec_other', 'ord_other', ${event.order.customer.id}, 0, 'email', 'nudge', 'sent',
                    '2026-03-10T01:30:00Z')`,
      );
      const result = await call('POST', '/v1/cadences/dst/preview', {
        order_id: event.order.id,
        start_at: '2026-03-10T02:00:00Z',
      });
      expect(result.status).toBe(200);
      expect(result.json).toMatchObject({
        order_id: event.order.id,
        failure_category: 'insufficient_funds',
        timezone: 'Asia/Shanghai',
      });
      const steps = result.json.steps as Array<Record<string, unknown>>;
      // The bad phone moves the SMS steps to email. Two a day, and one went out already: the second step
      // waits for the next day, whose first allowed minute is 09:00 after quiet hours.
      expect(steps.map((s) => [s.channel, s.planned_at, s.local_time, s.deferred_by])).toEqual([
        ['email', '2026-03-10T02:30:00.000Z', '2026-03-10T10:30:00+08:00', null],
        ['email', '2026-03-11T01:00:00.000Z', '2026-03-11T09:00:00+08:00', 'daily_cap'],
        ['email', '2026-03-11T03:00:00.000Z', '2026-03-11T11:00:00+08:00', null],
      ]);
      expect((await call('POST', '/v1/cadences/dst/preview', { order_id: 'ord_missing' })).status).toBe(404);
    });

    it('defers past the daily cap', async () => {
      expect(
        (
          await call('PUT', '/v1/cadences/capped', {
            name: 'capped',
            match: { by_name_only: true },
            quiet_hours: { start: '21:00', end: '09:00' },
            max_messages_per_day: 1,
            expire_after: '3d',
            steps: [
              { after: '15m', channel: 'sms', template: 'nudge' },
              { after: '2h', channel: 'sms', template: 'last-call' },
            ],
          })
        ).status,
      ).toBe(201);
      const result = await call('POST', '/v1/cadences/capped/preview', {
        order: { ...order, customer: { ...order.customer, timezone: 'Asia/Shanghai' } },
        start_at: '2026-03-10T02:00:00Z',
      });
      const steps = result.json.steps as Array<Record<string, unknown>>;
      expect(steps.map((s) => [s.planned_at, s.local_time, s.deferred_by])).toEqual([
        ['2026-03-10T02:15:00.000Z', '2026-03-10T10:15:00+08:00', null],
        ['2026-03-11T01:00:00.000Z', '2026-03-11T09:00:00+08:00', 'daily_cap'],
      ]);
    });

    it('validates its input and reports rendering failures at the step', async () => {
      const invalid = await call('POST', '/v1/cadences/dst/preview', {
        order: { ...order, currency: 'yuan', customer: { ...order.customer, phone: '12345' } },
        start_at: 'tomorrow',
      });
      expect(invalid.status).toBe(400);
      expect(paths(invalid)).toEqual(['order.currency', 'order.customer.phone', 'start_at']);
      expect(paths(await call('POST', '/v1/cadences/dst/preview', {}))).toEqual(['order']);
      expect((await call('POST', '/v1/cadences/nope/preview', { order })).status).toBe(404);

      // Stored without the API's checks (as `recoup cadences apply` does), so only rendering finds it.
      await applyCadences(svc.database.db, [
        validateCadence({
          name: 'unrenderable',
          expire_after: '1d',
          steps: [{ after: '1h', channel: 'sms', template: 'broken' }],
        }),
      ]);
      const failed = await call('POST', '/v1/cadences/unrenderable/preview', { order });
      expect(failed.status).toBe(400);
      expect(paths(failed)).toEqual(['steps[0].template', 'steps[0].template']);
      expect(messageAt(failed, 'steps[0].template')[0]).toMatch(/^broken\/en\/sms: /);
    });
  });

  describe('test-send', () => {
    function outboxFiles(): string[] {
      return fs.existsSync(svc.outboxDir) ? fs.readdirSync(svc.outboxDir).sort() : [];
    }

    it('sends one step through the configured transport, audited and not recorded as a message', async () => {
      const [before] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from messages`);
      const result = await call('POST', '/v1/cadences/crud/test-send', {
        to: '+15555550123',
        step: 0,
        locale: 'zh-CN',
      });
      expect(result.status).toBe(200);
      const providerId = String(result.json.provider_id);
      expect(result.json).toMatchObject({ channel: 'sms', locale: 'zh-CN', version: 3, step: 0 });
      expect(providerId).toMatch(/^outbox-test_[0-9a-f]{24}$/);

      const files = outboxFiles();
      expect(files).toEqual([`${providerId.slice('outbox-'.length)}.sms.json`]);
      const file = JSON.parse(fs.readFileSync(path.join(svc.outboxDir, files[0] ?? ''), 'utf8')) as OutboxSmsFile;
      expect(file.to).toBe('+15555550123');
      expect(file.body.startsWith(`【${svc.config.shopName}】`)).toBe(true);
      expect(file.body).toContain('https://pay.example-shop.com/r/PREVIEW');

      const audit = (await auditRows('cadence:crud')).filter((a) => a.action === 'cadence.test_sent');
      expect(audit).toEqual([
        expect.objectContaining({
          actor: 'key:env-0',
          after: expect.objectContaining({
            provider_id: providerId,
            to: '+15555550123',
            step: 0,
            channel: 'sms',
            template: 'nudge',
          }),
        }),
      ]);
      const [after] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from messages`);
      expect(after?.n).toBe(before?.n);
    });

    it('sends by email to an email address', async () => {
      const result = await call('POST', '/v1/cadences/crud/test-send', { to: 'ops@example-shop.com', step: 1 });
      expect(result.status).toBe(200);
      expect(result.json).toMatchObject({ channel: 'email', locale: 'en' });
      const eml = `${String(result.json.provider_id).slice('outbox-'.length)}.eml`;
      expect(outboxFiles()).toContain(eml);
      expect(fs.readFileSync(path.join(svc.outboxDir, eml), 'utf8')).toMatch(/^To: ops@example-shop\.com/m);
    });

    it('validates the address and the step', async () => {
      const result = await call('POST', '/v1/cadences/crud/test-send', { to: '0555 123', step: 7 });
      expect(result.status).toBe(400);
      expect(paths(result)).toEqual(['step', 'to']);
      expect(paths(await call('POST', '/v1/cadences/crud/test-send', { step: 0 }))).toEqual(['to']);
    });
  });

  describe('scopes', () => {
    it('needs a key: no key sees nothing', async () => {
      for (const [method, url] of [
        ['GET', '/v1/cadences'],
        ['GET', '/v1/cadences/crud'],
        ['GET', '/v1/cadences/crud/versions/1'],
      ] as const) {
        expect((await call(method, url, undefined, { key: null })).status).toBe(401);
      }
      expect((await call('PUT', '/v1/cadences/crud', { name: 'crud' }, { key: null })).status).toBe(401);
      expect((await call('POST', '/v1/cadences/crud/preview', { order_id: 'x' }, { key: null })).status).toBe(401);
    });

    it('refuses a finance key everything, and lets an ops key edit', async () => {
      const doc = {
        name: 'scoped',
        expire_after: '1d',
        steps: [{ after: '1h', channel: 'sms', template: 'nudge' }],
      };
      const requests: Array<[string, string, unknown]> = [
        ['GET', '/v1/cadences', undefined],
        ['GET', '/v1/cadences/crud', undefined],
        ['POST', '/v1/cadences', doc],
        ['PUT', '/v1/cadences/scoped', doc],
        ['POST', '/v1/cadences/crud/activate', { version: 1 }],
        ['POST', '/v1/cadences/crud/migrate', { from_version: 1, to_version: 2 }],
        ['POST', '/v1/cadences/crud/preview', { order_id: 'x' }],
        ['POST', '/v1/cadences/crud/test-send', { to: '+15555550123' }],
      ];
      for (const [method, url, body] of requests) {
        const result = await call(method, url, body, { key: financeKey });
        expect([method, url, result.status]).toEqual([method, url, 403]);
      }
      const saved = await call('PUT', '/v1/cadences/scoped', doc, { key: opsKey });
      expect(saved.status).toBe(201);
      const [audit] = await auditRows('cadence:scoped');
      expect(audit?.actor).toMatch(/^key:key_/);
    });
  });
});
