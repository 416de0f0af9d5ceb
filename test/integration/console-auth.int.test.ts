import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance, type FastifyRequest, type LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, DbKeyResolver, revokeApiKey } from '../../src/access/api-keys.js';
import { FixedClock } from '../../src/platform/clock.js';
import { ChainedKeyResolver, EnvKeyResolver, requireScope, type Scope } from '../../src/access/auth.js';
import { consoleAuthRoutes, consoleSession, type ConsoleSessions } from '../../src/console/console-auth.js';
import { sendProblem } from '../../src/http/problem.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { PgEndedSessions } from '../../src/console/ended-sessions.js';
import { startTestService, testApiKey } from '../helpers/service.js';

const envKey = 'console-env-key-0123456789abcdef';
const secret = 'console-test-secret';
const publicUrl = 'https://pay.example-shop.com';
const html = { accept: 'text/html,application/xhtml+xml' };

describe('console login', () => {
  let database: TestDatabase;
  let clock: FixedClock;
  let sessions: ConsoleSessions;
  let app: FastifyInstance;

  beforeAll(async () => {
    database = await createTestDatabase();
    clock = new FixedClock('2026-11-25T10:00:00Z');
    const keys = new ChainedKeyResolver([new EnvKeyResolver([envKey]), new DbKeyResolver(database.db, clock)]);
    sessions = consoleSession({ keys, secret, publicUrl, clock, ended: new PgEndedSessions(database.db) });
    app = Fastify();
    app.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
    app.decorate('consoleSessions', sessions);
    // Many logins below: the rate limit has its own test.
    await app.register((scope) =>
      consoleAuthRoutes(scope, sessions, { loginRateLimit: { max: 1_000, timeWindowMs: 60_000 } }),
    );
    // Stand-ins for other engineers' console pages and API routes.
    await app.register(async (scope) => {
      await scope.register(formbody);
      const opsOnly = sessions.requireConsole('ops');
      scope.get('/console/ops-only', { onRequest: opsOnly }, async (request) => ({
        who: request.principal?.name,
        kind: request.principal?.kind,
        csrf: sessions.csrfToken(request),
      }));
      scope.post('/console/ops-only', { onRequest: opsOnly, preHandler: sessions.verifyCsrf }, async () => ({
        saved: true,
      }));
      scope.get('/v1/ops-thing', { onRequest: requireScope(keys, 'ops') }, async (request) => ({
        kind: request.principal?.kind,
      }));
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    await database.drop();
  });

  const newKey = async (scopes: Scope[], name = `${scopes.join('+')} person`) =>
    createApiKey(database.db, { name, scopes }, { actor: 'test', at: clock.now() });

  const login = (key: string, fields: Record<string, string> = {}, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/console/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      payload: new URLSearchParams({ key, ...fields }).toString(),
    });

  /** The `name=value` pair a Set-Cookie header sets for the session, or undefined. */
  const sessionCookie = (response: LightMyRequestResponse) => {
    const header = response.headers['set-cookie'];
    const all = Array.isArray(header) ? header : header ? [header] : [];
    return all.map((c) => /^recoup_session=[^;]+/.exec(c)?.[0]).find((c) => c !== undefined);
  };

  const loginAs = async (scopes: Scope[]) => {
    const { key } = await newKey(scopes);
    const cookie = sessionCookie(await login(key));
    if (!cookie) throw new Error('login failed');
    return cookie;
  };

  const get = (url: string, cookie?: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers: { ...headers, ...(cookie ? { cookie } : {}) } });

  it('serves a login form with a strict CSP and no caching', async () => {
    const response = await get('/console/login', undefined, html);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/html');
    expect(response.body).toContain('<form method="post" action="/console/login">');
    expect(response.body).toMatch(/<input id="key" name="key" type="password"/);
    expect(response.body).not.toContain('<script');
    expect(response.headers['content-security-policy']).toMatch(/default-src 'none'.*style-src 'sha256-/);
    expect(response.headers['cache-control']).toBe('no-store');
  });

  it('logs in with a good key: an httpOnly, SameSite=Strict, Secure 12-hour cookie, then 303 to the console', async () => {
    const { key } = await newKey(['ops'], 'Olivia (ops)');
    const response = await login(key);
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe('/console');
    const setCookie = String(response.headers['set-cookie']);
    expect(setCookie).toMatch(/^recoup_session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+;/);
    for (const attribute of ['HttpOnly', 'SameSite=Strict', 'Secure', 'Path=/', 'Max-Age=43200']) {
      expect(setCookie).toContain(attribute);
    }
    expect(setCookie).not.toContain(key);

    const home = await get('/console', sessionCookie(response), html);
    expect(home.statusCode).toBe(200);
    expect(home.body).toContain('Olivia (ops)');
    expect(home.body).toContain('action="/console/logout"');
  });

  it('links, from the console home, the pages the key can open: the dashboard first', async () => {
    const links = (body: string) => [...body.matchAll(/<a href="([^"]+)"/g)].map((m) => m[1]);
    const ops = await get('/console', await loginAs(['ops']), html);
    expect(links(ops.body)).toEqual([
      '/dashboard',
      '/console/orders',
      '/console/cadences',
      '/console/suppressions',
      '/console/webhooks',
      '/console/health',
      '/admin/queues',
      '/docs',
    ]);
    expect(ops.body).toContain('<a href="/dashboard">Dashboard</a>');
    const finance = await get('/console', await loginAs(['finance']), html);
    expect(links(finance.body)).toEqual(['/dashboard', '/console/orders', '/docs']);
  });

  it('goes back where the person was going, but never to another site', async () => {
    const { key } = await newKey(['ops']);
    expect((await login(key, { next: '/console/ops-only?x=1' })).headers.location).toBe('/console/ops-only?x=1');
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'console']) {
      expect((await login(key, { next })).headers.location, next).toBe('/console');
    }
  });

  it('shows the form again with an error and sets no cookie for a bad, empty or ingest-only key', async () => {
    const bad = await login('rk_live_not-a-key');
    expect(bad.statusCode).toBe(401);
    expect(bad.body).toContain('That key cannot sign in');
    expect(bad.body).toContain('name="key"');
    expect(bad.headers['set-cookie']).toBeUndefined();

    const empty = await login('');
    expect(empty.statusCode).toBe(400);
    expect(empty.headers['set-cookie']).toBeUndefined();

    const { key } = await newKey(['ingest']);
    const ingest = await login(key);
    // Answered as an unknown key is: the form does not tell which keys exist.
    expect(ingest.statusCode).toBe(401);
    expect(ingest.body).toBe(bad.body);
    expect(ingest.headers['set-cookie']).toBeUndefined();
  });

  it('lets a session through requireConsole; sends browsers without one to the login page, scripts a 401', async () => {
    const cookie = await loginAs(['ops']);
    const page = await get('/console/ops-only', cookie);
    expect(page.statusCode).toBe(200);
    expect(page.json()).toMatchObject({ kind: 'session', who: 'ops person' });
    expect(page.headers['cache-control']).toBe('no-store');

    const browser = await get('/console/ops-only?tab=2', undefined, html);
    expect(browser.statusCode).toBe(303);
    expect(browser.headers.location).toBe(`/console/login?next=${encodeURIComponent('/console/ops-only?tab=2')}`);

    const script = await get('/console/ops-only');
    expect(script.statusCode).toBe(401);
    expect(script.headers['content-type']).toContain('application/problem+json');
  });

  it('answers 403 (a page for browsers) when the session lacks the scope; admin holds every scope', async () => {
    const finance = await loginAs(['finance']);
    const page = await get('/console/ops-only', finance, html);
    expect(page.statusCode).toBe(403);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('This needs the ops scope.');
    expect((await get('/console/ops-only', finance)).statusCode).toBe(403);

    const admin = sessionCookie(await login(envKey));
    expect((await get('/console/ops-only', admin)).statusCode).toBe(200);
  });

  it('makes requireScope accept a session as well as a bearer key', async () => {
    expect((await get('/v1/ops-thing', await loginAs(['ops']))).json()).toEqual({ kind: 'session' });
    expect((await get('/v1/ops-thing', await loginAs(['finance']))).statusCode).toBe(403);
    expect((await get('/v1/ops-thing')).statusCode).toBe(401);
    const { key } = await newKey(['ops']);
    expect((await get('/v1/ops-thing', undefined, { authorization: `Bearer ${key}` })).json()).toEqual({
      kind: 'key',
    });
  });

  it('treats a tampered, forged or garbage cookie as no session and sends the browser to log in', async () => {
    const cookie = await loginAs(['finance']);
    const [payload = '', signature = ''] = cookie.slice('recoup_session='.length).split('.');
    const decoded = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const elevated = Buffer.from(JSON.stringify({ ...decoded, scopes: ['admin'] })).toString('base64url');
    const flipped = `${signature.slice(0, -1)}${signature.endsWith('A') ? 'B' : 'A'}`;
    for (const value of [`${elevated}.${signature}`, `${payload}.${flipped}`, payload, 'garbage']) {
      const response = await get('/console/ops-only', `recoup_session=${value}`, html);
      expect(response.statusCode, value).toBe(303);
      expect(response.headers.location).toMatch(/^\/console\/login\?next=/);
      expect(String(response.headers['set-cookie'])).toMatch(/^recoup_session=; Max-Age=0/);
    }
  });

  it('ends the session when its key is revoked', async () => {
    const { key, record } = await newKey(['ops']);
    const cookie = sessionCookie(await login(key));
    expect((await get('/console/ops-only', cookie)).statusCode).toBe(200);
    await revokeApiKey(database.db, record.id, { actor: 'test', at: clock.now() });
    expect((await get('/console/ops-only', cookie, html)).statusCode).toBe(303);
    expect((await get('/v1/ops-thing', cookie)).statusCode).toBe(401);
    expect((await login(key)).statusCode).toBe(401);
  });

  it('ends sessions of an env key replaced in place (same position in RECOUP_API_KEYS)', async () => {
    const cookie = sessionCookie(await login(envKey)) ?? '';
    const request = { method: 'GET', headers: { cookie } } as unknown as FastifyRequest;
    expect(await sessions.authenticate(request)).toMatchObject({ keyId: 'env-0', kind: 'session' });
    const rotated = consoleSession({ keys: new EnvKeyResolver(['a-new-key']), secret, publicUrl, clock });
    const again = { method: 'GET', headers: { cookie } } as unknown as FastifyRequest;
    expect(await rotated.authenticate(again)).toBeUndefined();
  });

  it('expires after 12 hours', async () => {
    const cookie = await loginAs(['ops']);
    clock.advance(12 * 60 * 60 * 1000 - 1_000);
    expect((await get('/console/ops-only', cookie)).statusCode).toBe(200);
    clock.advance(1_000);
    expect((await get('/console/ops-only', cookie, html)).statusCode).toBe(303);
  });

  it('round-trips the CSRF token of console forms, and refuses a missing, wrong or foreign one', async () => {
    const cookie = await loginAs(['ops']);
    const other = await loginAs(['ops']);
    const { csrf } = (await get('/console/ops-only', cookie)).json<{ csrf: string }>();
    const { csrf: otherCsrf } = (await get('/console/ops-only', other)).json<{ csrf: string }>();
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(otherCsrf).not.toBe(csrf);

    const post = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
      app.inject({
        method: 'POST',
        url: '/console/ops-only',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: new URLSearchParams(fields).toString(),
      });
    expect((await post({ csrf, name: 'x' })).json()).toEqual({ saved: true });
    expect((await post({ name: 'x' }, { 'x-csrf-token': csrf })).statusCode).toBe(200);
    expect((await post({ name: 'x' })).statusCode).toBe(403);
    expect((await post({ csrf: `${csrf.slice(0, -1)}x` })).statusCode).toBe(403);
    expect((await post({ csrf: otherCsrf })).statusCode).toBe(403);

    // A valid token does not make a cross-site request acceptable.
    expect((await post({ csrf }, { origin: 'https://evil.example' })).statusCode).toBe(403);
    expect((await post({ csrf }, { 'sec-fetch-site': 'cross-site' })).statusCode).toBe(403);
    expect((await post({ csrf }, { origin: publicUrl })).statusCode).toBe(200);
    expect((await post({ csrf }, { origin: 'http://localhost:80' })).statusCode).toBe(200);
  });

  it('refuses a login posted from another site', async () => {
    const { key } = await newKey(['ops']);
    const response = await login(key, {}, { origin: 'https://evil.example' });
    expect(response.statusCode).toBe(403);
    expect(response.headers['set-cookie']).toBeUndefined();
  });

  it('limits sign-in attempts per client', async () => {
    const limited = Fastify();
    limited.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
    await limited.register((scope) =>
      consoleAuthRoutes(scope, sessions, { loginRateLimit: { max: 2, timeWindowMs: 60_000 } }),
    );
    try {
      const attempt = () =>
        limited.inject({
          method: 'POST',
          url: '/console/login',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          payload: 'key=guess',
        });
      expect((await attempt()).statusCode).toBe(401);
      expect((await attempt()).statusCode).toBe(401);
      const third = await attempt();
      expect(third.statusCode).toBe(429);
      expect(third.headers['content-type']).toContain('application/problem+json');
    } finally {
      await limited.close();
    }
  });

  it('logs out: deletes the cookie (CSRF token required while the session lives) and ends the session', async () => {
    const cookie = await loginAs(['ops']);
    const { csrf } = (await get('/console/ops-only', cookie)).json<{ csrf: string }>();
    const logout = (fields: Record<string, string>, withCookie = true) =>
      app.inject({
        method: 'POST',
        url: '/console/logout',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(withCookie ? { cookie } : {}) },
        payload: new URLSearchParams(fields).toString(),
      });

    expect((await logout({})).statusCode).toBe(403);
    const done = await logout({ csrf });
    expect(done.statusCode).toBe(303);
    expect(done.headers.location).toBe('/console/login');
    expect(String(done.headers['set-cookie'])).toMatch(/^recoup_session=; Max-Age=0;.*HttpOnly/);
    // A copy of the cookie taken before works no more, on the console or the API.
    expect((await get('/console/ops-only', cookie)).statusCode).toBe(401);
    expect((await get('/v1/ops-thing', cookie)).statusCode).toBe(401);
    // Another session of the same key lives on.
    expect((await get('/console/ops-only', await loginAs(['ops']))).statusCode).toBe(200);
    // Without a session there is nothing to protect: logging out just works.
    expect((await logout({}, false)).statusCode).toBe(303);
  });
});

describe('console login in the running service', () => {
  it('logs in with a stored key and uses the session for console pages and the API', async () => {
    const svc = await startTestService();
    try {
      const created = await fetch(`${svc.url}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Ops person', scopes: ['ops'] }),
      });
      const { key } = (await created.json()) as { key: string };
      const response = await fetch(`${svc.url}/console/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ key }),
        redirect: 'manual',
      });
      expect(response.status).toBe(303);
      const cookie = /^recoup_session=[^;]+/.exec(response.headers.get('set-cookie') ?? '')?.[0] ?? '';
      expect(cookie).not.toBe('');

      const home = await fetch(`${svc.url}/console`, { headers: { cookie } });
      expect(home.status).toBe(200);
      expect(await home.text()).toContain('Ops person');
      // requireScope on the API accepts the session: ops reads orders, but cannot manage keys.
      expect((await fetch(`${svc.url}/v1/orders/none`, { headers: { cookie } })).status).toBe(404);
      expect((await fetch(`${svc.url}/v1/keys`, { headers: { cookie } })).status).toBe(403);
    } finally {
      await svc.close();
    }
  });
});
