import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { systemClock, type Clock } from '../platform/clock.js';
import type { Config } from '../config.js';
import { openDatabase, type Database } from '../db/client.js';
import { createApiKey, listApiKeys, parseNewApiKey, revokeApiKey, type ApiKeyRecord } from '../access/api-keys.js';
import { configuredKeys, type ConfiguredKey } from '../access/auth.js';
import { generatedApiKeyFile } from './deps.js';
import { callApi, embeddedServerApi } from './api-client.js';

export const keysUsage = `  keys create --scope SCOPE [--scope SCOPE…] --name NAME
                         create an API key (scopes: ingest, ops, finance, admin); prints it once
  keys list              list API keys (never the keys themselves), configured ones included
  keys revoke ID|PREFIX  revoke a key: it stops working at once, console sessions included`;

/** `recoup keys …`: manage the API keys stored in Postgres (or the embedded database). */
export async function keysCommand(args: string[], config: Config, clock: Clock = systemClock): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const values = usage(
        () =>
          parseArgs({
            args: rest,
            options: { scope: { type: 'string', multiple: true }, name: { type: 'string' } },
            strict: true,
          }).values,
      );
      if (!values) return 2;
      const input = parseNewApiKey({ name: values.name, scopes: values.scope });
      // Beside a recoup that has the embedded database open, through its API (src/db/embedded-lock.ts).
      const api = embeddedServerApi(config);
      if (api) {
        const { body } = await callApi<ApiKeyView & { key: string }>(api, {
          method: 'POST',
          path: '/v1/keys',
          json: { name: input.name, scopes: input.scopes },
        });
        printCreated(body.key, body);
        return 0;
      }
      return withDatabase(config, async (database) => {
        const { key, record } = await createApiKey(database.db, input, { actor: cliActor(), at: clock.now() });
        printCreated(key, record);
        return 0;
      });
    }
    case 'list': {
      if (!usage(() => parseArgs({ args: rest, strict: true }))) return 2;
      return withDatabase(config, async (database) => {
        const configured = bootstrapKeys(config);
        const stored = await listApiKeys(database.db);
        if (configured.length + stored.length === 0) {
          console.log('# no API keys yet: recoup generates one into DATA_DIR/api-key when it first starts');
          return 0;
        }
        console.log(table(configured, stored));
        if (configured.length > 0) {
          console.log(
            '\n# configured keys are not revoked here: change RECOUP_API_KEYS, or delete DATA_DIR/api-key and restart',
          );
        }
        return 0;
      });
    }
    case 'revoke': {
      const ref = usage(() => {
        const { positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true });
        if (positionals.length !== 1 || !positionals[0]) throw new TypeError('give the id or prefix of one key');
        return positionals[0];
      });
      if (!ref) return 2;
      return withDatabase(config, async (database) => {
        const { record, changed } = await revokeApiKey(database.db, ref, { actor: cliActor(), at: clock.now() });
        const what = `${record.id} (${record.prefix}…, "${record.name}")`;
        console.log(
          changed
            ? `Revoked ${what}. It no longer works, console sessions included.`
            : `${what} was already revoked on ${record.revokedAt?.toISOString() ?? '?'}.`,
        );
        return 0;
      });
    }
    default:
      console.error(`recoup keys: use one of\n${keysUsage}`);
      return 2;
  }
}

/** Runs an argument parser; a usage mistake is one line plus the usage, not a stack trace. */
function usage<T>(parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    console.error(`recoup keys: ${(err as Error).message}\n${keysUsage}`);
    return undefined;
  }
}

async function withDatabase(config: Config, work: (database: Database) => Promise<number>): Promise<number> {
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: 1,
    limits: config.databaseLimits,
  });
  try {
    await database.migrate();
    return await work(database);
  } finally {
    await database.close();
  }
}

/** What `POST /v1/keys` answers about the key it created. */
interface ApiKeyView {
  id: string;
  name: string;
  scopes: string[];
  prefix: string;
}

function printCreated(key: string, record: ApiKeyView): void {
  console.log(
    [
      `Created API key ${record.id} "${record.name}" with scope ${record.scopes.join(', ')}:`,
      '',
      `  ${key}`,
      '',
      'Store it now (e.g. in your password manager): it is shown only this once; recoup keeps',
      `only its hash. Lost it? Revoke it (recoup keys revoke ${record.prefix}) and create another.`,
    ].join('\n'),
  );
}

function cliActor(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/**
 * The bootstrap keys the server uses with this configuration: RECOUP_API_KEYS, or the key it
 * generated into DATA_DIR/api-key (none yet before the first start).
 */
function bootstrapKeys(config: Config): ConfiguredKey[] {
  if (config.apiKeys) return configuredKeys(config.apiKeys.length, 'setting');
  return fs.existsSync(generatedApiKeyFile(config)) ? configuredKeys(1, 'generated') : [];
}

function table(configured: ConfiguredKey[], keys: ApiKeyRecord[]): string {
  const day = (d: Date | null) => (d ? d.toISOString().slice(0, 16).replace('T', ' ') : '-');
  const rows = [
    ['ID', 'PREFIX', 'NAME', 'SCOPES', 'CREATED', 'LAST USED', 'STATUS'],
    ...configured.map((k) => [k.id, '-', k.name, k.scopes.join(','), '-', '-', 'configured']),
    ...keys.map((k) => [
      k.id,
      k.prefix,
      k.name,
      k.scopes.join(','),
      day(k.createdAt),
      day(k.lastUsedAt),
      k.revokedAt ? `revoked ${day(k.revokedAt)}` : 'active',
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
