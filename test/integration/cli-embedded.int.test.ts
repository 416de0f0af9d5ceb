import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitWithin, killCliChildren, runCli, stackTrace, startCli, type Running } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/service.js';

const vip = 'name: vip\nexpire_after: 2h\nsteps:\n  - { after: 1h, channel: sms, template: nudge }\n';

/**
 * `npm start` on the embedded database (no DATABASE_URL) and the commands a newcomer runs beside it
 * in another terminal: one process has the database open, and the others go through its API or
 * refuse; none works on a copy of its own.
 */
describe('commands beside a recoup running on the embedded database', { timeout: 120_000 }, () => {
  const prefix = uniquePrefix('emb');
  let dataDir: string;
  let env: Record<string, string>;
  let server: Running;
  let api: string;
  let key: string;
  let postgres: TestDatabase;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-embedded-cli-'));
    fs.writeFileSync(path.join(dataDir, 'vip.yaml'), vip);
    env = { DATA_DIR: dataDir, LOG_LEVEL: 'warn', REDIS_URL: testRedisUrl(), QUEUE_PREFIX: prefix };
    postgres = await createTestDatabase();
    server = startCli(['start'], {
      ...env,
      PORT: '0',
      // Stripe takes WeChat Pay in a list of currencies: a check only the server makes.
      PAYMENT_GATEWAY_WECHAT_PAY: 'stripe',
      STRIPE_SECRET_KEY: 'sk_test_unused',
      STRIPE_WEBHOOK_SECRET: 'whsec_unused',
      STRIPE_API_URL: 'http://127.0.0.1:9',
    });
    await waitFor(() => (server.stdout().includes('recoup start is running') ? true : undefined), {
      timeoutMs: 100_000,
      what: `the start banner (stderr: ${server.stderr()})`,
    });
    api = /API\s+(http:\/\/\S+)/.exec(server.stdout())?.[1] ?? '';
    key = fs.readFileSync(path.join(dataDir, 'api-key'), 'utf8').trim();
  }, 120_000);
  afterAll(async () => {
    killCliChildren();
    await deletePrefix(prefix);
    await postgres.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const get = (url: string, bearer = key) => fetch(url, { headers: { authorization: `Bearer ${bearer}` } });

  it('cadences apply goes through the running recoup, which serves the cadence at once', async () => {
    const applied = await runCli(['cadences', 'apply', path.join(dataDir, 'vip.yaml')], env);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout.trim()).toBe('vip: version 1 (now active)');

    const response = await get(`${api}/v1/cadences/vip`);
    expect(response.status).toBe(200);
    const cadence = (await response.json()) as { active_version: number; active: { source: string } };
    expect(cadence.active_version).toBe(1);
    expect(cadence.active.source).toBe(vip);

    const again = await runCli(['cadences', 'apply', path.join(dataDir, 'vip.yaml')], env);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe('vip: version 1 (unchanged)');
  });

  it('cadences apply through the API activates nothing when the server refuses part of the file', async () => {
    // Valid as a file; but the server's WeChat Pay gateway (Stripe) does not take KRW.
    const file = path.join(dataDir, 'two.yaml');
    fs.writeFileSync(
      file,
      [
        vip.replace('vip', 'vip-two'),
        '---',
        'name: vip-three',
        'expire_after: 2h',
        'match: { currencies: [KRW] }',
        'steps:',
        '  - { after: 1h, channel: email, template: alternative-methods, offer_methods: [wechat_pay] }',
        '',
      ].join('\n'),
    );
    const result = await runCli(['cadences', 'apply', file], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^\s+steps\[0\]\.offer_methods\[0\]: no configured payment gateway takes wechat_pay in KRW/m,
    );
    expect(result.stderr).not.toMatch(stackTrace);
    const two = await get(`${api}/v1/cadences/vip-two`);
    expect(two.status).toBe(200);
    expect(((await two.json()) as { active_version: unknown }).active_version).toBeNull();
    expect((await get(`${api}/v1/cadences/vip-three`)).status).toBe(404);
  });

  it('keys create goes through the running recoup, and the key works there', async () => {
    const created = await runCli(['keys', 'create', '--scope', 'ops', '--name', 'beside'], env);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const newKey = /\brk_live_[A-Za-z0-9_-]{43}\b/.exec(created.stdout)?.[0];
    expect(newKey, created.stdout).toBeDefined();
    expect((await get(`${api}/v1/cadences`, newKey)).status).toBe(200);
  });

  it('commands that would open the database refuse in one line naming the process and its API', async () => {
    const expected =
      `recoup: already running with the embedded database in ${dataDir} (pid ${server.child.pid}): ` +
      `stop it first, or use its API at ${api}`;
    for (const args of [['cadences', 'list'], ['customers', 'forget', 'cus-1'], ['start']]) {
      const result = await runCli(args, { ...env, PORT: '0' });
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.stderr.trim(), args.join(' ')).toBe(expected);
      expect(result.stdout, args.join(' ')).toBe('');
    }
  });

  it('a command on Postgres (DATABASE_URL) is not held back by the embedded lock', async () => {
    const applied = await runCli(['cadences', 'apply', path.join(dataDir, 'vip.yaml')], {
      ...env,
      DATABASE_URL: postgres.url,
    });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout.trim()).toBe('vip: version 1 (now active)');
  });

  describe('demo', () => {
    const sends = (running: Running) => running.stdout().match(/→ 202\b/g)?.length ?? 0;

    it('sends to the recoup running on this DATA_DIR, wherever it listens', async () => {
      const demo = startCli(['demo'], env);
      await expect.poll(() => sends(demo), { timeout: 60_000 }).toBe(4);
      expect(demo.stdout()).toContain(`sending 4 failed payments to ${api} `);
      demo.child.kill('SIGKILL');
    });

    it('sends to PUBLIC_URL when no recoup runs on its DATA_DIR', async () => {
      const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-demo-'));
      try {
        const demo = startCli(['demo'], { DATA_DIR: elsewhere, PUBLIC_URL: api, RECOUP_API_KEYS: key });
        await expect.poll(() => sends(demo), { timeout: 60_000 }).toBe(4);
        expect(demo.stdout()).toContain(`sending 4 failed payments to ${api} `);
        demo.child.kill('SIGKILL');
        expect(fs.existsSync(path.join(elsewhere, 'api-key'))).toBe(false);
      } finally {
        fs.rmSync(elsewhere, { recursive: true, force: true });
      }
    });

    it('says in one line when the key is refused', async () => {
      const result = await runCli(['demo', '--key', 'not-a-key'], env);
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split('\n');
      expect(lines, result.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^recoup: recoup at ${api.replace(/[.]/g, '\\.')} refused the API key`));
    });
  });

  it('after the running recoup stops, the changes made beside it are on disk', async () => {
    server.child.kill('SIGTERM');
    const finished = await exitWithin(server, 30_000);
    expect(finished?.code).toBe(0);
    expect(fs.existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false);

    const listed = await runCli(['cadences', 'list'], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^# vip version 1, created /m);
    const keys = await runCli(['keys', 'list'], env);
    expect(keys.stdout).toMatch(/beside\s+ops\b/);
  });
});
