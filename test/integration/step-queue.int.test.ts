import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { producerConnection, StepQueue, stepJobId, type Wakeup } from '../../src/queue/queues.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';

// StepQueue.add gathers the wake-ups its callers add at the same moment into one addBulk: what
// matters to each caller is that its own wake-ups are queued, or that it hears they were not.

const prefix = uniquePrefix('q');
const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
/** Reads what reached Redis. */
const reader = new StepQueue(redis, prefix);
afterAll(async () => {
  await reader.close();
  redis.disconnect();
  await deletePrefix(prefix);
});

const wakeup = (i: number, now: Date, wakeSeq = 1): Wakeup => ({
  recoveryId: `rec_${i}`,
  wakeSeq,
  runAt: new Date(now.getTime() + 60_000 + i * 1_000),
});

describe('StepQueue.add', () => {
  it('queues every wake-up of many callers at once, each with its own id and delay; a repeat adds nothing', async () => {
    const queue = new StepQueue(redis, prefix);
    try {
      const now = new Date();
      await Promise.all(Array.from({ length: 50 }, (_, i) => queue.add([wakeup(i, now)], now)));
      await Promise.all([
        queue.add([wakeup(50, now), wakeup(51, now)], now),
        queue.add([wakeup(7, now)], now),
        queue.add([], now),
      ]);
      expect(await reader.queue.getDelayedCount()).toBe(52);
      for (const i of [0, 7, 49, 51]) {
        const job = await reader.queue.getJob(stepJobId(`rec_${i}`, 1));
        expect(job?.data).toEqual({ recoveryId: `rec_${i}`, wakeSeq: 1 });
        expect(job?.opts.delay).toBe(60_000 + i * 1_000);
      }
    } finally {
      await queue.close();
    }
  });

  it('tells every caller when Redis is unreachable', async () => {
    const producer = producerConnection(testRedisUrl(), () => undefined);
    const queue = new StepQueue(producer, prefix);
    try {
      const now = new Date();
      await queue.add([wakeup(100, now)], now);
      // Connection gone: a producer connection refuses commands at once rather than queueing them.
      producer.disconnect();
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => queue.add([wakeup(i, now, 2)], now)),
      );
      expect(results.map((r) => r.status)).toEqual(Array(5).fill('rejected'));
      expect(await reader.queue.getJob(stepJobId('rec_0', 2))).toBeUndefined();
      expect(await reader.queue.getJob(stepJobId('rec_100', 1))).toBeDefined();
    } finally {
      await queue.close().catch(() => undefined);
    }
  });
});
