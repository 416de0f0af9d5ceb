import type { SQL } from 'drizzle-orm';
import type { Db } from './client.js';

/**
 * Runs raw SQL and returns its rows. node-postgres and PGlite both answer with
 * `{ rows }`; drizzle types the result per driver, so this is the one place that knows.
 */
export async function rows<T>(db: Pick<Db, 'execute'>, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}
