import { sql } from 'drizzle-orm';
import type { ConfiguredKey } from '../access/auth.js';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';

/**
 * `key:<id>` actors by their key's name: `configured key 1 (RECOUP_API_KEYS)` or `generated key
 * (DATA_DIR/api-key)` for bootstrap keys (`configured`, from the app's key resolver), the stored
 * key's name otherwise; `link:<message id>` as the retry link ops issued. Other actors (`cli:…`,
 * `customer:…`) stay as they are.
 */
export async function actorNames(
  db: DbOrTx,
  actors: string[],
  configured: readonly ConfiguredKey[],
): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const actor of actors) {
    if (actor.startsWith('link:'))
      names.set(actor, `the holder of retry link ${actor.slice('link:'.length)} (issued by ops)`);
  }
  const ids = [...new Set(actors.filter((a) => a.startsWith('key:')).map((a) => a.slice('key:'.length)))];
  for (const id of ids) {
    const env = /^env-(\d+)$/.exec(id);
    if (!env) continue;
    // A bootstrap key since removed from the configuration keeps its position in the name.
    const known = configured.find((key) => key.id === id);
    names.set(`key:${id}`, known?.name ?? `configured key ${Number(env[1]) + 1} (no longer configured)`);
  }
  const stored = ids.filter((id) => id.startsWith('key_'));
  if (stored.length > 0) {
    const found = await rows<{ id: string; name: string }>(
      db,
      sql`select id, name from api_keys where id in (${sql.join(
        stored.map((id) => sql`${id}`),
        sql`, `,
      )})`,
    );
    for (const key of found) names.set(`key:${key.id}`, key.name);
  }
  return names;
}
