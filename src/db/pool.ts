import pg from 'pg';

/**
 * A pg.Pool that gets a client back even when a transaction cannot begin.
 *
 * drizzle's node-postgres `transaction()` checks a client out and sends `begin` before the
 * try/finally that releases it (drizzle-orm 0.45, drizzle-team/drizzle-orm#6241): a connection
 * that dies right after checkout (a failover, pg_terminate_backend, a network cut) leaks its pool
 * slot for the life of the process, and `pool.end()` then waits for it forever. Here a `begin`
 * that fails releases the client with the error, which also makes the pool discard it.
 */
export class TransactionSafePool extends pg.Pool {
  override connect(): Promise<pg.PoolClient>;
  override connect(
    callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void,
  ): void;
  override connect(
    callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void,
  ): Promise<pg.PoolClient> | void {
    // The callback form is pg's own (pool.query), which always releases.
    if (callback) return super.connect(callback);
    return super.connect().then(releasedIfBeginFails);
  }
}

function releasedIfBeginFails(client: pg.PoolClient): pg.PoolClient {
  let released = false;
  const release = (err?: Error | boolean) => {
    if (released) return;
    released = true;
    client.release(err);
  };
  const query = (...args: unknown[]): unknown => {
    const result = (client.query as (...a: unknown[]) => unknown)(...args);
    if (!(result instanceof Promise) || !isBegin(args[0])) return result;
    return result.catch((err: unknown) => {
      release(err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
  };
  return new Proxy(client, {
    get(target, prop) {
      if (prop === 'query') return query;
      if (prop === 'release') return release;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function isBegin(query: unknown): boolean {
  const text = typeof query === 'string' ? query : (query as { text?: unknown } | undefined)?.text;
  return typeof text === 'string' && /^\s*begin\b/i.test(text);
}
