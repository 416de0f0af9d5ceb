import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { RecoupError } from '../errors.js';

/** Checks bearer keys in constant time against their SHA-256 digests. */
export class ApiKeyAuth {
  readonly #digests: Buffer[];

  constructor(keys: string[]) {
    this.#digests = keys.map(digest);
  }

  /** Throws `unauthorized` unless the request carries one of the keys. */
  check(request: FastifyRequest): void {
    const header = request.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match?.[1]) throw new RecoupError('unauthorized', 'Send an API key as "Authorization: Bearer <key>"');
    const candidate = digest(match[1]);
    let ok = false;
    for (const known of this.#digests) ok = timingSafeEqual(known, candidate) || ok;
    if (!ok) throw new RecoupError('unauthorized', 'Unknown API key');
  }
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
