import diagnostics from 'node:diagnostics_channel';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../helpers/service.js';

/**
 * Routes anyone may call. Everything else the app registers must answer 401 without
 * credentials, so a new route without a guard fails here until it gets one (or is added to
 * this list on purpose).
 */
const publicRoutes: Array<string | RegExp> = [
  '/healthz',
  '/readyz',
  '/console/login',
  '/console/logout', // deletes the cookie; with a live session it needs the session's CSRF token
  /^\/u\//, // email unsubscribe links and RFC 8058 one-click POSTs (the token is the credential)
  /^\/r(\/|$)/, // retry pages behind the links in reminders (the token is the credential)
  /^\/webhooks\//, // gateways and Twilio, checked by their signatures
  /^\/sandbox(\/|$)/, // the embedded sandbox gateway's hosted pages
  /^\/assets\//,
  /^\/docs(\/|$)/, // the OpenAPI document and its viewer: describes the API, grants nothing
];

interface Route {
  method: string;
  url: string;
}

const isPublic = (url: string) => publicRoutes.some((p) => (typeof p === 'string' ? p === url : p.test(url)));

describe('every route is guarded or explicitly public', () => {
  const seen = new Map<FastifyInstance, Route[]>();
  // Fastify announces each new instance here: hook onRoute before build-app registers anything.
  const onInit = (message: unknown) => {
    const { fastify } = message as { fastify: FastifyInstance };
    const routes: Route[] = [];
    seen.set(fastify, routes);
    fastify.addHook('onRoute', (options) => {
      for (const method of [options.method].flat()) routes.push({ method: String(method), url: options.url });
    });
  };
  let svc: TestService;
  let routes: Route[];

  beforeAll(async () => {
    diagnostics.subscribe('fastify.initialization', onInit);
    try {
      // Twilio on, so its webhooks are registered too; no worker: nothing is sent.
      svc = await startTestService({
        roles: { http: true, worker: false },
        env: {
          SMS_TRANSPORT: 'twilio',
          TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
          TWILIO_AUTH_TOKEN: 'route-walk-token',
          TWILIO_FROM: '+15005550006',
        },
      });
    } finally {
      diagnostics.unsubscribe('fastify.initialization', onInit);
    }
    const app = svc.service.app;
    routes = (app && seen.get(app)) ?? [];
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('sees the routes of the app (the walk below is not vacuous)', () => {
    const urls = routes.map((r) => `${r.method} ${r.url}`);
    for (const expected of ['POST /v1/events', 'GET /v1/orders/:id', 'GET /v1/keys', 'GET /console', 'GET /healthz']) {
      expect(urls).toContain(expected);
    }
    expect(urls.some((u) => u.startsWith('POST /webhooks/twilio/'))).toBe(true);
  });

  it('answers 401 without credentials on every route that is not public', async () => {
    const guarded = routes.filter((r) => !isPublic(r.url));
    const failures: string[] = [];
    for (const route of guarded) {
      const url = route.url.replace(/:[A-Za-z0-9_]+(\([^)]*\))?/g, 'x').replace(/\*/g, 'x');
      const response = await fetch(`${svc.url}${url}`, { method: route.method, redirect: 'manual' });
      await response.arrayBuffer();
      if (response.status !== 401) failures.push(`${route.method} ${route.url} -> ${response.status}`);
    }
    expect(failures, 'routes without a guard (add requireScope/requireConsole, or make them public here)').toEqual([]);
    expect(guarded.filter((r) => r.url.startsWith('/v1/')).length).toBeGreaterThanOrEqual(5);
  });

  it('answers 401 to a wrong key on every /v1 route', async () => {
    for (const route of routes.filter((r) => r.url.startsWith('/v1/'))) {
      const url = route.url.replace(/:[A-Za-z0-9_]+/g, 'x');
      const response = await fetch(`${svc.url}${url}`, {
        method: route.method,
        headers: { authorization: 'Bearer rk_live_not-a-real-key' },
      });
      await response.arrayBuffer();
      expect(response.status, `${route.method} ${route.url}`).toBe(401);
    }
  });
});
