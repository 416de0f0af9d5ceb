import type { ChildProcess } from 'node:child_process';
import { options, type Counters } from './options.js';
import { PartitionProxy, waitUntil, type Spawned } from './processes.js';

/**
 * The recoup processes of a run: one server and `options.workers` workers, each on a skewed
 * clock. Workers are kept at their number by restarting whatever dies while the run lasts; each
 * reaches Postgres through a proxy of its own, which a fault can partition. The server may be
 * armed to kill itself at the payment webhook's fault point; it is restarted on the same port.
 */

export interface WorkerEntry {
  id: number;
  child: ChildProcess;
  ready: Promise<boolean>;
  isReady: boolean;
  faultSpec: string | undefined;
  expectedExit: boolean;
  /** Stopped with SIGSTOP: alive, holding whatever it had claimed, doing nothing. */
  paused: boolean;
  /** Its Postgres proxy; while partitioned, the worker is alive but cut off from Postgres. */
  proxy: PartitionProxy;
  /** Resolves when no partition is under way (at once when none is). */
  healed: Promise<void>;
}

export interface FleetDeps {
  spawn: (role: 'server' | 'worker', name: string, extra?: Record<string, string>) => Spawned;
  counters: Counters;
  trace: (line: string) => void;
  /** The run's main stream: worker fault points (kept where they always were). */
  random: () => number;
  /** Clock offsets. */
  clockRandom: () => number;
  postgres: { host: string; port: number };
  databaseUrl: string;
  server: { port: number; url: string; cadenceFile: string };
  /** The `after_webhook_claim_nth` of each planned server crash, in order. */
  serverCrashes: number[];
  /** Called when the server died at its armed fault point, before it is restarted. */
  onServerCrash: () => void;
}

export class Fleet {
  readonly workers = new Map<number, WorkerEntry>();
  /**
   * When the number of ready workers changed: a step due while none was up may be late or missed.
   * A worker told to stop, stopped, or cut off from Postgres takes no new jobs, so it does not count.
   */
  readonly readyTimeline: Array<{ at: number; ready: number }> = [];
  /** Faults are still being injected; restarted processes may be armed. */
  chaosOn = true;
  /** The run is over: exits are expected. */
  finishing = false;
  readonly #deps: FleetDeps;
  #serial = 0;
  #serverCrashesLeft: number[];
  #serverArmed = false;
  #server: ChildProcess | undefined;

  constructor(deps: FleetDeps) {
    this.#deps = deps;
    this.#serverCrashesLeft = [...deps.serverCrashes];
  }

  /** Planned server crashes that have not happened. */
  get serverCrashesLeft(): number {
    return this.#serverCrashesLeft.length;
  }

  isUp(w: WorkerEntry): boolean {
    return w.isReady && !w.expectedExit && !w.paused && !w.proxy.partitioned;
  }

  noteReady(): void {
    const ready = [...this.workers.values()].filter((w) => this.isUp(w)).length;
    if (this.readyTimeline.at(-1)?.ready !== ready) this.readyTimeline.push({ at: Date.now(), ready });
  }

  readyCount(): number {
    return [...this.workers.values()].filter((w) => this.isUp(w)).length;
  }

  /** A live worker at random (`readyOnly`: started and taking jobs); preferably one without a crash point armed. */
  pickWorker(readyOnly = false, preferWithoutCrashPoint = false): WorkerEntry | undefined {
    const live = [...this.workers.values()].filter(
      (w) => !w.expectedExit && !w.paused && !w.proxy.partitioned && (w.isReady || !readyOnly),
    );
    const plain = live.filter((w) => !w.faultSpec);
    const from = preferWithoutCrashPoint && plain.length > 0 ? plain : live;
    return from[Math.floor(this.#deps.random() * from.length)];
  }

  #clockOffset(): number {
    return Math.round((this.#deps.clockRandom() * 2 - 1) * options.clockSkewMs);
  }

  async startWorker(): Promise<void> {
    const { counters, trace } = this.#deps;
    this.#serial += 1;
    const id = this.#serial;
    let faultSpec: string | undefined;
    if (this.chaosOn && this.#deps.random() < options.faultPointRate) {
      const point = this.#deps.random() < 0.5 ? 'after_claim' : 'after_provider_answer';
      faultSpec = `${point}_nth=${2 + Math.floor(this.#deps.random() * 15)}`;
    }
    // A drifted host clock: the worker's own Clock only (Postgres and the send lease keep theirs).
    const clockOffsetMs = this.#clockOffset();
    const injection = [faultSpec, clockOffsetMs !== 0 ? `clock_offset_ms=${clockOffsetMs}` : undefined]
      .filter(Boolean)
      .join(',');
    const proxy = await PartitionProxy.start(this.#deps.postgres);
    const viaProxy = new URL(this.#deps.databaseUrl);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const { child, ready } = this.#deps.spawn('worker', `worker-${id}`, {
      DATABASE_URL: viaProxy.toString(),
      ...(injection ? { FAULT_INJECTION: injection } : {}),
    });
    counters.workerStarts += 1;
    counters.clockOffsetMaxMs = Math.max(counters.clockOffsetMaxMs, Math.abs(clockOffsetMs));
    trace(`worker-${id} started${injection ? ` with FAULT_INJECTION=${injection}` : ''}`);
    const entry: WorkerEntry = {
      id,
      child,
      ready,
      isReady: false,
      faultSpec,
      expectedExit: false,
      paused: false,
      proxy,
      healed: Promise.resolve(),
    };
    this.workers.set(id, entry);
    void ready.then((up) => {
      entry.isReady = up && this.workers.has(id);
      if (up) trace(`worker-${id} ready`);
      this.noteReady();
    });
    child.once('exit', (code, signal) => {
      trace(`worker-${id} exited (code ${code}, signal ${signal})`);
      this.workers.delete(id);
      this.noteReady();
      // Postgres does not see a partitioned worker go: its connections end when the partition does.
      void entry.healed.then(() => proxy.close());
      const ownCrash = !entry.expectedExit && signal === 'SIGKILL' && faultSpec !== undefined;
      if (ownCrash) counters.faultPointCrashes += 1;
      if (!entry.expectedExit && !ownCrash && !this.finishing) {
        counters.unexpectedExits += 1;
        console.log(`chaos: worker-${id} exited unexpectedly (code ${code}, signal ${signal}); see its log`);
      }
      if (!this.finishing) setTimeout(() => (this.finishing ? undefined : void this.startWorker()), 300);
    });
  }

  /** Starts the server (armed with the next planned crash while faults run) and waits until it answers. */
  async startServer(): Promise<void> {
    const { counters, trace, server } = this.#deps;
    const nth = this.chaosOn ? this.#serverCrashesLeft[0] : undefined;
    this.#serverArmed = nth !== undefined;
    const clockOffsetMs = this.#clockOffset();
    const injection = [
      nth !== undefined ? `after_webhook_claim_nth=${nth}` : undefined,
      clockOffsetMs !== 0 ? `clock_offset_ms=${clockOffsetMs}` : undefined,
    ]
      .filter(Boolean)
      .join(',');
    counters.serverStarts += 1;
    counters.serverClockOffsetMaxMs = Math.max(counters.serverClockOffsetMaxMs, Math.abs(clockOffsetMs));
    const name = counters.serverStarts === 1 ? 'server' : `server-${counters.serverStarts}`;
    const { child } = this.#deps.spawn('server', name, {
      PORT: String(server.port),
      CADENCES_FILE: server.cadenceFile,
      ...(injection ? { FAULT_INJECTION: injection } : {}),
    });
    this.#server = child;
    trace(`${name} started${injection ? ` with FAULT_INJECTION=${injection}` : ''}`);
    child.once('exit', (code, signal) => {
      if (this.finishing) return;
      trace(`${name} exited (code ${code}, signal ${signal})`);
      if (signal === 'SIGKILL' && this.#serverArmed) {
        counters.serverCrashes += 1;
        this.#serverCrashesLeft.shift();
        this.#deps.onServerCrash();
      } else {
        counters.unexpectedExits += 1;
        console.log(`chaos: the server exited unexpectedly (code ${code}, signal ${signal}); see its log`);
      }
      // Like a supervisor would, on the same port: every sender reaches it at the same URL again.
      void this.startServer().catch((err: unknown) =>
        console.log(`chaos: restarting the server failed: ${String(err)}`),
      );
    });
    await waitUntil(
      async () => (await fetch(`${server.url}/healthz`).catch(() => undefined))?.ok === true,
      60_000,
      'the server',
    );
    trace(`${name} answers`);
  }

  /** SIGKILLs every process (synchronous, for exit paths). */
  killAll(): void {
    this.#server?.kill('SIGKILL');
    for (const w of this.workers.values()) w.child.kill('SIGKILL');
  }
}
