import type { SQL } from 'drizzle-orm';
import type { Db } from './client.js';

// Postgres type ids of timestamp and timestamptz.
const timestampTypes = new Set([1114, 1184]);

/**
 * Runs raw SQL and returns its rows. node-postgres and PGlite both answer with
 * `{ rows, fields }`; drizzle keeps timestamps as strings for its own mapping, so
 * this turns timestamp columns into Dates (and leaves int8 as strings: callers
 * convert amounts explicitly).
 */
export async function rows<T>(db: Pick<Db, 'execute'>, query: SQL): Promise<T[]> {
  return rowsOf<T>((await db.execute(query)) as unknown as QueryResult);
}

/** What node-postgres and PGlite answer for one statement. */
export interface QueryResult {
  rows: Array<Record<string, unknown>>;
  fields?: Array<{ name: string; dataTypeID: number }>;
}

/** The rows of one statement's result, timestamp columns as Dates (see rows). */
export function rowsOf<T>(result: QueryResult): T[] {
  const dateFields = (result.fields ?? []).filter((f) => timestampTypes.has(f.dataTypeID)).map((f) => f.name);
  if (dateFields.length > 0) {
    for (const row of result.rows) {
      for (const name of dateFields) {
        const value = row[name];
        if (typeof value === 'string')
          row[name] = new Date(/[zZ]|[+-]\d\d(:?\d\d)?$/.test(value) ? value : `${value}Z`);
      }
    }
  }
  return result.rows as T[];
}
