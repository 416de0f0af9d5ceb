/**
 * Child process hosting one HTTP server at a time for the intake runs:
 * - `baseline`: a bare Fastify route doing one INSERT per request (pool of 10, as recoup's), or
 * - `service`: recoup's real HTTP role (startService, http only) — POST /v1/events with validation,
 *   idempotency, the order's row lock, the recovery start and its wake-up.
 * Logging is at `warn` in both, so neither pays for a log line per request.
 */
import fs from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/platform/logger.js';
import { startService } from '../src/app/service.js';
import { childArgs, sendToParent, serveParent, type ChildMessage } from './child-process.js';
import { countDriverCalls } from './driver-counters.js';

export interface IntakeHostArgs {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  apiKey: string;
}

export type IntakeMode = 'baseline' | 'service';

const args = childArgs<IntakeHostArgs>();
const calls = countDriverCalls();
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-bench-intake-'));
let closeCurrent: () => Promise<void> = async () => undefined;
let inFlight = 0;

/** Counts requests in progress, so that a server is closed only once the load generator's last ones are done. */
function track(server: Server) {
  server.on('request', (_request, response) => {
    inFlight += 1;
    response.once('close', () => (inFlight -= 1));
  });
}

async function start(mode: IntakeMode): Promise<string> {
  await closeCurrent();
  if (mode === 'baseline') {
    const pool = new pg.Pool({ connectionString: args.databaseUrl, max: 10 });
    pool.on('error', () => undefined);
    const app = Fastify({ logger: false });
    app.post('/v1/events', async (request, reply) => {
      const body = request.body as { id?: unknown } | null;
      if (typeof body?.id !== 'string') return reply.status(400).send({ error: 'id required' });
      await pool.query('insert into bench_intake (id, payload) values ($1, $2)', [body.id, body]);
      return reply.status(202).send({ event_id: body.id, status: 'accepted' });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    track(app.server);
    closeCurrent = async () => {
      await app.close();
      await pool.end();
    };
    const address = app.server.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }
  const config = loadConfig({
    DATABASE_URL: args.databaseUrl,
    REDIS_URL: args.redisUrl,
    QUEUE_PREFIX: args.prefix,
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: 'https://pay.bench.example',
    RECOUP_SECRET: 'bench-secret-0123456789abcdef0123456789',
    RECOUP_API_KEYS: args.apiKey,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
  });
  const service = await startService(
    config,
    { http: true, worker: false },
    createLogger(config.logLevel, 'bench-intake'),
  );
  if (service.app) track(service.app.server);
  closeCurrent = () => service.close();
  return service.url ?? '';
}

async function settle(timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  return inFlight;
}

const cpuMs = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

serveParent(
  async (message: ChildMessage) => {
    switch (message.type) {
      case 'start':
        return { url: await start(message.mode as IntakeMode) };
      case 'settle':
        return { inFlight: await settle(Number(message.timeoutMs ?? 30_000)) };
      case 'snapshot':
        return { pgStatements: calls.pgStatements(), redisCommands: calls.redisCommands(), cpuMs: cpuMs() };
      default:
        throw new Error(`unknown command ${message.type}`);
    }
  },
  async () => {
    await settle(10_000);
    await closeCurrent();
    fs.rmSync(dataDir, { recursive: true, force: true });
  },
);
sendToParent({ type: 'ready', pid: process.pid });
