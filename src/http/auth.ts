import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import { RecoupError } from '../errors.js';

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

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** Resolves a presented secret to a principal; undefined for an unknown or revoked key. */
export interface KeyResolver {
  resolve(key: string): Promise<Principal | undefined>;
}

/** The bootstrap keys from RECOUP_API_KEYS (or the generated one): scopes ingest + admin. */
export class EnvKeyResolver implements KeyResolver {
  readonly #digests: Buffer[];

  constructor(keys: string[]) {
    this.#digests = keys.map(digest);
  }

  async resolve(key: string): Promise<Principal | undefined> {
    const candidate = digest(key);
    let index = -1;
    // Compare against every key in constant time: timing reveals neither which nor whether.
    this.#digests.forEach((known, i) => {
      if (timingSafeEqual(known, candidate)) index = i;
    });
    if (index < 0) return undefined;
    return { kind: 'key', keyId: `env-${index}`, name: `RECOUP_API_KEYS[${index}]`, scopes: ['ingest', 'admin'] };
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
 * credentials, 403 with credentials that lack the scope.
 */
export function requireScope(resolver: KeyResolver, ...needed: Scope[]): onRequestHookHandler {
  return async (request) => {
    const principal = await authenticateBearer(request, resolver);
    if (!hasScope(principal, needed)) {
      throw new RecoupError('forbidden', `This needs the ${needed.join(' or ')} scope`);
    }
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
