/**
 * Gathers work items that arrive at the same moment into batches, so that they share their round
 * trips to Postgres or Redis: the step jobs a worker holds (src/recoveries/dispatch-step.ts
 * dispatchSteps), the events a server receives (src/orders/apply-event.ts EventApplier), the
 * wake-ups added to the queue (src/queue/queues.ts StepQueue). Like a group commit: a batch starts
 * as soon as one of `maxRunning` slots is free, with whatever arrived meanwhile (up to `maxBatch`);
 * under light load every batch is a single job and nothing waits.
 */
export class Batcher<In, Out> {
  readonly #run: (items: In[]) => Promise<Out[]>;
  readonly #maxBatch: number;
  readonly #maxRunning: number;
  #pending: Array<{ item: In; resolve: (out: Out) => void; reject: (err: unknown) => void }> = [];
  #running = 0;
  #scheduled = false;

  constructor(run: (items: In[]) => Promise<Out[]>, options: { maxBatch: number; maxRunning: number }) {
    if (options.maxBatch < 1 || options.maxRunning < 1) throw new Error('maxBatch and maxRunning must be at least 1');
    this.#run = run;
    this.#maxBatch = options.maxBatch;
    this.#maxRunning = options.maxRunning;
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
    while (this.#running < this.#maxRunning && this.#pending.length > 0) {
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
          this.#drain();
        });
    }
  }
}
