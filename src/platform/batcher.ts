/**
 * Gathers work items that arrive at the same moment into batches, so that they share their round
 * trips to Postgres or Redis: the step jobs a worker holds (src/recoveries/dispatch-step.ts
 * dispatchSteps), the events a server receives (src/orders/apply-event.ts EventApplier), the
 * wake-ups added to the queue (src/queue/queues.ts StepQueue). Like a group commit: a batch starts
 * as soon as one of `maxRunning` slots is free, with whatever arrived meanwhile (up to `maxBatch`);
 * under light load every batch is a single job and nothing waits.
 *
 * With `minRunning`, batches grow under load only: a batch that ends while items wait for a slot
 * gives its slot up (down to `minRunning`), and while under load a batch starts beside a running one
 * only when it is full, so that the waiting items gather into fewer, larger batches — fewer round
 * trips per item when there is a queue. A batch that ends with nothing waiting ends the load: every
 * slot is back, and items start at once again.
 */
export class Batcher<In, Out> {
  readonly #run: (items: In[]) => Promise<Out[]>;
  readonly #maxBatch: number;
  readonly #maxRunning: number;
  readonly #minRunning: number;
  /** The batches that may run at once now: between minRunning and maxRunning. */
  #slots: number;
  #pending: Array<{ item: In; resolve: (out: Out) => void; reject: (err: unknown) => void }> = [];
  #running = 0;
  #scheduled = false;

  constructor(
    run: (items: In[]) => Promise<Out[]>,
    options: {
      maxBatch: number;
      maxRunning: number;
      /** Under load, as few as this many batches run at once (larger ones). Default maxRunning: no change. */
      minRunning?: number;
    },
  ) {
    if (options.maxBatch < 1 || options.maxRunning < 1) throw new Error('maxBatch and maxRunning must be at least 1');
    const minRunning = options.minRunning ?? options.maxRunning;
    if (minRunning < 1 || minRunning > options.maxRunning) throw new Error('minRunning must be 1 to maxRunning');
    this.#run = run;
    this.#maxBatch = options.maxBatch;
    this.#maxRunning = options.maxRunning;
    this.#minRunning = minRunning;
    this.#slots = options.maxRunning;
  }

  submit(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  // One turn of the event loop lets the jobs handed over together join the same batch.
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#running < this.#slots && this.#pending.length > 0) {
      // Under load a batch that would not be full waits for a running one to end, filling meanwhile.
      if (this.#slots < this.#maxRunning && this.#running > 0 && this.#pending.length < this.#maxBatch) return;
      const batch = this.#pending.splice(0, this.#maxBatch);
      this.#running += 1;
      this.#run(batch.map((entry) => entry.item))
        .then(
          (outs) => {
            batch.forEach((entry, k) => {
              if (k < outs.length) entry.resolve(outs[k] as Out);
              else entry.reject(new Error('batch returned fewer results than items'));
            });
          },
          (err: unknown) => batch.forEach((entry) => entry.reject(err)),
        )
        .finally(() => {
          this.#running -= 1;
          this.#slots = this.#pending.length > 0 ? Math.max(this.#minRunning, this.#slots - 1) : this.#maxRunning;
          this.#drain();
        });
    }
  }
}
