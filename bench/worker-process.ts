import { BenchChild, workerNodeOptions } from './child-process.js';
import type { WorkerCounters, WorkerHostArgs, WorkerMode } from './worker-host.js';

/** The parent's handle on the worker-host.ts child. */
export class WorkerProcess {
  #completed = 0;
  #failed = 0;
  #mode: WorkerMode | undefined;
  /** Highest RSS seen while a dispatch worker ran. */
  dispatchPeakRssMb = 0;

  private constructor(readonly child: BenchChild) {
    child.onMessage((message) => {
      if (message.type === 'progress') {
        this.#completed = Number(message.completed);
        this.#failed = Number(message.failed);
      }
    });
  }

  static async start(args: WorkerHostArgs, cpuProfileDir?: string): Promise<WorkerProcess> {
    const { child } = await BenchChild.start(
      'worker-host.ts',
      { ...args },
      { name: 'worker process', cpuProfileDir, nodeOptions: workerNodeOptions },
    );
    return new WorkerProcess(child);
  }

  /** Replaces the running worker with a fresh one of `mode` on `prefix`; counters start at zero. */
  async run(mode: WorkerMode, prefix: string): Promise<WorkerCounters> {
    await this.#notePeak();
    const reply = await this.child.request('start', { mode, prefix }, 60_000);
    this.#mode = mode;
    this.#completed = 0;
    this.#failed = 0;
    return reply.counters as WorkerCounters;
  }

  /**
   * Resolves once `target` jobs completed since the last reset; `onTick` sees progress about once a
   * second. Fails after `timeoutMs`, or early if the worker makes no progress for `stallMs`.
   */
  async waitForCompleted(
    target: number,
    { timeoutMs, stallMs = 120_000, onTick }: { timeoutMs: number; stallMs?: number; onTick?: (done: number) => void },
  ): Promise<WorkerCounters> {
    const started = Date.now();
    let last = -1;
    let lastChange = Date.now();
    let lastTick = Date.now();
    for (;;) {
      if (this.#completed >= target) return this.snapshot();
      const now = Date.now();
      if (this.#completed !== last) {
        last = this.#completed;
        lastChange = now;
      }
      if (onTick && now - lastTick >= 2_000) {
        lastTick = now;
        onTick(this.#completed);
      }
      if (now - started > timeoutMs || now - lastChange > stallMs) {
        throw new Error(
          `${this.child.name}: ${this.#completed}/${target} jobs completed (${this.#failed} failed attempts) ` +
            `after ${Math.round((now - started) / 1000)} s`,
        );
      }
      if (this.child.exited) throw new Error(`${this.child.name} exited`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async snapshot(): Promise<WorkerCounters> {
    const counters = (await this.child.request('snapshot')).counters as WorkerCounters;
    if (this.#mode === 'dispatch') this.dispatchPeakRssMb = Math.max(this.dispatchPeakRssMb, counters.peakRssMb);
    return counters;
  }

  /** Zeroes the counters; returns what they were. */
  async reset(): Promise<WorkerCounters> {
    const before = (await this.child.request('reset')).counters as WorkerCounters;
    this.#completed = 0;
    this.#failed = 0;
    return before;
  }

  async #notePeak(): Promise<void> {
    if (this.#mode === 'dispatch') await this.snapshot();
  }

  async stop(): Promise<void> {
    await this.#notePeak().catch(() => undefined);
    await this.child.stop();
  }
}

/** Jobs per second between the first and the last completion. */
export function completionRate(s: Pick<WorkerCounters, 'completed' | 'firstAt' | 'lastAt'>): number {
  if (s.completed < 2 || s.lastAt <= s.firstAt) return NaN;
  return ((s.completed - 1) * 1000) / (s.lastAt - s.firstAt);
}
