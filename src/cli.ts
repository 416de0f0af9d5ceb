#!/usr/bin/env node
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { isMap, parseAllDocuments, stringify } from 'yaml';
import { activeCadences, applyCadences, type AppliedCadence } from './cadences/cadence-store.js';
import type { Cadence } from './cadences/cadence.js';
import { cadenceToDocument, parseCadenceDocument } from './cadences/parse-cadence.js';
import { systemClock } from './platform/clock.js';
import { forgetCustomer } from './compliance/forget-customer.js';
import { loadConfig, type Config } from './config.js';
import { openDatabase } from './db/client.js';
import { runDemo } from './app/demo.js';
import { callApi, embeddedServerApi, type ApiTarget } from './app/api-client.js';
import { keysCommand, keysUsage } from './app/keys-cli.js';
import { isRecoupError, RecoupError } from './platform/errors.js';
import { createLogger } from './platform/logger.js';
import { TemplateRenderer } from './messages/template-renderer.js';
import { reportCommand, reportUsage } from './app/report-cli.js';
import { startService, type ServiceRoles } from './app/service.js';

const usage = `recoup: win back unpaid orders with cadenced SMS and email reminders

Usage: recoup <command>

  start                  HTTP API + workers + reconciler in one process (default for npm start)
  server                 HTTP API only (scale separately from workers)
  worker                 step worker + reconciler only
  migrate                apply database migrations and exit
  cadences apply FILE    validate a YAML cadence file and make each cadence its new active version
  cadences list          print the active cadences as YAML
  customers forget ID    erase a customer's personal data (keeps anonymised payments); idempotent
${keysUsage}
${reportUsage}
  demo [--url URL] [--key KEY]
                         send sample orders to a running recoup (two locales, two currencies);
                         default: the one running on DATA_DIR, else PUBLIC_URL
  help, --help, -h       print this

With the embedded database (no DATABASE_URL) one process has DATA_DIR open: beside a running
recoup, "cadences apply" and "keys create" go through its API, and the other commands refuse.
Configuration comes from the environment; see docs/configuration.md.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // Asking for help anywhere (`recoup start --help`) prints it: it never starts or changes anything.
  const options = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (options.includes('--help') || options.includes('-h')) {
    console.log(usage);
    return 0;
  }
  switch (command) {
    case 'start':
      return serve({ http: true, worker: true });
    case 'server':
      return serve({ http: true, worker: false });
    case 'worker':
      return serve({ http: false, worker: true });
    case 'migrate':
      return migrate();
    case 'cadences':
      return cadences(rest);
    case 'customers':
      return customers(rest);
    case 'keys':
      return keysCommand(rest, loadConfig());
    case 'report':
      return reportCommand(rest, loadConfig(), systemClock.now());
    case 'demo':
      return demo(rest);
    case undefined:
    case 'help':
      console.log(usage);
      return command === undefined ? 1 : 0;
    default:
      console.error(`recoup: unknown command "${command}"\n\n${usage}`);
      return 2;
  }
}

async function serve(roles: ServiceRoles): Promise<number> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const service = await startService(config, roles, logger);
  printBanner(config, roles, service.url, service.apiKeyFile, service.core.database.kind);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        logger.warn('second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: no new work, finishing in-flight jobs');
      service.close().then(resolve, (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  logger.info('stopped');
  return 0;
}

function printBanner(
  config: Config,
  roles: ServiceRoles,
  url: string | undefined,
  apiKeyFile: string | undefined,
  databaseKind: string,
): void {
  const lines = [`recoup ${roles.http && roles.worker ? 'start' : roles.http ? 'server' : 'worker'} is running`];
  if (url) {
    lines.push(
      `  API           ${url}  (health: ${url}/healthz, docs: ${url}/docs)`,
      `  Console       ${url}/console  (sign in with the API key)`,
      `  Public URL    ${config.publicUrl}`,
    );
  }
  lines.push(
    `  Database      ${databaseKind === 'pglite' ? `embedded (PGlite) in ${config.dataDir}/pglite` : 'Postgres'}`,
  );
  if (url) {
    const methods = Object.entries(config.payments.gatewayFor).map(([method, gateway]) => `${method}: ${gateway}`);
    lines.push(`  Payments      ${methods.join(', ')}`);
    if (Object.values(config.payments.gatewayFor).includes('sandbox')) {
      lines.push('                the sandbox takes no money: set PAYMENT_GATEWAY for real payments');
    }
  }
  if (roles.worker) {
    lines.push(`  SMS           ${config.sms.transport}`, `  Email         ${config.email.transport}`);
    if (config.sms.transport === 'outbox' || config.email.transport === 'outbox') {
      lines.push(`  Outbox        ${config.outboxDir}`);
    }
  }
  if (url) {
    lines.push(
      apiKeyFile ? `  API key       in ${apiKeyFile}` : '  API key       from RECOUP_API_KEYS',
      '',
      '  Try it:       npx recoup demo        (or: npm run demo)',
      `                sends sample orders; reminders land in ${config.outboxDir} within a minute`,
    );
  }
  console.log(lines.join('\n'));
}

async function migrate(): Promise<number> {
  const config = loadConfig();
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    limits: config.databaseLimits,
  });
  try {
    await database.migrate();
    console.log('recoup: migrations applied');
    return 0;
  } finally {
    await database.close();
  }
}

async function cadences(args: string[]): Promise<number> {
  const [sub, file] = args;
  const config = loadConfig();
  if (sub === 'apply') {
    if (!file) {
      console.error('recoup cadences apply: give the YAML file to apply');
      return 2;
    }
    const text = readTextFile(file);
    const renderer = TemplateRenderer.load(config.templatesDir);
    const parsed = parseCadenceDocument(text, { templates: renderer, requiredLocales: ['en', 'zh-CN'] });
    const api = embeddedServerApi(config);
    if (api) {
      for (const a of await applyThroughApi(api, parsed, text)) printApplied(a);
      return 0;
    }
    const database = await openDatabase({
      url: config.databaseUrl,
      dataDir: config.dataDir,
      limits: config.databaseLimits,
    });
    try {
      await database.migrate();
      for (const a of await applyCadences(database.db, parsed, text)) printApplied(a);
      return 0;
    } finally {
      await database.close();
    }
  }
  if (sub === 'list') {
    const database = await openDatabase({
      url: config.databaseUrl,
      dataDir: config.dataDir,
      limits: config.databaseLimits,
    });
    try {
      await database.migrate();
      const active = await activeCadences(database.db);
      if (active.length === 0) console.log('# no active cadences');
      for (const c of active) {
        console.log(`# ${c.name} version ${c.version}, created ${c.createdAt.toISOString()}`);
        console.log(`---\n${stringify(cadenceToDocument(c.cadence))}`);
      }
      return 0;
    } finally {
      await database.close();
    }
  }
  console.error('recoup cadences: use "apply FILE" or "list"');
  return 2;
}

function printApplied(a: AppliedCadence): void {
  console.log(`${a.name}: version ${a.version}${a.changed ? ' (now active)' : ' (unchanged)'}`);
}

/**
 * `cadences apply` beside a recoup that has the embedded database open: through its API. Every
 * cadence is saved first and activated only once all were accepted, so a file the server refuses
 * part of activates nothing.
 */
async function applyThroughApi(api: ApiTarget, cadences: Cadence[], text: string): Promise<AppliedCadence[]> {
  // A file of one cadence is stored as written (comments kept), as a local apply stores it.
  const docs = parseAllDocuments(text);
  const filled = (Array.isArray(docs) ? docs : []).filter((d) => d.contents !== null);
  const whole = cadences.length === 1 && filled.length === 1 && isMap(filled[0]?.contents);
  const saved: Array<{ name: string; version: number; created: boolean }> = [];
  for (const cadence of cadences) {
    const { body } = await callApi<{ version: number; created: boolean }>(api, {
      method: 'PUT',
      path: `/v1/cadences/${encodeURIComponent(cadence.name)}?activate=false`,
      yaml: whole ? text : stringify(cadenceToDocument(cadence)),
    });
    saved.push({ name: cadence.name, version: body.version, created: body.created });
  }
  const applied: AppliedCadence[] = [];
  for (const s of saved) {
    const { body } = await callApi<{ changed: boolean }>(api, {
      method: 'POST',
      path: `/v1/cadences/${encodeURIComponent(s.name)}/activate`,
      json: { version: s.version },
    });
    applied.push({ name: s.name, version: s.version, changed: s.created || body.changed });
  }
  return applied;
}

async function customers(args: string[]): Promise<number> {
  const [sub, id, ...extra] = args;
  if (sub !== 'forget' || !id || extra.length > 0) {
    console.error('recoup customers: use "forget ID"');
    return 2;
  }
  const config = loadConfig();
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    limits: config.databaseLimits,
  });
  try {
    await database.migrate();
    const result = await forgetCustomer(
      { db: database.db, clock: systemClock, outboxDir: config.outboxDir },
      id,
      `cli:${osUser()}`,
    );
    if (result.status === 'already_forgotten') {
      console.log(`${id}: already forgotten on ${result.forgottenAt.toISOString()}; nothing left to erase`);
    } else {
      const counts = Object.entries(result.erased)
        .filter(([, n]) => n > 0)
        .map(([table, n]) => `${table} ${n}`)
        .join(', ');
      console.log(`${id}: personal data erased (${counts}); payments and amounts kept`);
    }
    return 0;
  } finally {
    await database.close();
  }
}

/** Who ran the command, for the audit log. */
function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

async function demo(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { url: { type: 'string' }, key: { type: 'string' } },
      allowPositionals: false,
    }));
  } catch (err) {
    throw new RecoupError('validation', `demo: ${(err as Error).message}`);
  }
  const config = loadConfig();
  return runDemo(config, { url: values.url, key: values.key });
}

/** A missing or unreadable file is the user's mistake: one line naming it, not a stack trace. */
function readTextFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new RecoupError('not_found', `cannot read ${file} (${reason})`);
  }
}

/**
 * One line, plus one line per issue of a validation error: "Invalid cadence" alone does not say
 * what to fix. Config errors already list their issues in the message, so they are not repeated.
 */
function formatKnownError(err: RecoupError): string {
  const issues = err.code === 'config' ? [] : err.issues;
  return [`recoup: ${err.message}`, ...issues.map((i) => `  ${i.path || '(document)'}: ${i.message}`)].join('\n');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Known failures get one clear line; anything else is a bug worth a stack trace.
    if (isRecoupError(err)) console.error(formatKnownError(err));
    else console.error(err);
    process.exitCode = 1;
  },
);
