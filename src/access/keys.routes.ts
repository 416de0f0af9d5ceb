import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  createApiKey,
  listApiKeys,
  parseNewApiKey,
  revokeApiKey,
  type ApiKeyRecord,
  type ChangeContext,
} from './api-keys.js';
import { principalActor } from './audit.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { RecoupError } from '../platform/errors.js';
import { requireScope, type ConfiguredKey, type KeyResolver } from './auth.js';
import { requireJson } from '../http/request.js';

export interface KeyRouteDeps {
  db: Db;
  clock: Clock;
  keys: KeyResolver;
}

/**
 * API keys (scope `admin`): `GET /v1/keys` lists them (never the key): the configured ones first
 * (`source` `setting` or `generated`: retired by changing RECOUP_API_KEYS or deleting the
 * generated file, never revoked here), then the stored ones (`source` `stored`). `POST /v1/keys`
 * `{name, scopes}` creates one and answers its key once, `DELETE /v1/keys/:id` revokes a stored
 * one (id or prefix). Changes are audited with the caller as actor.
 */
export async function keyRoutes(app: FastifyInstance, deps: KeyRouteDeps): Promise<void> {
  const admin = { onRequest: requireScope(deps.keys, 'admin') };

  app.get('/v1/keys', admin, async () => ({
    keys: [...(deps.keys.configured?.() ?? []).map(configuredView), ...(await listApiKeys(deps.db)).map(keyView)],
  }));

  app.post('/v1/keys', admin, async (request, reply) => {
    requireJson(request);
    const created = await createApiKey(deps.db, parseNewApiKey(request.body), change(request, deps.clock));
    // The only time the key is ever shown: recoup keeps its hash.
    return reply
      .status(201)
      .header('cache-control', 'no-store')
      .send({ ...keyView(created.record), key: created.key });
  });

  app.delete<{ Params: { id: string } }>('/v1/keys/:id', admin, async (request) => {
    const { record } = await revokeApiKey(deps.db, request.params.id, change(request, deps.clock));
    return keyView(record);
  });
}

function change(request: FastifyRequest, clock: Clock): ChangeContext {
  if (!request.principal) throw new RecoupError('unauthorized', 'No caller');
  return { actor: principalActor(request.principal), at: clock.now() };
}

function keyView(record: ApiKeyRecord) {
  return {
    id: record.id,
    name: record.name,
    scopes: record.scopes,
    source: 'stored' as const,
    prefix: record.prefix,
    created_at: record.createdAt.toISOString(),
    created_by: record.createdBy,
    last_used_at: record.lastUsedAt?.toISOString() ?? null,
    revoked_at: record.revokedAt?.toISOString() ?? null,
  };
}

/** A configured key in the same shape: recoup keeps no prefix, dates or revocation for it. */
function configuredView(key: ConfiguredKey) {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    source: key.source,
    prefix: null,
    created_at: null,
    created_by: null,
    last_used_at: null,
    revoked_at: null,
  };
}
