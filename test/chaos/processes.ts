import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The processes and sockets the fault harness runs and breaks: recoup roles, redis-server, a partitionable proxy. */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Spawned {
  child: ChildProcess;
  /** Resolves true once the process printed its start banner (its signal handlers are installed), false if it exited first. */
  ready: Promise<boolean>;
}

/**
 * Starts `recoup server|worker` children from the compiled build (`dist/`, which the harness
 * brings up to date before it starts anything: a process started through tsx spends seconds of CPU
 * transpiling, and the harness restarts workers dozens of times) with the harness's environment, each logging to
 * `<logDir>/<name>.log`, and tracks them in `processes` so that nothing outlives the harness.
 */
export function recoupSpawner(logDir: string, baseEnv: Record<string, string>, processes: Set<ChildProcess>) {
  return (role: 'server' | 'worker', name: string, extra: Record<string, string> = {}): Spawned => {
    const log = fs.openSync(path.join(logDir, `${name}.log`), 'a');
    const child = spawn(process.execPath, ['--enable-source-maps', 'dist/cli.js', role], {
      cwd: root,
      // PGAPPNAME names the process's Postgres connections, so the harness can terminate the workers' ones.
      env: { ...baseEnv, PGAPPNAME: `recoup-${name}`, ...extra },
      stdio: ['ignore', 'pipe', log],
    });
    fs.closeSync(log);
    const out = fs.createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
    const ready = new Promise<boolean>((resolve) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        out.write(chunk);
        if (chunk.toString('utf8').includes('is running')) resolve(true);
      });
      child.once('exit', () => resolve(false));
    });
    processes.add(child);
    child.once('exit', () => {
      processes.delete(child);
      out.end();
    });
    return { child, ready };
  };
}

/**
 * A redis-server child persisting to an append-only file (fsync every second) in its own
 * directory, as production Redis is configured. `restart('aof')` is a crash and a restart from
 * that file (at most about a second of writes lost); `restart('empty')` also deletes the file:
 * a full loss of queue state.
 */
export class RedisServer {
  #child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly dir: string,
    readonly logFile: string,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--logfile',
        this.logFile,
      ],
      { stdio: 'ignore' },
    );
    this.#child = child;
    await waitUntil(() => canConnect(this.port), 10_000, 'redis-server');
  }

  /** Synchronous, for process exit. */
  kill(): void {
    this.#child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGKILL, down for `downMs`, then started again: from its append-only file, or with nothing. */
  async restart(downMs: number, from: 'aof' | 'empty'): Promise<void> {
    await this.stop();
    if (from === 'empty') {
      for (const entry of fs.readdirSync(this.dir)) fs.rmSync(path.join(this.dir, entry), { recursive: true });
    }
    await sleep(downMs);
    await this.start();
  }
}

/**
 * A TCP proxy on loopback in front of Postgres for one process. `partition()` cuts it silently,
 * as a network partition does: sockets stay open, nothing is forwarded either way and nothing is
 * closed (no FIN, no RST). `heal('resume')` delivers what was held, in order, as TCP does once a
 * partition ends; `heal('cut')` destroys every connection instead (the partition outlasted TCP's
 * retransmissions). Connections opened during a partition hang the same way.
 */
export class PartitionProxy {
  readonly #server: net.Server;
  readonly #pairs = new Set<Pair>();
  #partitioned = false;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(target: { host: string; port: number }): Promise<PartitionProxy> {
    const server = net.createServer();
    const proxy = new PartitionProxy(server);
    server.on('connection', (client) => proxy.#accept(client, target));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    return typeof address === 'object' && address ? address.port : 0;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  partition(): void {
    this.#partitioned = true;
  }

  heal(how: 'resume' | 'cut'): void {
    this.#partitioned = false;
    for (const pair of [...this.#pairs]) {
      if (how === 'cut') {
        this.#end(pair);
        continue;
      }
      for (const [to, chunk] of pair.held.splice(0)) if (!to.destroyed) to.write(chunk);
      // A side that went away during the partition is seen to have gone only now.
      if (pair.closed) this.#end(pair);
    }
  }

  async close(): Promise<void> {
    for (const pair of [...this.#pairs]) this.#end(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket, target: { host: string; port: number }): void {
    const upstream = net.connect(target.port, target.host);
    const pair: Pair = { client, upstream, held: [], closed: false };
    this.#pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (this.#partitioned) pair.held.push([to, chunk]);
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const gone = () => {
      pair.closed = true;
      if (!this.#partitioned) this.#end(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', gone);
      socket.on('close', gone);
    }
  }

  #end(pair: Pair): void {
    this.#pairs.delete(pair);
    pair.client.destroy();
    pair.upstream.destroy();
  }
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes that arrived during a partition, with the socket they are for. */
  held: Array<[net.Socket, Buffer]>;
  /** One side closed or failed (while partitioned, the other side is not told until the partition heals). */
  closed: boolean;
}

export function canConnect(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function withPath(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

export function semaphore(max: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    active += 1;
    try {
      return await task();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
