import type { FastifyRequest } from 'fastify';
import { RecoupError } from '../platform/errors.js';

/** JSON APIs take JSON only: anything else is a 415 before it is looked at. */
export function requireJson(request: FastifyRequest): void {
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    throw new RecoupError('unsupported_media_type', 'Send the body as application/json');
  }
}
