import pg from 'pg';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Db } from './client.js';
import { rows, rowsOf, type QueryResult } from './rows.js';

const dialect = new PgDialect();

/**
 * Runs `first` in a transaction of its own and commits it, then `then` in the next one: `then`
 * reads with a snapshot taken after `first` committed, exactly as if the two were sent one after
 * the other, but on Postgres in one round trip (`begin; first; commit; then` as one simple-protocol
 * message; the embedded database takes them one by one). Each statement's rows, in that order.
 *
 * One message carries no bound parameters: theirs are sent as quoted literals, so they may be
 * strings, numbers, booleans or null only (the batch statements pass one JSON string each).
 *
 * When it throws, `first` may still have committed: `then` alone failed, or the answer was lost.
 */
export async function commitThen<A, B>(db: Db, first: SQL, then: SQL): Promise<[A[], B[]]> {
  if (!sendsTogether(db)) return [await rows<A>(db, first), await rows<B>(db, then)];
  const results = (await db.execute(
    sql.raw(`begin; ${inline(first)}; commit; ${inline(then)}`),
  )) as unknown as QueryResult[];
  // One result per statement: begin, first, commit, then.
  if (!Array.isArray(results) || results.length !== 4) throw new Error('expected one result per statement');
  return [rowsOf<A>(results[1]!), rowsOf<B>(results[3]!)];
}

/** Whether the driver takes several statements in one message: node-postgres does, PGlite's query does not. */
function sendsTogether(db: Db): boolean {
  const client = (db as unknown as { $client?: unknown }).$client;
  return client instanceof pg.Pool || client instanceof pg.Client;
}

/** The statement's text with its parameters as literals. */
export function inline(statement: SQL): string {
  const { sql: text, params } = dialect.sqlToQuery(statement);
  return text.replace(/\$(\d+)\b/g, (_, n: string) => literal(params[Number(n) - 1]));
}

function literal(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  // escapeLiteral quotes backslashes too, whatever standard_conforming_strings says.
  if (typeof value === 'string') return pg.escapeLiteral(value);
  throw new Error(`a statement sent with another cannot take a ${typeof value} parameter`);
}
