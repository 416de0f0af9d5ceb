import { sql } from 'drizzle-orm';
import { rows } from '../db/rows.js';
import type { DbOrTx } from '../db/tx.js';

/**
 * `key:<id>` actors by their key's name (`RECOUP_API_KEYS[0]` for bootstrap keys), `link:<message id>`
 * as the retry link ops issued; others as they are.
 */
export async function actorNames(db: DbOrTx, actors: string[]): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const actor of actors) {
    if (actor.startsWith('link:'))
      names.set(actor, `the holder of retry link ${actor.slice('link:'.length)} (issued by ops)`);
  }
  const ids = [...new Set(actors.filter((a) => a.startsWith('key:')).map((a) => a.slice('key:'.length)))];
  for (const id of ids) {
    const env = /^env-(\d+)$/.exec(id);
    if (env) names.set(`key:${id}`, `RECOUP_API_KEYS[${env[1]}]`);
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
