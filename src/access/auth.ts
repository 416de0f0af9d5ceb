import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import { RecoupError } from '../platform/errors.js';

/**
 * What a key may do:
 * - `ingest`: send shop events;
 * - `ops`: read orders, manage cadences and recoveries, refunds, the console;
 * - `finance`: read reports and the dashboard;
 * - `admin`: everything, including keys. Implies every other scope.
 */
export const scopes = ['ingest', 'ops', 'finance', 'admin'] as const;
export type Scope = (typeof scopes)[number];

/** Who is calling: an API key (bearer) or a console session opened with one. */
export interface Principal {
  kind: 'key' | 'session';
  keyId: string;
  name: string;
  scopes: Scope[];
}

/**
 * Reads the console session a request carries (the `recoup_session` cookie), checked against
 * the key behind it; undefined without a valid one. build-app installs it on the app as
 * `consoleSessions` (see src/console/console-auth.ts), so `requireScope` accepts a session too.
 */
export interface SessionAuthenticator {
  authenticate(request: FastifyRequest): Promise<Principal | undefined>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyInstance {
    consoleSessions?: SessionAuthenticator;
  }
}

/** A key looked up by id, for sessions that hold the id rather than the key. */
export interface KeyRecord {
  principal: Principal;
  /**
   * Changes whenever the secret behind the id changes (an env key rotated in place). Compared
   * by sessions through an HMAC only; derived from the key's hash, never the key itself.
   */
  version: string;
}

/** Resolves a presented secret to a principal; undefined for an unknown or revoked key. */
export interface KeyResolver {
  resolve(key: string): Promise<Principal | undefined>;
  /**
   * The key with this id, if it still exists and is not revoked: console sessions re-check it on
   * every request. Optional; without it sessions opened with this resolver's keys are refused.
   */
  resolveId?(keyId: string): Promise<KeyRecord | undefined>;
  /** The keys this resolver takes from recoup's configuration (listed with the stored ones); none by default. */
  configured?(): ConfiguredKey[];
}

/**
 * Where the bootstrap keys come from: the RECOUP_API_KEYS setting, or the one key recoup
 * generates into DATA_DIR/api-key at its first start when that setting is empty.
 */
export type ConfiguredKeySource = 'setting' | 'generated';

/**
 * A bootstrap key as lists show it. It is retired by changing the setting (or deleting the
 * generated file), never revoked through the API or `recoup keys revoke`.
 */
export interface ConfiguredKey {
  /** `env-<position>`: what sessions and audit entries (`key:env-0`) hold. */
  id: string;
  name: string;
  scopes: Scope[];
  source: ConfiguredKeySource;
}

/** Bootstrap keys may do everything: they exist to create the scoped ones. */
const configuredScopes: Scope[] = ['ingest', 'admin'];

/**
 * The bootstrap keys in their order, `count` of them from `source`, named as people see them:
 * `configured key 1 (RECOUP_API_KEYS)`, `generated key (DATA_DIR/api-key)`.
 */
export function configuredKeys(count: number, source: ConfiguredKeySource): ConfiguredKey[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `env-${index}`,
    name: source === 'generated' ? 'generated key (DATA_DIR/api-key)' : `configured key ${index + 1} (RECOUP_API_KEYS)`,
    scopes: [...configuredScopes],
    source,
  }));
}

/** The bootstrap keys from RECOUP_API_KEYS (or the generated one): scopes ingest + admin. */
export class EnvKeyResolver implements KeyResolver {
  readonly #digests: Buffer[];
  readonly #keys: ConfiguredKey[];

  constructor(keys: string[], source: ConfiguredKeySource = 'setting') {
    this.#digests = keys.map(digest);
    this.#keys = configuredKeys(keys.length, source);
  }

  configured(): ConfiguredKey[] {
    return this.#keys.map((key) => ({ ...key, scopes: [...key.scopes] }));
  }

  async resolve(key: string): Promise<Principal | undefined> {
    const candidate = digest(key);
    let index = -1;
    // Compare against every key in constant time: timing reveals neither which nor whether.
    this.#digests.forEach((known, i) => {
      if (timingSafeEqual(known, candidate)) index = i;
    });
    if (index < 0) return undefined;
    return this.#principal(index);
  }

  async resolveId(keyId: string): Promise<KeyRecord | undefined> {
    const index = Number(/^env-(\d+)$/.exec(keyId)?.[1] ?? -1);
    const known = this.#digests[index];
    if (!known) return undefined;
    return { principal: this.#principal(index), version: createHash('sha256').update(known).digest('hex') };
  }

  #principal(index: number): Principal {
    const key = this.#keys[index];
    if (!key) throw new RecoupError('internal', `No configured key at position ${index}`);
    return { kind: 'key', keyId: key.id, name: key.name, scopes: [...key.scopes] };
  }
}

/** Tries resolvers in order (env keys first, then keys stored in Postgres). */
export class ChainedKeyResolver implements KeyResolver {
  constructor(private readonly resolvers: KeyResolver[]) {}
  async resolve(key: string): Promise<Principal | undefined> {
    for (const resolver of this.resolvers) {
      const found = await resolver.resolve(key);
      if (found) return found;
    }
    return undefined;
  }
  async resolveId(keyId: string): Promise<KeyRecord | undefined> {
    for (const resolver of this.resolvers) {
      const found = await resolver.resolveId?.(keyId);
      if (found) return found;
    }
    return undefined;
  }
  configured(): ConfiguredKey[] {
    return this.resolvers.flatMap((resolver) => resolver.configured?.() ?? []);
  }
}

export function hasScope(principal: Principal | undefined, needed: readonly Scope[]): boolean {
  if (!principal) return false;
  return principal.scopes.includes('admin') || needed.some((s) => principal.scopes.includes(s));
}

/** Reads `Authorization: Bearer <key>` and sets `request.principal`; throws `unauthorized` if absent or unknown. */
export async function authenticateBearer(request: FastifyRequest, resolver: KeyResolver): Promise<Principal> {
  if (request.principal) return request.principal;
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match?.[1]) throw new RecoupError('unauthorized', 'Send an API key as "Authorization: Bearer <key>"');
  const principal = await resolver.resolve(match[1]);
  if (!principal) throw new RecoupError('unauthorized', 'Unknown or revoked API key');
  request.principal = principal;
  return principal;
}

/**
 * A route guard: the caller must hold one of `needed` (admin holds all). 401 without valid
 * credentials, 403 with credentials that lack the scope. Credentials are a bearer key or, when
 * the request sends no Authorization header, a console session cookie (so the console's own
 * calls to the API, bull-board and the dashboard work once a person has logged in).
 */
export function requireScope(resolver: KeyResolver, ...needed: Scope[]): onRequestHookHandler {
  return async (request) => {
    const session =
      request.principal === undefined && request.headers.authorization === undefined
        ? await request.server.consoleSessions?.authenticate(request)
        : undefined;
    if (session) request.principal = session;
    const principal = await authenticateBearer(request, resolver);
    if (!hasScope(principal, needed)) {
      throw new RecoupError('forbidden', `This needs the ${needed.join(' or ')} scope`);
    }
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
