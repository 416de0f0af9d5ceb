import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The benchmark's worker and HTTP servers run in child processes, as they would in production:
 * their CPU, RSS and Postgres statements are their own, and the load generator does not share
 * their event loop. Messages both ways are small JSON objects over the IPC channel.
 */
export interface ChildMessage {
  type: string;
  /** Set on replies: the `seq` of the request being answered. */
  seq?: number;
  [key: string]: unknown;
}

const benchDir = path.dirname(fileURLToPath(import.meta.url));
/** The V8 flags docker-compose.yml gives `recoup worker` (NODE_OPTIONS): the hosts run with the same. */
export const workerNodeOptions = ['--max-old-space-size=128'];
const repoDir = path.dirname(benchDir);
/** tsconfig.bench.json's outDir: src/ and bench/ compiled, as `npm run build` compiles src/ for production. */
const buildDir = path.join(benchDir, '.build');

/**
 * Compiles src/ and bench/ to JavaScript (tsc, incremental), so that the worker and the HTTP server
 * run as production runs them (`node dist/cli.js`, see the Dockerfile) and not under the tsx loader,
 * whose compiler and source caches would count in their CPU and RSS. The assets src/ finds next to
 * itself (templates, locales, migrations, bundled cadences) are linked into the build.
 */
export function compileHosts(): void {
  execFileSync(process.execPath, [path.join(repoDir, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.bench.json'], {
    cwd: repoDir,
    stdio: ['ignore', 2, 2],
  });
  for (const asset of ['templates', 'locales', 'migrations', 'cadences']) {
    const link = path.join(buildDir, asset);
    if (!fs.existsSync(link)) fs.symlinkSync(path.join('..', '..', asset), link);
  }
}

export class BenchChild {
  readonly #child: ChildProcess;
  readonly #waiters = new Map<number, { resolve: (m: ChildMessage) => void; reject: (e: Error) => void }>();
  readonly #listeners = new Set<(m: ChildMessage) => void>();
  #seq = 0;
  #exited: Error | undefined;
  readonly exit: Promise<number | null>;

  private constructor(
    child: ChildProcess,
    readonly name: string,
  ) {
    this.#child = child;
    child.on('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.seq !== undefined) {
        const waiter = this.#waiters.get(message.seq);
        this.#waiters.delete(message.seq);
        if (message.type === 'error') waiter?.reject(new Error(`${name}: ${String(message.message)}`));
        else waiter?.resolve(message);
        return;
      }
      for (const listener of this.#listeners) listener(message);
    });
    this.exit = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.#exited = new Error(`${name} exited (code ${String(code)}, signal ${String(signal)})`);
        for (const waiter of this.#waiters.values()) waiter.reject(this.#exited);
        this.#waiters.clear();
        for (const listener of this.#listeners) listener({ type: 'exit', code });
        resolve(code);
      });
    });
  }

  /**
   * Forks `bench/<script>` as compiled by compileHosts (plain `node`, no loader), stdout folded into
   * our stderr so that stdout keeps only the results table. Resolves on the child's `ready`.
   */
  static async start(
    script: string,
    args: Record<string, unknown>,
    options: { name: string; cpuProfileDir?: string | undefined; timeoutMs?: number; nodeOptions?: string[] },
  ): Promise<{ child: BenchChild; ready: ChildMessage }> {
    const execArgv = [...(options.nodeOptions ?? [])];
    if (options.cpuProfileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
    const compiled = path.join(buildDir, 'bench', script.replace(/\.ts$/, '.js'));
    if (!fs.existsSync(compiled)) throw new Error(`${compiled} is missing: call compileHosts() first`);
    const forked = fork(compiled, [JSON.stringify(args)], {
      execArgv,
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    const child = new BenchChild(forked, options.name);
    const ready = await child.next('ready', options.timeoutMs ?? 60_000);
    return { child, ready };
  }

  /** The next unsolicited message of this type. */
  next(type: string, timeoutMs: number): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      if (this.#exited) return reject(this.#exited);
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error(`${this.name}: no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (message: ChildMessage) => {
        if (message.type === 'exit') {
          clearTimeout(timer);
          this.#listeners.delete(listener);
          reject(this.#exited ?? new Error(`${this.name} exited`));
        } else if (message.type === type) {
          clearTimeout(timer);
          this.#listeners.delete(listener);
          resolve(message);
        }
      };
      this.#listeners.add(listener);
    });
  }

  get exited(): boolean {
    return this.#exited !== undefined;
  }

  onMessage(listener: (m: ChildMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sends a command and waits for the reply that carries its sequence number. */
  request(type: string, body: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<ChildMessage> {
    if (this.#exited) return Promise.reject(this.#exited);
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(seq);
        reject(new Error(`${this.name}: no answer to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(seq, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#child.send({ ...body, type, seq });
    });
  }

  /** Asks the child to close cleanly; kills it if it has not exited within the deadline. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.#exited) return;
    this.#child.send({ type: 'stop' });
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
    await this.exit;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.#exited) this.#child.kill('SIGKILL');
  }
}

/** Child side: answers requests through `handle`; `stop` runs `close` then exits. */
export function serveParent(
  handle: (message: ChildMessage) => Promise<Record<string, unknown>>,
  close: () => Promise<void>,
): void {
  const send = (message: ChildMessage) => process.send?.(message);
  let closing: Promise<void> | undefined;
  const shutdown = (code: number) => {
    closing ??= close()
      .catch((err: unknown) => console.error(err))
      .finally(() => process.exit(code));
  };
  process.on('message', (raw) => {
    const message = raw as ChildMessage;
    if (message.type === 'stop') return shutdown(0);
    handle(message).then(
      (reply) => send({ type: 'reply', ...reply, seq: message.seq }),
      (err: unknown) =>
        send({ type: 'error', message: err instanceof Error ? err.message : String(err), seq: message.seq }),
    );
  });
  // The parent died (or was killed): do not linger holding connections.
  process.on('disconnect', () => shutdown(1));
}

/** A child's arguments: one JSON object in argv[2]. */
export function childArgs<T>(): T {
  const raw = process.argv[2];
  if (!raw) throw new Error('missing arguments');
  return JSON.parse(raw) as T;
}

export function sendToParent(message: ChildMessage): void {
  process.send?.(message);
}
