import { sql } from 'drizzle-orm';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { maxNestingDepth } from '../../src/platform/storable-text.js';
import { startTestService, testApiKey, type TestService } from '../helpers/service.js';

/**
 * JSON nested deeper than any request needs is refused up front, 400 naming the body, on every
 * route and whoever sends it: a walk over it must never run out of stack (a 500, a stack trace in
 * the log). Routes that only take forms refuse JSON outright.
 */
const nestedArrays = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('deeply nested JSON', () => {
  let svc: TestService;
  const inject = (options: InjectOptions) => {
    const app = svc.service.app;
    if (!app) throw new Error('no HTTP role');
    return app.inject(options);
  };
  const postJson = (url: string, payload: string, headers: Record<string, string> = {}) =>
    inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload });
  const expectTooDeep = (response: Awaited<ReturnType<typeof inject>>) => {
    expect(response.statusCode, response.body.slice(0, 300)).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json<{ errors?: Array<{ path: string; message: string }> }>().errors).toEqual([
      { path: '(body)', message: `must not nest deeper than ${maxNestingDepth} levels` },
    ]);
  };

  beforeAll(async () => {
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: {
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: 'AC0123456789abcdef0123456789abcdef',
        TWILIO_AUTH_TOKEN: 'deep-auth-token-0123456789',
        TWILIO_FROM: '+15005550006',
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('100,000 nested arrays, or 40,000 objects (as many as fit the body limit): 400 naming the body, nothing written', async () => {
    for (const body of [nestedArrays(100_000), nestedObjects(40_000)]) {
      expectTooDeep(await postJson('/v1/events', body, { authorization: `Bearer ${testApiKey}` }));
    }
    const [events] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from events`);
    expect(events?.n).toBe(0);
  });

  it('unauthenticated, to a route that reads its body before any key: 400, not 500', async () => {
    // An unknown route and the unsubscribe form both parse the body with nobody signed in; the
    // unsubscribe page answers its customer with a page rather than a problem.
    expectTooDeep(await postJson('/no/such/route', nestedArrays(100_000)));
    expect((await postJson('/u/not-a-token', nestedArrays(100_000))).statusCode).toBe(400);
  });

  it('refuses one level past the cap, and reads a body at the cap', async () => {
    const headers = { authorization: `Bearer ${testApiKey}` };
    expectTooDeep(await postJson('/v1/events', nestedArrays(maxNestingDepth + 1), headers));
    // At the cap the body is read, and refused for what it is: an array, not an event.
    const atCap = await postJson('/v1/events', nestedArrays(maxNestingDepth), headers);
    expect(atCap.statusCode).toBe(400);
    expect(atCap.json<{ errors?: unknown }>().errors).toEqual([{ path: '(body)', message: 'must be a JSON object' }]);
  });

  it('Twilio webhooks and the console login take forms only: JSON is a 415', async () => {
    for (const url of ['/webhooks/twilio/status', '/webhooks/twilio/status/msg_1', '/webhooks/twilio/inbound']) {
      const response = await postJson(url, JSON.stringify({ MessageSid: 'SM1', MessageStatus: 'delivered' }));
      expect(response.statusCode, url).toBe(415);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
    const login = await postJson('/console/login', nestedArrays(100_000), { origin: 'https://pay.example-shop.com' });
    expect(login.statusCode).toBe(415);
  });
});
