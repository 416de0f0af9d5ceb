import { sql } from 'drizzle-orm';
import { rows } from '../../src/db/rows.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createApiKey } from '../../src/access/api-keys.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Scope } from '../../src/access/auth.js';
import { createLogger } from '../../src/platform/logger.js';
import { startService, type RunningService, type ServiceOverrides, type ServiceRoles } from '../../src/app/service.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from './redis.js';

export const testApiKey = 'test-key-0123456789abcdef';

export interface TestService {
  url: string;
  config: Config;
  database: TestDatabase;
  prefix: string;
  outboxDir: string;
  service: RunningService;
  post(body: unknown, options?: { key?: string | null; headers?: Record<string, string> }): Promise<Response>;
  getOrder(
    id: string,
  ): Promise<
    Record<string, unknown> & { recovery: Record<string, unknown> | null; messages: Array<Record<string, unknown>> }
  >;
  close(): Promise<void>;
}

export interface TestServiceOptions {
  /** YAML applied at start through CADENCES_FILE. */
  cadences?: string;
  env?: Record<string, string>;
  roles?: ServiceRoles;
  overrides?: ServiceOverrides;
  /** Reuse a database (e.g. a second process over the same data). */
  database?: TestDatabase;
  prefix?: string;
}

/** A real recoup (HTTP + worker) on a fresh database and Redis prefix, outbox in a temp dir. */
export async function startTestService(options: TestServiceOptions = {}): Promise<TestService> {
  const database = options.database ?? (await createTestDatabase());
  const prefix = options.prefix ?? uniquePrefix();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-test-'));
  const outboxDir = path.join(dir, 'outbox');
  let cadencesFile: string | undefined;
  if (options.cadences) {
    cadencesFile = path.join(dir, 'cadences.yaml');
    fs.writeFileSync(cadencesFile, options.cadences);
  }
  const config = loadConfig({
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl(),
    QUEUE_PREFIX: prefix,
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: 'https://pay.example-shop.com',
    RECOUP_API_KEYS: testApiKey,
    DATA_DIR: dir,
    OUTBOX_DIR: outboxDir,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    RECONCILE_INTERVAL: '200ms',
    ...(cadencesFile ? { CADENCES_FILE: cadencesFile } : {}),
    ...options.env,
  });
  const service = await startService(
    config,
    options.roles ?? { http: true, worker: true },
    createLogger(config.logLevel),
    options.overrides,
  );
  const url = service.url ?? '';
  return {
    url,
    config,
    database,
    prefix,
    outboxDir,
    service,
    post: (body, opts = {}) =>
      fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(opts.key === null ? {} : { authorization: `Bearer ${opts.key ?? testApiKey}` }),
          ...opts.headers,
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    async getOrder(id) {
      const response = await fetch(`${url}/v1/orders/${encodeURIComponent(id)}`, {
        headers: { authorization: `Bearer ${testApiKey}` },
      });
      if (response.status !== 200) throw new Error(`GET order ${id}: ${response.status} ${await response.text()}`);
      return (await response.json()) as never;
    },
    async close() {
      await service.close();
      if (!options.database) await database.drop();
      if (!options.prefix) await deletePrefix(prefix);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh API key with these scopes, and a console session signed in with it (its cookie). */
export async function signIn(svc: TestService, scopes: Scope[]): Promise<{ key: string; cookie: string }> {
  const app = svc.service.app;
  if (!app) throw new Error('no HTTP role');
  const { key } = await createApiKey(
    svc.database.db,
    { name: `${scopes.join('+')} person`, scopes },
    { actor: 'test', at: new Date() },
  );
  const login = await app.inject({
    method: 'POST',
    url: '/console/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ key }).toString(),
  });
  const cookie = /^recoup_session=[^;]+/.exec(String(login.headers['set-cookie']))?.[0];
  if (!cookie) throw new Error(`console login failed: ${login.statusCode} ${login.body}`);
  return { key, cookie };
}

/** Polls until `check` returns a value that is not undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  { timeoutMs = 15_000, intervalMs = 100, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

let counter = 0;
/** A valid event with unique ids; override any field. */
export function makeEvent(overrides: Record<string, unknown> = {}, order: Record<string, unknown> = {}) {
  counter += 1;
  const n = `${process.pid}-${Date.now().toString(36)}-${counter}`;
  return {
    id: `evt_${n}`,
    type: 'payment.failed',
    occurred_at: new Date().toISOString(),
    order: {
      id: `ord_${n}`,
      amount: 12900,
      currency: 'CNY',
      description: '2 items',
      customer: {
        id: `cus_${n}`,
        name: 'Li Lei',
        email: 'li@example.com',
        phone: '+8613800138000',
        locale: 'zh-CN',
        timezone: 'Asia/Shanghai',
      },
      ...order,
    },
    payment: {
      gateway: 'stripe',
      method: 'card',
      failure_code: 'card_declined',
      failure_message: 'Your card was declined.',
    },
    ...overrides,
  };
}

/** A TCP port free right now on 127.0.0.1 (for services whose PUBLIC_URL must be known before they start). */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The retry-link token of an order's first reminder, once that reminder was sent. */
export function firstReminderToken(svc: TestService, orderId: string): Promise<string> {
  return waitFor(
    async () => {
      const [m] = await rows<{ link_token: string; status: string }>(
        svc.database.db,
        sql`select link_token, status from messages where order_id = ${orderId} and step = 0`,
      );
      return m?.status === 'sent' ? m.link_token : undefined;
    },
    { what: 'the first reminder' },
  );
}
