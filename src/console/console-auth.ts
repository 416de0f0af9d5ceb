import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preHandlerHookHandler,
} from 'fastify';
import Handlebars from 'handlebars';
import { z } from 'zod';
import type { Clock } from '../platform/clock.js';
import type { EndedSessions } from './ended-sessions.js';
import { RecoupError } from '../platform/errors.js';
import {
  hasScope,
  scopes,
  type KeyResolver,
  type Principal,
  type Scope,
  type SessionAuthenticator,
} from '../access/auth.js';

/** The session cookie: `<base64url JSON payload>.<base64url HMAC>`; nothing is stored server-side. */
export const sessionCookieName = 'recoup_session';
/** Form field (or `X-CSRF-Token` header) that carries `csrfToken(request)`. */
export const csrfFieldName = 'csrf';
export const loginPath = '/console/login';
export const consoleHome = '/console';

const csrfHeader = 'x-csrf-token';
const defaultTtlMs = 12 * 60 * 60 * 1000;
/** Scopes that have something to do in the console; an ingest-only key does not. */
const consoleScopes: readonly Scope[] = ['ops', 'finance', 'admin'];

export interface ConsoleSessionDeps {
  /** The app's key resolver; it must implement `resolveId` (env and Postgres keys do). */
  keys: KeyResolver;
  /** RECOUP_SECRET: keys the cookie's HMAC and the CSRF tokens. Every server process must share it. */
  secret: string;
  /** PUBLIC_URL: `https` makes the cookie `Secure`; its origin is accepted on unsafe requests. */
  publicUrl: string;
  clock: Clock;
  /** How long a login lasts. Default 12 h (no sliding renewal: log in again the next day). */
  ttlMs?: number;
  /** Sessions ended by logging out. Without it, a copy of a cookie works until it expires. */
  ended?: EndedSessions | undefined;
}

const payloadSchema = z.object({
  keyId: z.string().min(1).max(200),
  scopes: z.array(z.enum(scopes)),
  /** Epoch milliseconds. */
  expiresAt: z.number().int(),
  /** Random session id: the CSRF tokens derive from it. */
  sid: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
  /** HMAC of the key's version: rotating an env key in place ends its sessions. */
  kv: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
});
type SessionPayload = z.infer<typeof payloadSchema>;

interface SessionState {
  principal: Principal;
  sid: string;
  expiresAt: number;
}

/**
 * Console sessions, for console routes and forms anywhere in the app (build-app creates one and
 * installs it as `app.consoleSessions`, which `requireScope` also consults):
 *
 * ```ts
 * app.get('/console/cadences', { onRequest: sessions.requireConsole('ops') }, async (request) => {
 *   const csrf = sessions.csrfToken(request); // into every form as <input type="hidden" name="csrf">
 * });
 * app.post('/console/cadences/:name', { onRequest: sessions.requireConsole('ops'), preHandler: sessions.verifyCsrf }, …);
 * ```
 *
 * The cookie is stateless (HMAC over `{keyId, scopes, expiresAt, sid, kv}`) but re-checked against
 * the key on every request, so revoking the key ends its sessions at once. Logging out deletes the
 * cookie and records the session as ended, so a copy taken before is refused too.
 */
export class ConsoleSessions implements SessionAuthenticator {
  readonly #deps: ConsoleSessionDeps;
  readonly #sessionKey: Buffer;
  readonly #csrfKey: Buffer;
  readonly #ttlMs: number;
  readonly #cookieAttributes: string;
  readonly #publicOrigin: string;
  // One lookup per request however many guards ask; the settled state serves the sync CSRF helpers.
  readonly #pending = new WeakMap<FastifyRequest, Promise<SessionState | undefined>>();
  readonly #settled = new WeakMap<FastifyRequest, SessionState>();

  constructor(deps: ConsoleSessionDeps) {
    if (!deps.secret) throw new RecoupError('config', 'Console sessions need a secret (RECOUP_SECRET)');
    this.#deps = deps;
    this.#sessionKey = createHmac('sha256', deps.secret).update('recoup console session v1').digest();
    this.#csrfKey = createHmac('sha256', deps.secret).update('recoup console csrf v1').digest();
    this.#ttlMs = deps.ttlMs ?? defaultTtlMs;
    const publicUrl = new URL(deps.publicUrl);
    this.#publicOrigin = publicUrl.origin;
    this.#cookieAttributes = `Path=/; HttpOnly; SameSite=Strict${publicUrl.protocol === 'https:' ? '; Secure' : ''}`;
  }

  /** The request's session principal (kind `session`), or undefined. Unsafe methods from another origin: 403. */
  async authenticate(request: FastifyRequest): Promise<Principal | undefined> {
    const state = await this.#stateOf(request);
    if (!state) return undefined;
    if (!isSafeMethod(request.method) && !this.sameOrigin(request)) {
      throw new RecoupError('forbidden', 'Refused a cross-site request made with a console session');
    }
    return state.principal;
  }

  /**
   * onRequest guard for console routes: sets `request.principal` (kind `session`) from the cookie.
   * Without a valid session: 303 to /console/login?next=… for a browser GET (Accept: text/html),
   * else a 401 problem. Without one of `needed` (admin holds all; none given: ops, finance or
   * admin): a 403 page for browsers, else a 403 problem. Responses are `Cache-Control: no-store`.
   */
  requireConsole(...needed: Scope[]): onRequestHookHandler {
    const wanted = needed.length > 0 ? needed : consoleScopes;
    return async (request, reply) => {
      reply.header('cache-control', 'no-store');
      const principal = await this.authenticate(request);
      if (!principal) {
        if (readCookie(request.headers.cookie, sessionCookieName) !== undefined) {
          reply.header('set-cookie', this.clearCookie());
        }
        if (wantsHtml(request)) return reply.redirect(`${loginPath}?next=${encodeURIComponent(request.url)}`, 303);
        throw new RecoupError('unauthorized', `Log in to the console first (${loginPath})`);
      }
      request.principal = principal;
      if (!hasScope(principal, wanted)) {
        const message = `This needs the ${wanted.join(' or ')} scope.`;
        if (wantsHtml(request)) return this.sendForbidden(request, reply, message);
        throw new RecoupError('forbidden', message);
      }
      return undefined;
    };
  }

  /** The CSRF token of the request's session, for hidden form fields. Throws if no guard found a session. */
  csrfToken(request: FastifyRequest): string {
    const state = this.#settled.get(request);
    if (!state) throw new RecoupError('unauthorized', 'No console session: guard the route with requireConsole');
    return this.#mac(this.#csrfKey, state.sid);
  }

  /** True when `token` is the CSRF token of the request's session (constant-time). */
  checkCsrf(request: FastifyRequest, token: unknown): boolean {
    const state = this.#settled.get(request);
    return typeof token === 'string' && state !== undefined && safeEqual(this.#mac(this.#csrfKey, state.sid), token);
  }

  /**
   * preHandler for console form POSTs (runs after body parsing): the `csrf` field of the form or
   * JSON body, or the `X-CSRF-Token` header, must be the session's token; else 403.
   */
  readonly verifyCsrf: preHandlerHookHandler = async (request) => {
    const body = request.body;
    const fromBody =
      typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[csrfFieldName] : undefined;
    if (!this.checkCsrf(request, fromBody ?? request.headers[csrfHeader])) {
      throw new RecoupError('forbidden', 'This form expired or did not come from the console; reload it and retry');
    }
  };

  /** Resolves a key typed into the login form (the app's resolver: env keys, then Postgres). */
  authenticateKey(key: string): Promise<Principal | undefined> {
    return this.#deps.keys.resolve(key);
  }

  /** A `Set-Cookie` value opening a session for `principal`; undefined if its key cannot be re-checked later. */
  async open(principal: Principal): Promise<string | undefined> {
    const record = await this.#deps.keys.resolveId?.(principal.keyId);
    if (!record) return undefined;
    const payload: SessionPayload = {
      keyId: record.principal.keyId,
      scopes: principal.scopes,
      expiresAt: this.#deps.clock.now().getTime() + this.#ttlMs,
      sid: randomBytes(16).toString('base64url'),
      kv: this.#versionTag(record.version),
    };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    const value = `${body}.${this.#mac(this.#sessionKey, body)}`;
    return `${sessionCookieName}=${value}; Max-Age=${Math.floor(this.#ttlMs / 1000)}; ${this.#cookieAttributes}`;
  }

  /** Ends the request's session for good (logging out), not only its cookie in this browser. */
  async end(request: FastifyRequest): Promise<void> {
    const state = await this.#stateOf(request);
    if (state) await this.#deps.ended?.end(state.sid, this.#deps.clock.now(), new Date(state.expiresAt));
  }

  /** A `Set-Cookie` value that deletes the session cookie. */
  clearCookie(): string {
    return `${sessionCookieName}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; ${this.#cookieAttributes}`;
  }

  /**
   * False for a request a browser says came from another site, or whose Origin is neither
   * PUBLIC_URL's nor the host it was sent to. Requests without Origin (curl, scripts) pass:
   * browsers send it on every unsafe request, so they are not the CSRF victims.
   */
  sameOrigin(request: FastifyRequest): boolean {
    const site = request.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') return false;
    const origin = request.headers.origin;
    if (origin === undefined) return true;
    return origin === this.#publicOrigin || origin === `${request.protocol}://${request.host}`;
  }

  /** The 403 page for a signed-in person whose key lacks a scope. */
  sendForbidden(request: FastifyRequest, reply: FastifyReply, message: string): FastifyReply {
    const state = this.#settled.get(request);
    return sendPage(reply, 403, pages.forbidden, {
      title: 'Not allowed',
      message,
      name: state?.principal.name ?? '',
      scopes: state?.principal.scopes.join(', ') || 'none',
      csrf: state ? this.csrfToken(request) : '',
    });
  }

  #stateOf(request: FastifyRequest): Promise<SessionState | undefined> {
    let state = this.#pending.get(request);
    if (!state) {
      state = this.#load(request).then((loaded) => {
        if (loaded) this.#settled.set(request, loaded);
        return loaded;
      });
      this.#pending.set(request, state);
    }
    return state;
  }

  async #load(request: FastifyRequest): Promise<SessionState | undefined> {
    const payload = this.#verify(readCookie(request.headers.cookie, sessionCookieName));
    if (!payload || payload.expiresAt <= this.#deps.clock.now().getTime()) return undefined;
    if (await this.#deps.ended?.isEnded(payload.sid)) return undefined;
    const record = await this.#deps.keys.resolveId?.(payload.keyId);
    if (!record || !safeEqual(this.#versionTag(record.version), payload.kv)) return undefined;
    const current = record.principal.scopes;
    const principal: Principal = {
      kind: 'session',
      keyId: record.principal.keyId,
      name: record.principal.name,
      // Never more than at login, never more than the key holds now.
      scopes: scopes.filter((s) => payload.scopes.includes(s) && current.includes(s)),
    };
    return { principal, sid: payload.sid, expiresAt: payload.expiresAt };
  }

  #verify(value: string | undefined): SessionPayload | undefined {
    if (!value || value.length > 4096) return undefined;
    const dot = value.lastIndexOf('.');
    if (dot < 0) return undefined;
    const body = value.slice(0, dot);
    if (!safeEqual(this.#mac(this.#sessionKey, body), value.slice(dot + 1))) return undefined;
    try {
      const parsed = payloadSchema.safeParse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  #versionTag(version: string): string {
    return this.#mac(this.#sessionKey, `kv:${version}`).slice(0, 22);
  }

  #mac(key: Buffer, data: string): string {
    return createHmac('sha256', key).update(data).digest('base64url');
  }
}

export function consoleSession(deps: ConsoleSessionDeps): ConsoleSessions {
  return new ConsoleSessions(deps);
}

export interface ConsoleAuthRouteOptions {
  /** Sign-in attempts per client IP. Default 20 per minute. */
  loginRateLimit?: { max: number; timeWindowMs: number };
}

const loginBodySchema = z.object({
  key: z.string().trim().max(500).default(''),
  next: z.string().optional(),
});

/**
 * The console's door: `GET /console/login` (the form), `POST /console/login` (form-encoded
 * `key`, `next`: checks the key, sets the session cookie, 303 to `next`), `POST /console/logout`
 * (deletes the cookie; needs the CSRF token while the session is valid) and `GET /console`, a
 * landing page saying who is signed in.
 */
export async function consoleAuthRoutes(
  app: FastifyInstance,
  sessions: ConsoleSessions,
  options: ConsoleAuthRouteOptions = {},
): Promise<void> {
  const limit = options.loginRateLimit ?? { max: 20, timeWindowMs: 60_000 };
  // The sign-in and sign-out forms post form fields only: any other body (JSON above all) is a 415.
  app.removeAllContentTypeParsers();
  await app.register(formbody, { bodyLimit: 4_096 });
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: () => new RecoupError('rate_limited', 'Too many sign-in attempts; wait a minute'),
  });

  app.get<{ Querystring: { next?: string } }>(loginPath, async (request, reply) => {
    const next = safeNext(request.query.next);
    if (await sessions.authenticate(request)) return reply.redirect(next, 303);
    return sendPage(reply, 200, pages.login, { title: 'Sign in', error: null, next });
  });

  app.post(
    loginPath,
    { config: { rateLimit: { max: limit.max, timeWindow: limit.timeWindowMs } } },
    async (request, reply) => {
      const body = loginBodySchema.safeParse(request.body ?? {});
      const next = safeNext(body.success ? body.data.next : undefined);
      const again = (status: number, error: string) =>
        sendPage(reply, status, pages.login, { title: 'Sign in', error, next });
      if (!sessions.sameOrigin(request)) return again(403, 'This sign-in did not come from the console.');
      const key = body.success ? body.data.key : '';
      if (key === '') return again(400, 'Enter an API key.');
      const principal = await sessions.authenticateKey(key);
      // A key that exists but cannot sign in gets the same answer as one that does not: the form
      // must not tell a guesser which keys are real.
      const refused = 'That key cannot sign in: it is unknown, revoked, or has no ops, finance or admin scope.';
      if (!principal) {
        request.log.warn('console login with an unknown or revoked key');
        return again(401, refused);
      }
      if (!hasScope(principal, consoleScopes)) {
        request.log.warn({ keyId: principal.keyId }, 'console login with a key without a console scope');
        return again(401, refused);
      }
      const cookie = await sessions.open({ ...principal, kind: 'session' });
      if (!cookie) return again(403, 'That key cannot open a console session.');
      request.log.info({ keyId: principal.keyId }, 'console login');
      return reply.header('set-cookie', cookie).header('cache-control', 'no-store').redirect(next, 303);
    },
  );

  app.post(`${consoleHome}/logout`, async (request, reply) => {
    // A dead session logs out without ceremony; a live one only with its CSRF token.
    const principal = await sessions.authenticate(request);
    if (principal) {
      const token = (request.body as Record<string, unknown> | undefined)?.[csrfFieldName];
      if (!sessions.checkCsrf(request, token ?? request.headers[csrfHeader])) {
        throw new RecoupError('forbidden', 'This form expired or did not come from the console; reload it and retry');
      }
      await sessions.end(request);
    }
    return reply
      .header('set-cookie', sessions.clearCookie())
      .header('cache-control', 'no-store')
      .redirect(loginPath, 303);
  });

  app.get(consoleHome, { onRequest: sessions.requireConsole() }, async (request, reply) => {
    const principal = request.principal;
    return sendPage(reply, 200, pages.home, {
      title: 'recoup console',
      name: principal?.name ?? '',
      scopes: principal?.scopes.join(', ') ?? '',
      csrf: sessions.csrfToken(request),
      links: homeLinks.filter((link) => hasScope(principal, link.scopes)),
    });
  });
}

// Pages: small, server-rendered, no scripts. One inline stylesheet, allowed by its CSP hash.

const style = `
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c2430}
main{max-width:28rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.4rem;margin:0 0 1rem}label{display:block;font-weight:600;margin-bottom:.25rem}
input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;font-family:monospace}
button{margin-top:1rem;padding:.5rem 1rem;font:inherit;cursor:pointer}
.error{color:#a61b1b;background:#fdecec;padding:.5rem .75rem;border-radius:4px}
.hint{color:#5b6675;font-size:.9rem}code{font-size:.85rem}
`;
const csp = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const handlebars = Handlebars.create();
handlebars.registerPartial(
  'layout',
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{title}} · recoup console</title><style>{{{style}}}</style></head>
<body><main>{{> @partial-block}}</main></body></html>`,
);
const compile = <T>(source: string) =>
  handlebars.compile<T & { style: string }>(source, { strict: true }) as (data: T & { style: string }) => string;

const logoutForm = `<form method="post" action="${consoleHome}/logout">
<input type="hidden" name="${csrfFieldName}" value="{{csrf}}"><button type="submit">Sign out</button></form>`;

interface HomeLink {
  href: string;
  label: string;
  text: string;
  /** Who the page lets in: the home page lists only what the signed-in key can open. */
  scopes: Scope[];
}

const homeLinks: HomeLink[] = [
  {
    href: '/dashboard',
    label: 'Dashboard',
    text: 'recovered revenue, funnel and holdout, in English or Chinese',
    scopes: ['ops', 'finance'],
  },
  {
    href: '/console/orders',
    label: 'Orders',
    text: 'search an order and read its whole story',
    scopes: ['ops', 'finance'],
  },
  { href: '/console/cadences', label: 'Cadences', text: 'edit, preview, version history', scopes: ['ops'] },
  { href: '/console/suppressions', label: 'Suppressions', text: 'who asked not to be contacted', scopes: ['ops'] },
  { href: '/console/webhooks', label: 'Webhooks', text: 'the shop’s endpoints and their deliveries', scopes: ['ops'] },
  { href: '/console/health', label: 'Health', text: 'payment gateways and stuck orders', scopes: ['ops'] },
  { href: '/admin/queues', label: 'Queues', text: 'the steps queue (bull-board, read-only)', scopes: ['ops'] },
];

const pages = {
  login: compile<{ title: string; error: string | null; next: string }>(`{{#> layout}}
<h1>Sign in to recoup</h1>
{{#if error}}<p class="error" role="alert">{{error}}</p>{{/if}}
<form method="post" action="${loginPath}">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" spellcheck="false" required autofocus>
<input type="hidden" name="next" value="{{next}}">
<button type="submit">Sign in</button>
</form>
<p class="hint">Use a key with the ops, finance or admin scope, e.g. from
<code>recoup keys create --scope ops --name "…"</code>.</p>
{{/layout}}`),
  forbidden: compile<{ title: string; message: string; name: string; scopes: string; csrf: string }>(`{{#> layout}}
<h1>Not allowed</h1>
<p class="error" role="alert">{{message}}</p>
<p>You are signed in with the key “{{name}}” (scopes: {{scopes}}). Sign out and sign in with another key.</p>
${logoutForm}
{{/layout}}`),
  home: compile<{ title: string; name: string; scopes: string; csrf: string; links: HomeLink[] }>(`{{#> layout}}
<h1>recoup console</h1>
<p>Signed in with the key “{{name}}” (scopes: {{scopes}}).</p>
<ul>
  {{#each links}}<li><a href="{{href}}">{{label}}</a>: {{text}}</li>
  {{/each}}<li><a href="/docs">API docs</a></li>
</ul>
${logoutForm}
{{/layout}}`),
};

function sendPage<T>(reply: FastifyReply, status: number, page: (data: T & { style: string }) => string, data: T) {
  return reply
    .status(status)
    .header('content-security-policy', csp)
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .type('text/html; charset=utf-8')
    .send(page({ ...data, style }));
}

/** The value of cookie `name` in a Cookie header (the first, as browsers send the most specific first). */
function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function safeEqual(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function isSafeMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

/** A person's browser loading a page (redirect it to log in) rather than a script (answer 401). */
function wantsHtml(request: FastifyRequest): boolean {
  return (request.method === 'GET' || request.method === 'HEAD') && /text\/html/.test(request.headers.accept ?? '');
}

/** Where to go after login: a path on this site only, never another origin (`//evil`, `/\\evil`). */
function safeNext(next: string | undefined): string {
  if (!next || next.length > 2_000 || !/^\/(?![/\\])[^\s\\]*$/.test(next)) return consoleHome;
  return next;
}
