import { createHash, randomBytes } from 'node:crypto';
import { and, asc, eq, isNull, lt, or } from 'drizzle-orm';
import { z } from 'zod';
import { systemClock, type Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { apiKeys } from '../db/schema.js';
import { RecoupError, validationError, zodIssues } from '../platform/errors.js';
import { scopes, type KeyRecord, type KeyResolver, type Principal, type Scope } from './auth.js';
import { audit } from './audit.js';

/** Every key starts with this, so a leaked one is recognisable (secret scanners, logs). */
export const apiKeyPrefix = 'rk_live_';
/** Random characters of the key kept in `key_prefix` to recognise it in lists: 48 bits, never enough to use it. */
const shownChars = 8;

/** A stored key as lists show it: never the key, never its hash. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: Scope[];
  /** `rk_live_` and the key's first 8 random characters. */
  prefix: string;
  createdAt: Date;
  createdBy: string | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const nameMessage = 'give the key a name (who or what uses it)';
const scopesMessage = `give at least one scope: ${scopes.join(', ')}`;
const newApiKeySchema = z.strictObject({
  name: z.string({ error: nameMessage }).trim().min(1, nameMessage).max(100),
  scopes: z
    .array(z.enum(scopes, { error: `must be one of ${scopes.join(', ')}` }), { error: scopesMessage })
    .min(1, scopesMessage)
    .transform((given) => scopes.filter((s) => given.includes(s))),
});
/** What a new key needs: a name (who or what uses it) and its scopes. */
export type NewApiKey = z.output<typeof newApiKeySchema>;

/** Validates a new key's name and scopes (a request body, CLI flags); the error lists every bad field. */
export function parseNewApiKey(input: unknown): NewApiKey {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw validationError([{ path: '(body)', message: 'must be an object with name and scopes' }], 'Invalid API key');
  }
  const parsed = newApiKeySchema.safeParse(input);
  if (!parsed.success) throw validationError(zodIssues(parsed.error), 'Invalid API key');
  return parsed.data;
}

/** Who makes a change and when: written to `created_by` and the audit log. */
export interface ChangeContext {
  actor: string;
  at: Date;
}

/** SHA-256 of the key, hex: what `api_keys.key_hash` holds. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * Creates a key: 32 random bytes (base64url) after `rk_live_`. Only its hash and prefix are
 * stored; the key itself is in the result and nowhere else, so show it once. Audited as
 * `key.created`.
 */
export async function createApiKey(
  db: Db,
  input: NewApiKey,
  ctx: ChangeContext,
): Promise<{ key: string; record: ApiKeyRecord }> {
  const valid = parseNewApiKey(input);
  const key = `${apiKeyPrefix}${randomBytes(32).toString('base64url')}`;
  const id = `key_${randomBytes(12).toString('hex')}`;
  const record = await db.transaction(async (tx) => {
    const [row] = await tx
      .insert(apiKeys)
      .values({
        id,
        name: valid.name,
        scopes: valid.scopes,
        keyHash: hashApiKey(key),
        keyPrefix: key.slice(0, apiKeyPrefix.length + shownChars),
        createdAt: ctx.at,
        createdBy: ctx.actor,
      })
      .returning();
    if (!row) throw new RecoupError('internal', 'API key insert returned no row');
    const created = toRecord(row);
    await audit(tx, {
      actor: ctx.actor,
      action: 'key.created',
      subject: `key:${id}`,
      before: null,
      after: auditView(created),
      at: ctx.at,
    });
    return created;
  });
  return { key, record };
}

/** Every stored key, revoked ones included (oldest first). Configured keys are not stored: see `KeyResolver.configured`. */
export async function listApiKeys(db: Db): Promise<ApiKeyRecord[]> {
  const found = await db.select().from(apiKeys).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
  return found.map(toRecord);
}

/**
 * Revokes the key named by `ref`: its id, its prefix (`rk_live_AbCd1234` or just `AbCd1234`),
 * or the key itself. Revoking a revoked key changes nothing (`changed: false`, no audit row).
 * Throws `not_found` when nothing matches and `conflict` when a prefix matches several keys.
 */
export async function revokeApiKey(
  db: Db,
  ref: string,
  ctx: ChangeContext,
): Promise<{ record: ApiKeyRecord; changed: boolean }> {
  const wanted = ref.trim();
  if (wanted === '') throw new RecoupError('not_found', 'Give the id or prefix of the key to revoke');
  return db.transaction(async (tx) => {
    const matches = await tx
      .select()
      .from(apiKeys)
      .where(
        or(
          eq(apiKeys.id, wanted),
          eq(apiKeys.keyPrefix, wanted),
          eq(apiKeys.keyPrefix, `${apiKeyPrefix}${wanted}`),
          eq(apiKeys.keyHash, hashApiKey(wanted)),
        ),
      )
      .for('update');
    const [row, ...others] = matches;
    if (!row) {
      const hint = wanted.startsWith('env-')
        ? ' (configured keys are retired by changing RECOUP_API_KEYS; the generated one by deleting DATA_DIR/api-key and restarting)'
        : '';
      throw new RecoupError('not_found', `No API key matches "${wanted}"${hint}`);
    }
    if (others.length > 0) {
      throw new RecoupError('conflict', `"${wanted}" matches ${matches.length} keys; give the key's id`);
    }
    const before = toRecord(row);
    if (before.revokedAt) return { record: before, changed: false };
    const [updated] = await tx.update(apiKeys).set({ revokedAt: ctx.at }).where(eq(apiKeys.id, row.id)).returning();
    if (!updated) throw new RecoupError('internal', 'API key update returned no row');
    const after = toRecord(updated);
    await audit(tx, {
      actor: ctx.actor,
      action: 'key.revoked',
      subject: `key:${row.id}`,
      before: auditView(before),
      after: auditView(after),
      at: ctx.at,
    });
    return { record: after, changed: true };
  });
}

export interface DbKeyResolverOptions {
  /** `last_used_at` is written at most this often per key. Default 60 s. */
  touchIntervalMs?: number;
}

/**
 * Resolves keys stored in `api_keys` by their SHA-256 hash; revoked keys resolve to nothing.
 * Every lookup reads Postgres (no cache), so a revocation takes effect on the next request.
 */
export class DbKeyResolver implements KeyResolver {
  readonly #touchIntervalMs: number;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock = systemClock,
    options: DbKeyResolverOptions = {},
  ) {
    this.#touchIntervalMs = options.touchIntervalMs ?? 60_000;
  }

  async resolve(key: string): Promise<Principal | undefined> {
    // Anything else cannot be one of ours: skip the query.
    if (!key.startsWith(apiKeyPrefix)) return undefined;
    return (await this.#find(eq(apiKeys.keyHash, hashApiKey(key))))?.principal;
  }

  async resolveId(keyId: string): Promise<KeyRecord | undefined> {
    return this.#find(eq(apiKeys.id, keyId));
  }

  async #find(match: ReturnType<typeof eq>): Promise<KeyRecord | undefined> {
    const [row] = await this.db
      .select({
        id: apiKeys.id,
        name: apiKeys.name,
        scopes: apiKeys.scopes,
        keyHash: apiKeys.keyHash,
        lastUsedAt: apiKeys.lastUsedAt,
      })
      .from(apiKeys)
      .where(and(match, isNull(apiKeys.revokedAt)))
      .limit(1);
    if (!row) return undefined;
    await this.#touch(row.id, row.lastUsedAt);
    return {
      principal: { kind: 'key', keyId: row.id, name: row.name, scopes: knownScopes(row.scopes) },
      version: row.keyHash,
    };
  }

  /** Records use, at most once per interval: a busy key must not turn every request into a write. */
  async #touch(id: string, lastUsedAt: Date | null): Promise<void> {
    const now = this.clock.now();
    const stale = new Date(now.getTime() - this.#touchIntervalMs);
    if (lastUsedAt && lastUsedAt > stale) return;
    // The condition again in SQL: concurrent requests (and other processes) write once between them.
    await this.db
      .update(apiKeys)
      .set({ lastUsedAt: now })
      .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, stale))));
  }
}

type ApiKeyRow = typeof apiKeys.$inferSelect;

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    scopes: knownScopes(row.scopes),
    prefix: row.keyPrefix,
    createdAt: row.createdAt,
    createdBy: row.createdBy,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

/** What the audit log keeps of a key: enough to recognise it, nothing to use it. */
function auditView(record: ApiKeyRecord): Record<string, unknown> {
  return {
    name: record.name,
    scopes: record.scopes,
    prefix: record.prefix,
    revoked_at: record.revokedAt?.toISOString() ?? null,
  };
}

// A scope a newer version wrote and this one does not know grants nothing.
function knownScopes(stored: string[]): Scope[] {
  return scopes.filter((s) => stored.includes(s));
}
