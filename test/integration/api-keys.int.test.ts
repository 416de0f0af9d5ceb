import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, DbKeyResolver } from '../../src/access/api-keys.js';
import { FixedClock } from '../../src/platform/clock.js';
import { openDatabase } from '../../src/db/client.js';
import { rows } from '../../src/db/rows.js';
import { makeEvent, startTestService, testApiKey, type TestService } from '../helpers/service.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const stackTrace = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

// The first step is far away: these tests only need intake and order views.
const slowCadence = `
name: default
expire_after: 3d
steps:
  - { after: 1d, channel: sms, template: nudge }
`;

interface KeyBody {
  id: string;
  name: string;
  scopes: string[];
  prefix: string;
  key?: string;
  created_by: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface AuditRow {
  actor: string;
  action: string;
  subject: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

describe('scoped API keys', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ cadences: slowCadence });
  });
  afterAll(async () => {
    await svc?.close();
  });

  const call = (method: string, url: string, key: string | null, body?: unknown) =>
    fetch(`${svc.url}${url}`, {
      method,
      headers: {
        ...(key === null ? {} : { authorization: `Bearer ${key}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  /** Creates a key through the API as the bootstrap (env) admin. */
  const createKey = async (scopes: string[], name = `${scopes.join('+')} key`) => {
    const response = await call('POST', '/v1/keys', testApiKey, { name, scopes });
    expect(response.status, await response.clone().text()).toBe(201);
    const body = (await response.json()) as KeyBody & { key: string };
    return { ...body, key: body.key };
  };

  const auditRows = (subject: string) =>
    rows<AuditRow>(
      svc.database.db,
      sql`select actor, action, subject, before, after from audit_log where subject = ${subject} order by at, id`,
    );

  it('creates a key once: the answer holds the key, Postgres only its hash and prefix', async () => {
    const created = await createKey(['ops'], 'Ops laptop');
    expect(created.key).toMatch(/^rk_live_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({
      name: 'Ops laptop',
      scopes: ['ops'],
      prefix: created.key.slice(0, 16),
      created_by: 'key:env-0',
      revoked_at: null,
    });

    const [stored] = await rows<{ key_hash: string; key_prefix: string; whole: string }>(
      svc.database.db,
      sql`select key_hash, key_prefix, row_to_json(api_keys)::text as whole from api_keys where id = ${created.id}`,
    );
    expect(stored?.key_hash).toBe(createHash('sha256').update(created.key).digest('hex'));
    expect(stored?.key_prefix).toBe(created.key.slice(0, 16));
    expect(stored?.whole).not.toContain(created.key);

    const listed = await call('GET', '/v1/keys', testApiKey);
    expect(listed.status).toBe(200);
    const text = await listed.text();
    expect(text).not.toContain(created.key);
    expect(text).not.toContain(stored?.key_hash);
    const { keys } = JSON.parse(text) as { keys: KeyBody[] };
    expect(keys.find((k) => k.id === created.id)).toEqual({
      id: created.id,
      name: 'Ops laptop',
      scopes: ['ops'],
      source: 'stored',
      prefix: created.prefix,
      created_at: expect.any(String),
      created_by: 'key:env-0',
      last_used_at: null,
      revoked_at: null,
    });

    const audit = await auditRows(`key:${created.id}`);
    expect(audit).toEqual([
      {
        actor: 'key:env-0',
        action: 'key.created',
        subject: `key:${created.id}`,
        before: null,
        after: { name: 'Ops laptop', scopes: ['ops'], prefix: created.prefix, revoked_at: null },
      },
    ]);
    expect(JSON.stringify(audit)).not.toContain(created.key);
  });

  it('lets each key do what its scope allows, and answers 403 problems for the rest', async () => {
    const ingest = await createKey(['ingest']);
    const ops = await createKey(['ops']);
    const finance = await createKey(['finance']);
    const admin = await createKey(['admin']);

    const event = makeEvent();
    const order = `/v1/orders/${encodeURIComponent(event.order.id)}`;
    const table: Array<[string, string, string, unknown, number]> = [
      ['ingest', 'POST', '/v1/events', event, 202],
      ['ingest', 'GET', order, undefined, 403],
      ['ingest', 'GET', '/v1/keys', undefined, 403],
      ['ops', 'POST', '/v1/events', makeEvent(), 403],
      ['ops', 'GET', order, undefined, 200],
      ['ops', 'GET', '/v1/keys', undefined, 403],
      ['finance', 'POST', '/v1/events', makeEvent(), 403],
      ['finance', 'GET', order, undefined, 403],
      ['finance', 'POST', '/v1/keys', { name: 'x', scopes: ['admin'] }, 403],
      ['admin', 'GET', order, undefined, 200],
      ['admin', 'POST', '/v1/events', makeEvent(), 202],
      ['admin', 'GET', '/v1/keys', undefined, 200],
    ];
    const keys: Record<string, string> = { ingest: ingest.key, ops: ops.key, finance: finance.key, admin: admin.key };
    for (const [scope, method, url, body, status] of table) {
      const response = await call(method, url, keys[scope] ?? null, body);
      expect(response.status, `${scope} ${method} ${url}: ${await response.clone().text()}`).toBe(status);
      if (status === 403) {
        expect(response.headers.get('content-type')).toContain('application/problem+json');
      }
    }
  });

  it('answers 401 without a key, with an unknown one, and with a revoked one', async () => {
    const ops = await createKey(['ops']);
    expect((await call('GET', '/v1/orders/none', ops.key)).status).toBe(404);
    expect((await call('GET', '/v1/orders/none', null)).status).toBe(401);
    expect((await call('GET', '/v1/orders/none', `${ops.key.slice(0, -1)}x`)).status).toBe(401);

    const revoked = await call('DELETE', `/v1/keys/${ops.id}`, testApiKey);
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toMatchObject({ id: ops.id, revoked_at: expect.any(String) });

    const after = await call('GET', '/v1/orders/none', ops.key);
    expect(after.status).toBe(401);
    expect(after.headers.get('content-type')).toContain('application/problem+json');

    // Revoking again changes nothing and writes no second audit row.
    expect((await call('DELETE', `/v1/keys/${ops.id}`, testApiKey)).status).toBe(200);
    const audit = await auditRows(`key:${ops.id}`);
    expect(audit.map((a) => a.action)).toEqual(['key.created', 'key.revoked']);
    expect(audit[1]).toMatchObject({
      actor: 'key:env-0',
      before: { revoked_at: null, prefix: ops.prefix },
      after: { revoked_at: expect.any(String), prefix: ops.prefix },
    });

    expect((await call('DELETE', '/v1/keys/key_000000000000000000000000', testApiKey)).status).toBe(404);
  });

  it('revokes by prefix too, with the calling key as the actor', async () => {
    const admin = await createKey(['admin']);
    const victim = await createKey(['finance']);
    const response = await call('DELETE', `/v1/keys/${victim.prefix}`, admin.key);
    expect(response.status).toBe(200);
    const [revoked] = (await auditRows(`key:${victim.id}`)).filter((a) => a.action === 'key.revoked');
    expect(revoked?.actor).toBe(`key:${admin.id}`);
  });

  it('keeps the bootstrap env key working as ingest + admin', async () => {
    const event = makeEvent();
    expect((await call('POST', '/v1/events', testApiKey, event)).status).toBe(202);
    expect((await call('GET', `/v1/orders/${encodeURIComponent(event.order.id)}`, testApiKey)).status).toBe(200);
    expect((await call('GET', '/v1/keys', testApiKey)).status).toBe(200);
    const refused = await call('DELETE', '/v1/keys/env-0', testApiKey);
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as { detail: string }).detail).toContain('changing RECOUP_API_KEYS');
  });

  it('lists the configured key first, named and marked as configured, then the stored ones', async () => {
    await createKey(['finance'], 'listed key');
    const response = await call('GET', '/v1/keys', testApiKey);
    const { keys } = (await response.json()) as { keys: Array<KeyBody & { source: string }> };
    expect(keys[0]).toEqual({
      id: 'env-0',
      name: 'configured key 1 (RECOUP_API_KEYS)',
      scopes: ['ingest', 'admin'],
      source: 'setting',
      prefix: null,
      created_at: null,
      created_by: null,
      last_used_at: null,
      revoked_at: null,
    });
    expect(JSON.stringify(keys)).not.toContain(testApiKey);
    const stored = keys.slice(1);
    expect(stored.map((k) => k.source)).toEqual(stored.map(() => 'stored'));
    expect(stored.map((k) => k.name)).toContain('listed key');
  });

  it('only lets admins manage keys', async () => {
    const ops = await createKey(['ops']);
    expect((await call('GET', '/v1/keys', null)).status).toBe(401);
    expect((await call('POST', '/v1/keys', null, { name: 'x', scopes: ['ops'] })).status).toBe(401);
    expect((await call('DELETE', `/v1/keys/${ops.id}`, null)).status).toBe(401);
    expect((await call('DELETE', `/v1/keys/${ops.id}`, ops.key)).status).toBe(403);
    expect((await call('GET', '/v1/orders/none', ops.key)).status).toBe(404);
  });

  it('lists every problem of a new key by path and stores nothing', async () => {
    const [before] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from api_keys`);
    const response = await call('POST', '/v1/keys', testApiKey, { name: ' ', scopes: ['ops', 'root'], extra: 1 });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    const problem = (await response.json()) as { errors: Array<{ path: string; message: string }> };
    expect(problem.errors.map((e) => e.path).sort()).toEqual(['(body)', 'name', 'scopes[1]'].sort());

    const empty = await call('POST', '/v1/keys', testApiKey, { name: 'n', scopes: [] });
    expect(empty.status).toBe(400);
    const text = await fetch(`${svc.url}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'text/plain' },
      body: 'name=x',
    });
    expect(text.status).toBe(415);
    const [after] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from api_keys`);
    expect(after?.n).toBe(before?.n);
  });

  it('records last use at most once a minute', async () => {
    const clock = new FixedClock('2026-11-25T10:00:00Z');
    const { key, record } = await createApiKey(
      svc.database.db,
      { name: 'clocked', scopes: ['ops'] },
      { actor: 'test', at: clock.now() },
    );
    const resolver = new DbKeyResolver(svc.database.db, clock);
    const lastUsed = async () =>
      (
        await rows<{ at: Date | null }>(
          svc.database.db,
          sql`select last_used_at as at from api_keys where id = ${record.id}`,
        )
      )[0]?.at?.toISOString();

    expect(await resolver.resolve(key)).toMatchObject({ keyId: record.id, name: 'clocked', scopes: ['ops'] });
    expect(await lastUsed()).toBe('2026-11-25T10:00:00.000Z');
    clock.advance(59_000);
    await resolver.resolve(key);
    expect(await lastUsed()).toBe('2026-11-25T10:00:00.000Z');
    clock.advance(2_000);
    await resolver.resolve(key);
    expect(await lastUsed()).toBe('2026-11-25T10:01:01.000Z');
    expect(await resolver.resolve('rk_live_unknown')).toBeUndefined();
  });

  describe('recoup keys (CLI)', { timeout: 120_000 }, () => {
    let dataDir: string;
    beforeAll(() => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-keys-cli-'));
    });
    afterAll(() => {
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    const cliEnv = (extra: Record<string, string> = {}) => ({
      DATABASE_URL: svc.database.url,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      ...extra,
    });

    it('creates a key that works for its scopes, lists it without the key, and revokes it', async () => {
      const created = await runCli(
        ['keys', 'create', '--scope', 'ops', '--scope', 'finance', '--name', 'CLI key'],
        cliEnv(),
      );
      expect(created.stderr).toBe('');
      expect(created.code).toBe(0);
      const key = /\brk_live_[A-Za-z0-9_-]{43}\b/.exec(created.stdout)?.[0];
      expect(key, created.stdout).toBeDefined();
      expect(created.stdout.split(key ?? '!').length - 1).toBe(1);
      expect(created.stdout).toMatch(/shown only this once/);

      expect((await call('GET', '/v1/orders/none', key ?? null)).status).toBe(404);
      expect((await call('POST', '/v1/events', key ?? null, makeEvent())).status).toBe(403);

      const listed = await runCli(['keys', 'list'], cliEnv());
      expect(listed.code).toBe(0);
      const line = listed.stdout.split('\n').find((l) => l.includes('CLI key'));
      expect(line).toBeDefined();
      expect(line).toContain(key?.slice(0, 16));
      expect(line).toContain('ops,finance');
      expect(line).toMatch(/active$/);
      expect(listed.stdout).not.toContain(key);

      const revoked = await runCli(['keys', 'revoke', key?.slice(0, 16) ?? ''], cliEnv());
      expect(revoked.stderr).toBe('');
      expect(revoked.code).toBe(0);
      expect(revoked.stdout).toMatch(/^Revoked key_[0-9a-f]{24} /);
      expect((await call('GET', '/v1/orders/none', key ?? null)).status).toBe(401);

      const id = /^Revoked (key_[0-9a-f]{24})/.exec(revoked.stdout)?.[1] ?? '';
      const audit = await auditRows(`key:${id}`);
      expect(audit.map((a) => [a.action, a.actor.startsWith('cli:')])).toEqual([
        ['key.created', true],
        ['key.revoked', true],
      ]);
      const relisted = await runCli(['keys', 'list'], cliEnv());
      expect(relisted.stdout.split('\n').find((l) => l.includes(id))).toMatch(/revoked \d{4}-\d\d-\d\d/);
    });

    it('lists the configured keys first, marked configured: the setting’s, or the generated one', async () => {
      const lineOf = (stdout: string, id: string) => stdout.split('\n').find((l) => l.startsWith(`${id} `)) ?? '';
      const keys = 'first-key-0123456789abcdef,second-key-0123456789abcdef';
      const fromSetting = await runCli(['keys', 'list'], cliEnv({ RECOUP_API_KEYS: keys }));
      expect(fromSetting.stderr).toBe('');
      expect(fromSetting.code).toBe(0);
      expect(lineOf(fromSetting.stdout, 'env-0')).toMatch(
        /configured key 1 \(RECOUP_API_KEYS\)\s+ingest,admin\s.*configured$/,
      );
      expect(lineOf(fromSetting.stdout, 'env-1')).toContain('configured key 2 (RECOUP_API_KEYS)');
      expect(fromSetting.stdout).toMatch(/configured keys are not revoked here/);
      expect(fromSetting.stdout).not.toMatch(/first-key|second-key/);

      const file = path.join(dataDir, 'api-key');
      fs.writeFileSync(file, 'generated-key-0123456789abcdef\n', { mode: 0o600 });
      try {
        const generated = await runCli(['keys', 'list'], cliEnv());
        expect(generated.code).toBe(0);
        expect(lineOf(generated.stdout, 'env-0')).toMatch(
          /generated key \(DATA_DIR\/api-key\)\s+ingest,admin\s.*configured$/,
        );
        expect(generated.stdout).not.toContain('generated-key-0123');
      } finally {
        fs.rmSync(file);
      }
      const revoke = await runCli(['keys', 'revoke', 'env-0'], cliEnv({ RECOUP_API_KEYS: keys }));
      expect(revoke.code).toBe(1);
      expect(revoke.stderr).toContain('configured keys are retired by changing RECOUP_API_KEYS');
    });

    it('explains bad input in a line per problem, without a stack trace', async () => {
      const bad = await runCli(['keys', 'create', '--scope', 'root', '--name', ''], cliEnv());
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^\s+name: give the key a name/m);
      expect(bad.stderr).toMatch(/^\s+scopes\[0\]: must be one of ingest, ops, finance, admin/m);
      expect(bad.stderr).not.toMatch(stackTrace);

      const unknown = await runCli(['keys', 'revoke', 'nothing-like-it'], cliEnv());
      expect(unknown.code).toBe(1);
      expect(unknown.stderr.trim()).toBe('recoup: No API key matches "nothing-like-it"');

      const usage = await runCli(['keys', 'create', '--scopes', 'ops'], cliEnv());
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('keys create --scope SCOPE');
    });

    it('works on the embedded database, and refuses it while another process has it open', async () => {
      const embeddedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-keys-pglite-'));
      try {
        const env = { DATA_DIR: embeddedDir, LOG_LEVEL: 'warn' };
        const created = await runCli(['keys', 'create', '--scope', 'admin', '--name', 'local admin'], env);
        expect(created.stderr).toBe('');
        expect(created.code).toBe(0);
        const listed = await runCli(['keys', 'list'], env);
        expect(listed.code).toBe(0);
        expect(listed.stdout).toContain('local admin');

        // A running recoup holds the embedded database open; a second process must not touch it.
        const held = await openDatabase({ url: undefined, dataDir: embeddedDir });
        try {
          const refused = await runCli(['keys', 'list'], env);
          expect(refused.code).toBe(1);
          const lines = refused.stderr.trim().split('\n');
          expect(lines).toHaveLength(1);
          expect(lines[0]).toBe(
            `recoup: already running with the embedded database in ${embeddedDir} (pid ${process.pid}): ` +
              'stop it first, or set DATABASE_URL to run several processes on Postgres',
          );
        } finally {
          await held.close();
        }
        expect((await runCli(['keys', 'list'], env)).code).toBe(0);
      } finally {
        fs.rmSync(embeddedDir, { recursive: true, force: true });
      }
    });
  });
});

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `recoup <args>` as a user runs it, with only the environment given (plus PATH and HOME). */
function runCli(args: string[], env: Record<string, string>): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
