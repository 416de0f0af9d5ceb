import { sql } from 'drizzle-orm';
import type { InjectOptions } from 'fastify';
import fc from 'fast-check';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/access/api-keys.js';
import { scopes } from '../../src/access/auth.js';
import { rows } from '../../src/db/rows.js';
import { maxNestingDepth } from '../../src/platform/storable-text.js';
import { listRoutes } from '../helpers/routes.js';
import { makeEvent, signIn, startTestService, testApiKey, type TestService } from '../helpers/service.js';

/**
 * Generated hostile input against the public HTTP surface, in process (Fastify inject) over the
 * real Postgres: whatever arrives, the answer is never a 5xx; a refusal is problem+json naming
 * the offending field; and a refused request writes nothing.
 */
const runs = Number(process.env.PROPERTY_RUNS ?? 1_000);
const authToken = 'hostile-auth-token-0123456789';
const publicUrl = 'https://pay.example-shop.com';

/** Strings attackers and broken clients send: injection, markup, control and odd Unicode. */
const nasty = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    "'; drop table orders; --",
    '" or 1=1 --',
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '{{constructor.constructor("return process")()}}',
    '__proto__',
    '\u0000',
    '\ud800',
    '../../etc/passwd',
    'x'.repeat(5_000),
  ),
);
const anyValue = fc.oneof(
  nasty,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 3 }),
  // An own "__proto__" key, as JSON.parse makes it: what a hostile JSON body can carry.
  fc.constant(JSON.parse('{"__proto__": {"polluted": true}}') as unknown),
);

/** Paths into a valid event that a mutation may set or delete. */
const eventPaths = [
  ['id'],
  ['type'],
  ['occurred_at'],
  ['order'],
  ['order', 'id'],
  ['order', 'amount'],
  ['order', 'currency'],
  ['order', 'description'],
  ['order', 'coupon_code'],
  ['order', 'coupon'],
  ['order', 'cadence'],
  ['order', 'customer'],
  ['order', 'customer', 'id'],
  ['order', 'customer', 'name'],
  ['order', 'customer', 'email'],
  ['order', 'customer', 'phone'],
  ['order', 'customer', 'locale'],
  ['order', 'customer', 'timezone'],
  ['customer'],
  ['payment'],
  ['payment', 'gateway'],
  ['payment', 'method'],
  ['payment', 'failure_code'],
  ['payment', 'amount'],
];

/** JSON `depth` levels deep: arrays, objects, or both in turn. */
function nestedJson(depth: number, shape: 'arrays' | 'objects' | 'mixed'): string {
  let open = '';
  let close = '';
  for (let level = 0; level < depth; level++) {
    const array = shape === 'arrays' || (shape === 'mixed' && level % 2 === 0);
    open += array ? '[' : '{"a":';
    close = (array ? ']' : '}') + close;
  }
  return `${open}${shape === 'arrays' ? '' : '1'}${close}`;
}

/** The cells of an RFC 4180 text (CRLF between rows, quoted cells may hold commas, quotes and line breaks). */
function csvCells(text: string): string[][] {
  const table: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (quoted && c === '"' && text[i + 1] === '"') {
      cell += '"';
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && c === ',') {
      row.push(cell);
      cell = '';
    } else if (!quoted && c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      table.push(row);
      row = [];
      cell = '';
      i++;
    } else {
      cell += c;
    }
  }
  return table;
}

/** Every byte percent-encoded: any string, lone surrogates included, becomes a valid path segment. */
function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

function mutate(target: Record<string, unknown>, path: string[], value: unknown, remove: boolean): void {
  let node: Record<string, unknown> = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) return;
    node = next as Record<string, unknown>;
  }
  const last = path[path.length - 1] ?? '';
  if (remove) delete node[last];
  // A copy: fast-check reuses generated values (and constants) across runs and while shrinking, so
  // writing into them would leak one run's mutations into the next (even into cycles).
  else node[last] = typeof value === 'object' && value !== null ? JSON.parse(JSON.stringify(value)) : value;
}

describe('hostile input on the public HTTP surface', () => {
  let svc: TestService;
  const inject = (options: InjectOptions) => {
    const app = svc.service.app;
    if (!app) throw new Error('no HTTP role');
    return app.inject(options);
  };
  const writes = async () => {
    const [counts] = await rows<{ n: string }>(
      svc.database.db,
      sql`select concat_ws(',', (select count(*) from events), (select count(*) from orders),
                 (select count(*) from customers), (select count(*) from recoveries),
                 (select count(*) from payments), (select count(*) from suppressions), (select count(*) from clicks),
                 (select count(*) from messages where status <> 'sending')) as n`,
    );
    return counts?.n;
  };

  beforeAll(async () => {
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: {
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: 'AC0123456789abcdef0123456789abcdef',
        TWILIO_AUTH_TOKEN: authToken,
        TWILIO_FROM: '+15005550006',
        RETRY_PAGE_RATE_LIMIT: '1000000',
      },
    });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('POST /v1/events: never a 5xx; a refusal is problem+json naming the field, and writes nothing', async () => {
    let serial = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom(...eventPaths), anyValue, fc.boolean()), { minLength: 1, maxLength: 3 }),
        fc.option(fc.oneof(fc.string(), fc.jsonValue()), { freq: 8 }),
        async (mutations, wholeBody) => {
          serial += 1;
          const event = makeEvent({ id: `evt_hostile_${serial}` }, { id: `ord_hostile_${serial}` });
          for (const [path, value, remove] of mutations) mutate(event, path, value, remove);
          const payload = wholeBody ?? event;
          const before = await writes();
          const response = await inject({
            method: 'POST',
            url: '/v1/events',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${testApiKey}` },
            payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
          });
          expect(response.statusCode).toBeLessThan(500);
          if (response.statusCode >= 400) {
            expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
            const problem = response.json<{ status: number; errors?: Array<{ path: string; message: string }> }>();
            expect(problem.status).toBe(response.statusCode);
            if (response.statusCode === 400) {
              expect(problem.errors?.length).toBeGreaterThan(0);
              for (const e of problem.errors ?? []) expect(typeof e.path).toBe('string');
              if (wholeBody === null && mutations.length === 1) {
                // One mutated field: the refusal names it, or the object around it. A "__proto__" key
                // is refused by the JSON parser itself, before any field is read: the body is named.
                const mutated = mutations[0]?.[0].join('.') ?? '';
                const named = (problem.errors ?? []).map((e) => e.path);
                const poisoned = JSON.stringify(mutations[0]?.[1] ?? null).includes('"__proto__"');
                expect(
                  named.some(
                    (p) =>
                      mutated.startsWith(p.split('.')[0] ?? p) || p.startsWith(mutated) || (poisoned && p === '(body)'),
                  ),
                  `${mutated} vs ${named.join(', ')}`,
                ).toBe(true);
              }
            }
            expect(await writes()).toBe(before);
          }
        },
      ),
      { numRuns: runs },
    );
  }, 600_000);

  it('every route: NUL or a lone surrogate in a path parameter, the query or the body is a 400 naming it', async () => {
    const app = svc.service.app;
    if (!app) throw new Error('no HTTP role');
    // Signed in with every scope, by key and by console session, so each request reaches its route.
    const { key, cookie } = await signIn(svc, [...scopes]);
    const auth = { authorization: `Bearer ${key}`, cookie };

    const routes = listRoutes(app).filter((r) => r.method !== 'HEAD' && !r.url.includes('*'));
    expect(routes.length).toBeGreaterThan(60);
    const cases: Array<{ what: string; options: InjectOptions; names: string }> = [];
    for (const { method, url } of routes) {
      const params = [...url.matchAll(/:(\w+)/g)].map((m) => m[1] ?? '');
      const fill = (bad?: string) => url.replace(/:(\w+)/g, (_, name: string) => (name === bad ? 'x%00y' : 'x1'));
      const base = { method: method as InjectOptions['method'], headers: auth };
      for (const name of params)
        cases.push({ what: `${method} ${url} :${name}`, options: { ...base, url: fill(name) }, names: name });
      cases.push({ what: `${method} ${url} ?note`, options: { ...base, url: `${fill()}?note=x%00y` }, names: 'note' });
      // A raw body (a payment webhook's bytes) is its signer's: checked by signature, not here. The
      // console's sign-in forms take forms only: a JSON body there is a 415 unread.
      if (method === 'GET' || url.startsWith('/webhooks/payments')) continue;
      if (['/console/login', '/console/logout'].includes(url)) continue;
      // Twilio's webhooks take form posts only (anything else is a 415).
      if (url.startsWith('/webhooks/twilio')) {
        cases.push({
          what: `${method} ${url} form note`,
          options: {
            ...base,
            url: fill(),
            headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
            payload: 'note=x%00y',
          },
          names: 'note',
        });
        continue;
      }
      for (const [body, names] of [
        [{ note: 'x\u0000y' }, 'note'],
        [{ deep: { list: ['ok', '\ud800'] } }, 'deep.list[1]'],
        [{ ['key\u0000']: 'value' }, 'key\u0000'],
      ] as const) {
        cases.push({
          what: `${method} ${url} body ${names}`,
          options: {
            ...base,
            url: fill(),
            headers: { ...auth, 'content-type': 'application/json' },
            payload: JSON.stringify(body),
          },
          names,
        });
      }
    }

    const before = await writes();
    const wrong: string[] = [];
    for (const { what, options, names } of cases) {
      const response = await inject(options);
      const type = String(response.headers['content-type']);
      // The customer-facing pages (/r, /u) answer with a page; everything else with a problem naming the field.
      const named =
        !type.startsWith('application/problem+json') ||
        (response.json<{ errors?: Array<{ path: string }> }>().errors ?? []).some((e) => e.path === names);
      if (response.statusCode !== 400 || !named)
        wrong.push(`${what}: ${response.statusCode} ${response.body.slice(0, 200)}`);
    }
    expect(wrong).toEqual([]);
    expect(await writes()).toBe(before);
  }, 120_000);

  it('any route, any nesting depth: never a 5xx; past the cap, a refusal that writes nothing', async () => {
    const app = svc.service.app;
    if (!app) throw new Error('no HTTP role');
    const { key, cookie } = await signIn(svc, [...scopes]);
    const routes = listRoutes(app).filter((r) => !['GET', 'HEAD'].includes(r.method) && !r.url.includes('*'));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.oneof(
          fc.integer({ min: 1, max: maxNestingDepth + 2 }),
          fc.integer({ min: maxNestingDepth + 1, max: 100_000 }),
        ),
        fc.constantFrom('arrays', 'objects', 'mixed'),
        fc.boolean(),
        async ({ method, url }, depth, shape, signedIn) => {
          const before = await writes();
          const response = await inject({
            method: method as InjectOptions['method'],
            url: url.replace(/:(\w+)/g, 'x1'),
            headers: {
              'content-type': 'application/json',
              ...(signedIn ? { authorization: `Bearer ${key}`, cookie } : {}),
            },
            payload: nestedJson(depth, shape),
          });
          expect(response.statusCode, `${method} ${url} ${depth} ${shape}`).toBeLessThan(500);
          if (depth > maxNestingDepth) {
            expect(response.statusCode).toBeGreaterThanOrEqual(400);
            expect(await writes()).toBe(before);
          }
        },
      ),
      { numRuns: runs },
    );
  }, 600_000);

  it('CSV reports: whatever payment methods events carry, no cell is a formula to a spreadsheet', async () => {
    // A bearer key, not a console sign-in: the nesting property above spends the login rate limit.
    const { key } = await createApiKey(
      svc.database.db,
      { name: 'finance', scopes: ['finance'] },
      { actor: 'test', at: new Date() },
    );
    // What a spreadsheet runs: a trigger after any spaces, unless the whole cell is a number.
    const formula = /^\s*[=+\-@\t\r]/;
    const number = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;
    const formulaLike = fc
      .tuple(fc.stringMatching(/^\s{0,3}$/), fc.constantFrom('=', '+', '-', '@', '\t', '\r'), nasty)
      .map(([space, trigger, rest]) => `${space}${trigger}${rest}`);
    let serial = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            formulaLike,
            nasty,
            fc.constantFrom('-1+HYPERLINK("http://x.example","x")', "-2+3+cmd|' /C calc'!A0"),
          ),
          { minLength: 1, maxLength: 3 },
        ),
        async (methods) => {
          const accepted: string[] = [];
          for (const method of methods.map((m) => m.slice(0, 50))) {
            serial += 1;
            const event = makeEvent({ id: `evt_csv_${serial}` }, { id: `ord_csv_${serial}` });
            event.payment.method = method;
            const response = await inject({
              method: 'POST',
              url: '/v1/events',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${testApiKey}` },
              payload: JSON.stringify(event),
            });
            if (response.statusCode < 300) accepted.push(method);
          }
          const report = await inject({
            method: 'GET',
            url: '/v1/reports/recovery?format=csv&group_by=method',
            headers: { authorization: `Bearer ${key}` },
          });
          expect(report.statusCode).toBe(200);
          const cells = csvCells(report.body).slice(1);
          for (const cell of cells.flat()) {
            expect(formula.test(cell) && !number.test(cell), JSON.stringify(cell)).toBe(false);
          }
          // Each method accepted is in the report: as it came, or behind the ' that disarms it.
          const keys = cells.map((row) => row[0]);
          for (const method of accepted) {
            expect(keys.includes(method) || keys.includes(`'${method}`), JSON.stringify(method)).toBe(true);
          }
        },
      ),
      { numRuns: Math.max(10, Math.floor(runs / 20)) },
    );
  }, 600_000);

  it('/r/:token pages and forms: never a 5xx, and an unknown token writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        nasty,
        fc.constantFrom('GET', 'POST'),
        fc.constantFrom('', '/fresh-link', '/click', '/continue', '/status/att_x', '/pay/att_x', '/card/att_x'),
        fc.dictionary(fc.string({ maxLength: 20 }), nasty, { maxKeys: 5 }),
        async (token, method, suffix, form) => {
          const before = await writes();
          const response = await inject({
            method,
            url: `/r/${percentEncode(token)}${suffix}`,
            ...(method === 'POST'
              ? {
                  headers: { 'content-type': 'application/x-www-form-urlencoded' },
                  payload: new URLSearchParams(form).toString(),
                }
              : {}),
          });
          expect(response.statusCode).toBeLessThan(500);
          // Markup in the token never comes back unescaped.
          if (token.includes('<script>')) expect(response.body).not.toContain('<script>alert(1)</script>');
          expect(await writes()).toBe(before);
        },
      ),
      { numRuns: runs },
    );
  }, 600_000);

  it('Twilio webhooks, correctly signed but hostile: never a 5xx; forged: 403 and nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          '/webhooks/twilio/status',
          '/webhooks/twilio/status/msg_unknown',
          `/webhooks/twilio/status/${encodeURIComponent("msg_'; drop table messages;--")}`,
          '/webhooks/twilio/inbound',
        ),
        fc.record(
          {
            MessageSid: nasty,
            MessageStatus: fc.oneof(nasty, fc.constantFrom('delivered', 'failed', 'undelivered', 'sent')),
            ErrorCode: fc.oneof(nasty, fc.integer().map(String)),
            Price: nasty,
            PriceUnit: nasty,
            From: fc.oneof(nasty, fc.constant('+14155551234')),
            Body: fc.oneof(nasty, fc.constantFrom('STOP', 'START', 'HELP')),
            OptOutType: nasty,
          },
          { requiredKeys: [] },
        ),
        fc.boolean(),
        async (path, params, forge) => {
          const clean = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.split('\u0000').join('')]));
          const signature = twilio.getExpectedTwilioSignature(
            forge ? 'not-the-auth-token' : authToken,
            `${publicUrl}${path}`,
            clean,
          );
          const before = await writes();
          const response = await inject({
            method: 'POST',
            url: path,
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
            payload: new URLSearchParams(clean).toString(),
          });
          expect(response.statusCode).toBeLessThan(500);
          if (forge) {
            expect(response.statusCode).toBe(403);
            expect(await writes()).toBe(before);
          }
        },
      ),
      { numRuns: runs },
    );
  }, 600_000);

  it('payment webhooks with unsigned or forged bodies: never a 5xx, nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('sandbox', 'stripe', 'alipay', 'nope', '..%2f'),
        fc.oneof(
          nasty,
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        fc.dictionary(fc.constantFrom('stripe-signature', 'x-recoup-signature', 'content-type'), nasty, {
          maxKeys: 3,
        }),
        async (gateway, body, headers) => {
          const before = await writes();
          const safeHeaders = Object.fromEntries(
            Object.entries(headers).map(([k, v]) => [k, [...v].filter((c) => c >= ' ' && c <= '~').join('')]),
          );
          const response = await inject({
            method: 'POST',
            url: `/webhooks/payments/${gateway}`,
            headers: { 'content-type': 'application/json', ...safeHeaders },
            payload: body,
          });
          expect(response.statusCode).toBeLessThan(500);
          expect(await writes()).toBe(before);
        },
      ),
      { numRuns: runs },
    );
  }, 600_000);
});
