import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * Counts what this process sends, at the drivers: every Postgres statement goes through
 * pg.Client#query (pool queries included), every Redis command through ioredis' sendCommand
 * (a BullMQ Lua script is one command here; INFO commandstats also counts the calls inside it).
 * Call before any connection is opened.
 */
export function countDriverCalls(): { pgStatements(): number; redisCommands(): number } {
  let statements = 0;
  let commands = 0;
  const client = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const query = client.query;
  client.query = function (this: unknown, ...a: unknown[]) {
    statements += 1;
    return query.apply(this, a);
  };
  const redis = Redis.prototype as unknown as { sendCommand: (...a: unknown[]) => unknown };
  const sendCommand = redis.sendCommand;
  redis.sendCommand = function (this: unknown, ...a: unknown[]) {
    commands += 1;
    return sendCommand.apply(this, a);
  };
  return { pgStatements: () => statements, redisCommands: () => commands };
}
