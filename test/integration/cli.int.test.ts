import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import { rows } from '../../src/db/rows.js';
import { exitWithin, killCliChildren, repoRoot, runCli, stackTrace, startCli, unusedPort } from '../helpers/cli.js';
import { adminUrl, createTestDatabase, databaseUrl, type TestDatabase } from '../helpers/postgres.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/service.js';

// Each case spawns one to three Node processes (tsx compiles on start): slow on a busy machine.
describe('recoup CLI', { timeout: 90_000 }, () => {
  let database: TestDatabase;
  let dataDir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-cli-'));
    env = { DATABASE_URL: database.url, DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  });
  afterEach(killCliChildren);
  afterAll(async () => {
    await database.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('migrate', () => {
    const name = `recoup_cli_empty_${process.pid}_${Date.now().toString(36)}`;
    let admin: pg.Client;
    beforeAll(async () => {
      admin = new pg.Client({ connectionString: adminUrl() });
      await admin.connect();
      await admin.query(`create database ${name}`);
    });
    afterAll(async () => {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    });

    it('creates the schema in an empty database, exits 0, and is a no-op the second time', async () => {
      const url = databaseUrl(name);
      const first = await runCli(['migrate'], { ...env, DATABASE_URL: url });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toContain('migrations applied');

      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows: tables } = await client.query<{ table_name: string }>(
          `select table_name from information_schema.tables where table_schema = 'public'`,
        );
        expect(tables.map((t) => t.table_name)).toEqual(
          expect.arrayContaining(['orders', 'recoveries', 'messages', 'cadences', 'suppressions']),
        );
      } finally {
        await client.end();
      }

      const again = await runCli(['migrate'], { ...env, DATABASE_URL: url });
      expect(again.code).toBe(0);
    });
  });

  describe('cadences', () => {
    it('rejects an invalid cadence file with every problem and its path, and applies nothing', async () => {
      const file = path.join(dataDir, 'bad.yaml');
      fs.writeFileSync(
        file,
        [
          'name: Bad Name',
          'expire_after: soon',
          'steps:',
          '  - { after: 2h, channel: pigeon, template: nudge }',
          '  - { after: 1h, channel: sms, template: no-such-template }',
          '',
        ].join('\n'),
      );
      const result = await runCli(['cadences', 'apply', file], env);
      expect(result.code).not.toBe(0);
      expect(result.code).not.toBeNull();
      for (const [issuePath, words] of [
        ['name', 'slug'],
        ['expire_after', 'soon'],
        ['steps[0].channel', 'sms, email'],
        ['steps[1].after', 'later than steps[0].after'],
        ['steps[1].template', 'no-such-template'],
      ] as const) {
        const line = result.stderr.split('\n').find((l) => l.trim().startsWith(`${issuePath}:`));
        expect(line, `a line for ${issuePath} in:\n${result.stderr}`).toBeDefined();
        expect(line).toContain(words);
      }
      expect(result.stderr).not.toMatch(stackTrace);
      const [count] = await rows<{ n: number }>(database.db, sql`select count(*)::int as n from cadences`);
      expect(count?.n).toBe(0);
    });

    it('names a cadence file it cannot read in one line', async () => {
      const missing = path.join(dataDir, 'missing.yaml');
      const result = await runCli(['cadences', 'apply', missing], env);
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe(`recoup: cannot read ${missing} (ENOENT)`);
    });

    it('applies cadences/default.yaml and lists it back as YAML that parses to the same cadence', async () => {
      const applied = await runCli(['cadences', 'apply', 'cadences/default.yaml'], env);
      expect(applied.stderr).toBe('');
      expect(applied.code).toBe(0);
      expect(applied.stdout).toMatch(/^default: version 1 \(now active\)$/m);

      const listed = await runCli(['cadences', 'list'], env);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(/^# default version 1, created /m);
      const [fromList] = parseCadenceDocument(listed.stdout).filter((c) => c.name === 'default');
      const [fromFile] = parseCadenceDocument(fs.readFileSync(path.join(repoRoot, 'cadences/default.yaml'), 'utf8'));
      expect(fromList).toEqual(fromFile);

      const again = await runCli(['cadences', 'apply', 'cadences/default.yaml'], env);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/^default: version 1 \(unchanged\)$/m);
    });
  });

  describe('invalid configuration', () => {
    it('lists every bad variable once, without a stack trace or the secrets given', async () => {
      const result = await runCli(['migrate'], {
        ...env,
        PORT: 'eighty',
        SMS_TRANSPORT: 'twilio',
        TWILIO_AUTH_TOKEN: 'tw-auth-S3CR3T',
      });
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split('\n');
      expect(lines[0]).toBe('recoup: Invalid configuration:');
      expect(
        lines
          .slice(1)
          .map((l) => l.trim().split(':')[0])
          .sort(),
      ).toEqual(['PORT', 'TWILIO_ACCOUNT_SID', 'TWILIO_FROM']);
      expect(result.stderr).not.toContain('S3CR3T');
      expect(result.stderr).not.toMatch(stackTrace);
    });
  });

  describe('help', () => {
    it('--help and -h print the usage and exit 0, also after a command, which they do not run', async () => {
      // Were `start` run, it would fail on this Redis.
      const noRedis = { ...env, REDIS_URL: `redis://127.0.0.1:${await unusedPort()}`, REDIS_STARTUP_WAIT: '1s' };
      for (const args of [['-h'], ['start', '--help'], ['demo', '--help']]) {
        const result = await runCli(args, noRedis);
        expect(result.stderr, args.join(' ')).toBe('');
        expect(result.code, args.join(' ')).toBe(0);
        expect(result.stdout).toMatch(/^recoup: win back unpaid orders/);
        expect(result.stdout).toContain('cadences apply FILE');
      }
    });
  });

  describe('port in use', () => {
    let blocker: net.Server;
    let port: number;
    beforeAll(async () => {
      blocker = net.createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      port = (blocker.address() as net.AddressInfo).port;
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    });

    it('start exits non-zero with one line naming PORT, having written nothing', async () => {
      const fresh = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-port-'));
      try {
        const result = await runCli(['start'], {
          DATA_DIR: fresh,
          LOG_LEVEL: 'warn',
          PORT: String(port),
          REDIS_URL: testRedisUrl(),
          QUEUE_PREFIX: uniquePrefix('port'),
        });
        expect(result.code).not.toBe(0);
        expect(result.code).not.toBeNull();
        expect(result.stderr.trim()).toBe(`recoup: port ${port} is in use: set PORT to another port`);
        // No embedded database, key, secret or outbox: a second try on a free port starts clean.
        expect(fs.readdirSync(fresh)).toEqual([]);
      } finally {
        fs.rmSync(fresh, { recursive: true, force: true });
      }
    });
  });

  describe('without Redis', () => {
    for (const command of ['start', 'worker']) {
      it(`${command} exits non-zero with one line saying Redis is unreachable and what to do`, async () => {
        const port = await unusedPort();
        const result = await runCli([command], {
          ...env,
          PORT: '0',
          REDIS_URL: `redis://127.0.0.1:${port}`,
          REDIS_STARTUP_WAIT: '1s',
        });
        expect(result.code).not.toBe(0);
        expect(result.code).not.toBeNull();
        const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
        expect(lines, result.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(/^recoup: .*Redis/);
        expect(lines[0]).toContain(`127.0.0.1:${port}`);
        expect(lines[0]).toContain('REDIS_URL');
        expect(result.stderr).not.toMatch(stackTrace);
      });
    }

    it('worker waits for a Redis that comes up within REDIS_STARTUP_WAIT, then runs', async () => {
      const port = await unusedPort();
      const prefix = uniquePrefix('cli');
      const worker = startCli(['worker'], {
        ...env,
        LOG_LEVEL: 'info',
        REDIS_URL: `redis://127.0.0.1:${port}`,
        QUEUE_PREFIX: prefix,
        REDIS_STARTUP_WAIT: '60s',
      });
      let redis: ChildProcess | undefined;
      try {
        await expect.poll(() => worker.stdout(), { timeout: 30_000 }).toContain('Redis is not reachable yet');
        redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', ''], {
          stdio: 'ignore',
        });
        await expect.poll(() => worker.stdout(), { timeout: 60_000 }).toContain('is running');
        expect(worker.child.exitCode).toBeNull();
      } finally {
        worker.child.kill('SIGKILL');
        redis?.kill('SIGKILL');
      }
    });
  });

  describe('Postgres not there yet', () => {
    it('worker waits for a Postgres that comes up within DATABASE_STARTUP_WAIT, then runs', async () => {
      // Postgres "comes up" when a proxy to the real one starts listening on the port the worker was given.
      const port = await unusedPort();
      const target = new URL(database.url);
      const worker = startCli(['worker'], {
        ...env,
        LOG_LEVEL: 'info',
        DATABASE_URL: Object.assign(new URL(database.url), { port: String(port) }).toString(),
        REDIS_URL: testRedisUrl(),
        QUEUE_PREFIX: uniquePrefix('cli'),
        DATABASE_STARTUP_WAIT: '60s',
      });
      const proxy = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 5432), target.hostname);
        client.pipe(upstream).pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      });
      try {
        await expect.poll(() => worker.stdout(), { timeout: 30_000 }).toContain('Postgres is not answering yet');
        expect(worker.child.exitCode).toBeNull();
        await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
        await expect.poll(() => worker.stdout(), { timeout: 60_000 }).toContain('is running');
        expect(worker.child.exitCode).toBeNull();
      } finally {
        worker.child.kill('SIGKILL');
        proxy.close();
      }
    });
  });

  describe('graceful shutdown', () => {
    const prefixes: string[] = [];
    afterAll(async () => {
      for (const prefix of prefixes) await deletePrefix(prefix);
    });

    for (const command of ['worker', 'start']) {
      it(`${command} stops on SIGTERM and exits 0 within SHUTDOWN_TIMEOUT`, async () => {
        const prefix = uniquePrefix('cli');
        prefixes.push(prefix);
        const shutdownTimeoutMs = 5_000;
        const running = startCli([command], {
          ...env,
          PORT: '0',
          REDIS_URL: testRedisUrl(),
          QUEUE_PREFIX: prefix,
          RECOUP_API_KEYS: 'cli-test-key',
          SHUTDOWN_TIMEOUT: `${shutdownTimeoutMs}ms`,
        });
        await waitFor(() => (running.stdout().includes(`recoup ${command} is running`) ? true : undefined), {
          timeoutMs: 45_000,
          what: `the ${command} banner (stderr: ${running.stderr()})`,
        });
        if (command === 'start') {
          const api = /API\s+(http:\/\/\S+)/.exec(running.stdout())?.[1];
          expect(api).toBeDefined();
          expect((await fetch(`${api}/healthz`)).status).toBe(200);
        }

        running.child.kill('SIGTERM');
        const finished = await exitWithin(running, shutdownTimeoutMs);
        expect(finished, 'still running after SHUTDOWN_TIMEOUT').toBeDefined();
        expect(finished).toMatchObject({ code: 0, signal: null });
        expect(finished?.stderr).not.toMatch(stackTrace);
      });
    }
  });
  describe('report', () => {
    it('prints the report as a table and as CSV, and names a bad option in one line', async () => {
      // The database was migrated by the cases above; an empty period is still a valid report.
      await runCli(['migrate'], env);
      const table = await runCli(
        ['report', '--from', '2026-11-01', '--to', '2026-11-03', '--group-by', 'channel'],
        env,
      );
      expect(table.code).toBe(0);
      expect(table.stdout).toContain('Recovery report 2026-11-01 – 2026-11-03 (UTC)');
      expect(table.stderr).toContain('bringing the report rollup up to date');
      const wide = await runCli(
        ['report', '--from', '2026-11-01', '--to', '2026-11-03', '--group-by', 'channel', '--wide'],
        env,
      );
      expect(wide.stdout).toMatch(/^channel\s+currency\s+orders_entered/m);

      const json = await runCli(['report', '--from', '2026-11-01', '--to', '2026-11-03', '--json'], env);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual({ rows: expect.any(Array) });

      const invalid = await runCli(['report', '--group-by', 'year', '--from', '2026-13-01', '--to', 'yesterday'], env);
      expect(invalid.code).toBe(1);
      expect(invalid.stderr).toMatch(/^\s+--group-by: /m);
      expect(invalid.stderr).toMatch(/^\s+--from: /m);
      expect(invalid.stderr).not.toContain('query.');
      // One line per problem: a date that is not even shaped like one is not also "not a calendar date".
      expect(invalid.stderr.match(/^\s+--to: /gm)).toHaveLength(1);

      const csv = await runCli(['report', '--from', '2026-11-01', '--to', '2026-11-03', '--csv'], env);
      expect(csv.code).toBe(0);
      expect(csv.stdout.split('\r\n')[0]).toMatch(/^day,currency,orders_entered,/);

      const bad = await runCli(['report', '--group-by', 'year', '--bogus'], env);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('bogus');
      expect(bad.stderr).not.toContain('recoup: recoup');
      expect(bad.stderr).not.toMatch(stackTrace);
    });
  });
});
