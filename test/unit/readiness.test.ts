import { describe, expect, it } from 'vitest';
import { checkReadiness, migrationsCheck, redisCheck } from '../../src/ops/readiness.js';
import { producerConnection } from '../../src/queue/queues.js';
import { freePort } from '../helpers/service.js';

const ok = async () => true;

describe('checkReadiness', () => {
  it('is ready when every check answers true', async () => {
    const report = await checkReadiness({ postgres: ok, redis: ok, migrations: ok });
    expect(report).toEqual({
      status: 'ready',
      checks: { postgres: 'ok', redis: 'ok', migrations: 'ok' },
      errors: {},
    });
  });

  it('names the check that threw, keeps its message for the logs, and still runs the others', async () => {
    const report = await checkReadiness({
      postgres: ok,
      redis: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:6390');
      },
      migrations: ok,
    });
    expect(report.status).toBe('not_ready');
    expect(report.checks).toEqual({ postgres: 'ok', redis: 'failed', migrations: 'ok' });
    expect(report.errors).toEqual({ redis: 'connect ECONNREFUSED 127.0.0.1:6390' });
  });

  it('fails a check that answers false (migrations pending)', async () => {
    const report = await checkReadiness({ postgres: ok, redis: ok, migrations: migrationsCheck(async () => false) });
    expect(report.status).toBe('not_ready');
    expect(report.checks.migrations).toBe('failed');
  });

  it('reports a check that never answers as timeout instead of hanging the probe', async () => {
    const report = await checkReadiness({ postgres: () => new Promise<boolean>(() => undefined), redis: ok }, 20);
    expect(report.status).toBe('not_ready');
    expect(report.checks).toEqual({ postgres: 'timeout', redis: 'ok' });
  });
});

describe('redisCheck', () => {
  it('fails at once against a Redis that is not there (the producer has no offline queue)', async () => {
    const redis = producerConnection(`redis://127.0.0.1:${await freePort()}`, () => undefined);
    try {
      const report = await checkReadiness({ redis: redisCheck(redis) });
      expect(report.checks.redis).toBe('failed');
      expect(report.errors.redis).toBeDefined();
    } finally {
      redis.disconnect();
    }
  });

  it('passes when Redis answers PONG, fails on any other answer', async () => {
    expect((await checkReadiness({ redis: redisCheck({ ping: async () => 'PONG' }) })).status).toBe('ready');
    expect((await checkReadiness({ redis: redisCheck({ ping: async () => 'LOADING' }) })).checks.redis).toBe('failed');
  });
});
