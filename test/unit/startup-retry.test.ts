import { describe, expect, it } from 'vitest';
import { isConnectionLost, retryWhileConnecting } from '../../src/db/startup-retry.js';

/** An error shaped as node-postgres raises it, wrapped as drizzle wraps it. */
function pgError(code: string, message = 'boom'): Error {
  return new Error('Failed query: select 1', { cause: Object.assign(new Error(message), { code }) });
}

describe('isConnectionLost', () => {
  it('knows a terminated or refused connection, wrapped or not', () => {
    expect(isConnectionLost(pgError('57P01', 'terminating connection due to administrator command'))).toBe(true);
    expect(isConnectionLost(pgError('57P03', 'the database system is starting up'))).toBe(true);
    expect(
      isConnectionLost(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })),
    ).toBe(true);
    expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
  });

  it('does not take a failed statement, a refused login or a bad setting for a lost connection', () => {
    expect(isConnectionLost(pgError('42P01', 'relation "orders" does not exist'))).toBe(false);
    expect(isConnectionLost(pgError('28P01', 'password authentication failed'))).toBe(false);
    expect(isConnectionLost(pgError('3D000', 'database "shop" does not exist'))).toBe(false);
    expect(isConnectionLost(new Error('invalid input syntax'))).toBe(false);
    expect(isConnectionLost(undefined)).toBe(false);
  });
});

describe('retryWhileConnecting', () => {
  it('runs the step again after lost connections and returns its result, telling once that it waits', async () => {
    let calls = 0;
    const waiting: string[] = [];
    const result = await retryWhileConnecting(
      async () => {
        calls += 1;
        if (calls < 3) throw pgError('57P01', 'terminating connection due to administrator command');
        return 'migrated';
      },
      { waitMs: 60_000, retryMs: 1, onWaiting: (reason) => waiting.push(reason) },
    );
    expect(result).toBe('migrated');
    expect(calls).toBe(3);
    expect(waiting).toEqual(['Failed query: select 1']);
  });

  it('fails at once on any other error', async () => {
    let calls = 0;
    const failing = retryWhileConnecting(
      async () => {
        calls += 1;
        throw pgError('42P01', 'relation "orders" does not exist');
      },
      { waitMs: 60_000, retryMs: 1 },
    );
    await expect(failing).rejects.toThrow('Failed query');
    expect(calls).toBe(1);
  });

  it('gives up with the last error once the wait is over', async () => {
    let calls = 0;
    const failing = retryWhileConnecting(
      async () => {
        calls += 1;
        throw pgError('ECONNREFUSED', `refused ${calls}`);
      },
      { waitMs: 0, retryMs: 1 },
    );
    await expect(failing).rejects.toMatchObject({ cause: { message: 'refused 1' } });
    expect(calls).toBe(1);
  });
});
