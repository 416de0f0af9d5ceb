import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/platform/logger.js';
import { startService, type RunningService } from '../../src/app/service.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { makeEvent, waitFor } from '../helpers/service.js';

// `npm start` with no DATABASE_URL runs on embedded PGlite: the same migrations, the same code.
describe('embedded database (PGlite)', () => {
  let service: RunningService;
  let dir: string;
  const prefix = uniquePrefix('pgl');

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-pglite-'));
    fs.writeFileSync(
      path.join(dir, 'cadences.yaml'),
      'name: default\nexpire_after: 1h\nsteps:\n  - { after: 1s, channel: sms, template: nudge }\n',
    );
    const config = loadConfig({
      DATA_DIR: dir,
      REDIS_URL: testRedisUrl(),
      QUEUE_PREFIX: prefix,
      PORT: '0',
      LOG_LEVEL: 'silent',
      CADENCES_FILE: path.join(dir, 'cadences.yaml'),
      RECONCILE_INTERVAL: '200ms',
    });
    service = await startService(config, { http: true, worker: true }, createLogger('silent'));
  }, 60_000);
  afterAll(async () => {
    await service.close();
    await deletePrefix(prefix);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('generates an API key, takes events and sends reminders to the outbox', async () => {
    expect(service.core.database.kind).toBe('pglite');
    const key = fs.readFileSync(path.join(dir, 'api-key'), 'utf8').trim();
    expect(key.length).toBeGreaterThanOrEqual(32);
    const event = makeEvent();
    const response = await fetch(`${service.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(event),
    });
    expect(response.status).toBe(202);
    const file = await waitFor(
      () => fs.readdirSync(path.join(dir, 'outbox'), { withFileTypes: true }).find((f) => f.name.endsWith('.sms.json')),
      { what: 'the SMS in the outbox' },
    );
    expect(fs.readFileSync(path.join(dir, 'outbox', file.name), 'utf8')).toContain('+8613800138000');
  });
});
