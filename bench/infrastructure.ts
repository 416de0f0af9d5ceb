import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';

/** A fresh `recoup_bench_<random>` database; `drop` removes it even with connections still open. */
export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `recoup_bench_${randomBytes(4).toString('hex')}`;
  await withAdmin(adminUrl, (admin) => admin.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      await withAdmin(adminUrl, (admin) => admin.query(`drop database if exists ${name} with (force)`));
    },
  };
}

async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

/** A fresh key prefix (no `:`); phases use `<prefix><letter>` so each gets an empty queue. */
export function benchPrefix(): string {
  return `rbench${randomBytes(4).toString('hex')}`;
}

/** Deletes every key under the prefix (and its per-phase variants). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5_000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

export async function redisInfo(redis: Redis, section: string): Promise<Map<string, string>> {
  const text = await redis.info(section);
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

/** Sum of `calls` over INFO commandstats: every command Redis ran, including those inside Lua scripts. */
export async function redisCommandCalls(redis: Redis): Promise<number> {
  let total = 0;
  for (const [, value] of await redisInfo(redis, 'commandstats')) {
    const calls = /(?:^|,)calls=(\d+)/.exec(value);
    if (calls?.[1]) total += Number(calls[1]);
  }
  return total;
}

/** CPU seconds Redis used (user + system), server-wide. */
export async function redisCpuMs(redis: Redis): Promise<number> {
  const cpu = await redisInfo(redis, 'cpu');
  return (Number(cpu.get('used_cpu_user')) + Number(cpu.get('used_cpu_sys'))) * 1000;
}

export async function redisUsedMemory(redis: Redis): Promise<number> {
  return Number((await redisInfo(redis, 'memory')).get('used_memory') ?? NaN);
}

/** Bytes on disk of the given tables with their indexes and TOAST. */
export async function tableBytes(client: pg.Pool, tables: readonly string[]): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>(
    `select coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind = 'r' and c.relname = any($1)`,
    [tables],
  );
  return Number(rows[0]?.bytes ?? NaN);
}

/** Bytes on disk of every table in the public schema (indexes and TOAST included) but the excluded ones. */
export async function allTableBytes(client: pg.Pool, exclude: readonly string[] = []): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>(
    `select coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind = 'r' and not (c.relname = any($1))`,
    [exclude],
  );
  return Number(rows[0]?.bytes ?? NaN);
}

/**
 * Statements run in this database, from pg_stat_statements when the server preloads it;
 * undefined otherwise (then the worker counts at its driver instead).
 */
export async function pgStatStatementsCalls(client: pg.Pool): Promise<number | undefined> {
  try {
    const { rows } = await client.query<{ calls: string }>(
      `select coalesce(sum(calls), 0)::text as calls from pg_stat_statements
        where dbid = (select oid from pg_database where datname = current_database())`,
    );
    return Number(rows[0]?.calls ?? NaN);
  } catch {
    return undefined;
  }
}

/** True when pg_stat_statements can be created and read here (it must be in shared_preload_libraries). */
export async function enablePgStatStatements(client: pg.Pool): Promise<boolean> {
  try {
    await client.query('create extension if not exists pg_stat_statements');
    return (await pgStatStatementsCalls(client)) !== undefined;
  } catch {
    return false;
  }
}

/** CPU time so far of each Postgres backend serving connections named `appName`, by pid. */
export async function pgBackendCpu(client: pg.Pool, appName: string): Promise<Map<number, number>> {
  const { rows } = await client.query<{ pid: number }>(
    'select pid from pg_stat_activity where application_name = $1 and datname = current_database()',
    [appName],
  );
  const cpu = new Map<number, number>();
  for (const { pid } of rows) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) cpu.set(pid, ms);
  }
  return cpu;
}

/** utime + stime of a local process from /proc (Linux, same host only). */
function processCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Same pid in another pid namespace (Postgres in a container) would be some other process.
    if (!stat.includes('(postgres)')) return undefined;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of /proc/pid/stat (here shifted by the two before the comm), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Postgres CPU spent between two samples: backends opened since count from zero. NaN when the server
 * is not on this host (no /proc entry for its backends).
 */
export function pgCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  if (after.size === 0) return NaN;
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

export interface MachineInfo {
  cpu_model: string;
  cores: number;
  memory_gb: number;
  node: string;
  redis: string;
  postgres: string;
  platform: string;
  /** The server's autovacuum setting: off, dead rows and stale statistics pile up over the run. */
  postgres_autovacuum: string;
  load_average_at_start: number[];
}

export async function machineInfo(redis: Redis, client: pg.Pool): Promise<MachineInfo> {
  const cpus = os.cpus();
  const { rows } = await client.query<{ server_version: string }>('show server_version');
  const autovacuum = await client.query<{ autovacuum: string }>('show autovacuum');
  return {
    cpu_model: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memory_gb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    redis: (await redisInfo(redis, 'server')).get('redis_version') ?? 'unknown',
    postgres: rows[0]?.server_version ?? 'unknown',
    platform: `${os.platform()} ${os.release()}`,
    postgres_autovacuum: autovacuum.rows[0]?.autovacuum ?? 'unknown',
    load_average_at_start: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}
