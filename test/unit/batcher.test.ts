import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/platform/batcher.js';

/** A batcher whose batches finish when the test says so. */
function controlled(options: { maxBatch: number; maxRunning: number; minRunning?: number }) {
  const started: number[][] = [];
  const finishers: Array<() => void> = [];
  const batcher = new Batcher<number, number>(
    (items) =>
      new Promise((resolve) => {
        started.push(items);
        finishers.push(() => resolve(items));
      }),
    options,
  );
  return {
    started,
    submit: (item: number) => void batcher.submit(item),
    /** Ends the oldest running batch. */
    finish: async () => {
      finishers.shift()?.();
      await turn();
    },
  };
}

/** Lets scheduled batches start and finished ones settle. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('Batcher', () => {
  it('starts every item at once while the load is light, up to maxRunning batches', async () => {
    const b = controlled({ maxBatch: 8, maxRunning: 4, minRunning: 1 });
    for (const item of [1, 2, 3]) {
      b.submit(item);
      await turn();
    }
    expect(b.started).toEqual([[1], [2], [3]]);
    await b.finish();
    b.submit(4);
    await turn();
    expect(b.started).toEqual([[1], [2], [3], [4]]);
  });

  it('runs fewer, larger batches while items wait for a slot, and as many again once the queue is empty', async () => {
    const b = controlled({ maxBatch: 8, maxRunning: 4, minRunning: 1 });
    for (const item of [1, 2, 3, 4]) {
      b.submit(item);
      await turn();
    }
    // A deep queue: every slot is busy and items keep arriving.
    for (const item of [5, 6, 7, 8, 9, 10]) b.submit(item);
    await turn();
    expect(b.started).toHaveLength(4);
    // Each batch that ends while items wait gives up its slot: the waiting items gather into one batch.
    await b.finish();
    await b.finish();
    await b.finish();
    expect(b.started).toHaveLength(4);
    await b.finish();
    expect(b.started.at(-1)).toEqual([5, 6, 7, 8, 9, 10]);
    // That batch ends with nothing waiting: the next items start at once again.
    await b.finish();
    b.submit(11);
    await turn();
    b.submit(12);
    await turn();
    expect(b.started.slice(-2)).toEqual([[11], [12]]);
  });

  it('keeps maxRunning batches going under load without minRunning', async () => {
    const b = controlled({ maxBatch: 8, maxRunning: 4 });
    for (const item of [1, 2, 3, 4]) {
      b.submit(item);
      await turn();
    }
    for (const item of [5, 6, 7]) b.submit(item);
    await turn();
    await b.finish();
    expect(b.started.at(-1)).toEqual([5, 6, 7]);
  });

  it('never runs fewer than minRunning batches while items wait', async () => {
    const b = controlled({ maxBatch: 2, maxRunning: 4, minRunning: 2 });
    for (const item of [1, 2, 3, 4, 5, 6, 7, 8]) b.submit(item);
    await turn();
    expect(b.started).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
    ]);
    for (const item of [9, 10, 11, 12, 13, 14]) b.submit(item);
    await b.finish();
    await b.finish();
    expect(b.started).toHaveLength(4);
    await b.finish();
    expect(b.started.at(-1)).toEqual([9, 10]);
    await b.finish();
    expect(b.started.at(-1)).toEqual([11, 12]);
  });

  it('under load starts a batch beside a running one only once it is full', async () => {
    const b = controlled({ maxBatch: 4, maxRunning: 4, minRunning: 2 });
    for (const item of [1, 2, 3, 4]) {
      b.submit(item);
      await turn();
    }
    for (const item of [5, 6, 7]) b.submit(item);
    await b.finish();
    await b.finish();
    await b.finish();
    expect(b.started).toHaveLength(4);
    b.submit(8);
    await turn();
    expect(b.started.at(-1)).toEqual([5, 6, 7, 8]);
  });
});
