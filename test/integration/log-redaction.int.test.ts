import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/channels/provider-error.js';
import type { SmsSender } from '../../src/channels/sms-sender.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/platform/logger.js';
import { startService, type RunningService } from '../../src/app/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { deletePrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { makeEvent, testApiKey, waitFor } from '../helpers/service.js';

const email = 'li.lei.private@example.com';
const phone = '+8613912345678';

const fastCadence = `
name: default
expire_after: 1h
steps:
  - { after: 1s, channel: sms, template: nudge }
`;

/** Every JSON log line the service writes, as written. */
class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
  records(): Array<Record<string, unknown>> {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

describe('structured logs of real requests', () => {
  const capture = new LogCapture();
  let database: TestDatabase;
  let prefix: string;
  let dir: string;
  let service: RunningService;
  let url: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    prefix = uniquePrefix();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-logs-'));
    fs.writeFileSync(path.join(dir, 'cadences.yaml'), fastCadence);
    const config = loadConfig({
      DATABASE_URL: database.url,
      REDIS_URL: testRedisUrl(),
      QUEUE_PREFIX: prefix,
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: 'https://pay.example-shop.com',
      RECOUP_API_KEYS: testApiKey,
      DATA_DIR: dir,
      CADENCES_FILE: path.join(dir, 'cadences.yaml'),
      RECONCILE_INTERVAL: '200ms',
    });
    // The provider quotes the number back in its error, as Twilio does: the log must not.
    const sms: SmsSender = {
      transport: 'twilio',
      send: async (message) => {
        throw new ProviderError('unknown', 'ETIMEDOUT', `no answer after sending to ${message.to}`);
      },
      close: async () => undefined,
    };
    service = await startService(config, { http: true, worker: true }, createLogger('debug', 'recoup', capture), {
      sms,
    });
    url = service.url ?? '';
  });
  afterAll(async () => {
    await service.close();
    await database.drop();
    await deletePrefix(prefix);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('logs every request with its id and never the email or phone number it carried', async () => {
    const event = makeEvent({}, { customer: { id: `cus_${prefix}`, name: 'Li Lei', email, phone } });
    const accepted = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${testApiKey}` },
      body: JSON.stringify(event),
    });
    expect(accepted.status).toBe(202);

    // An invalid event: the addresses are in the body and in the validation problem.
    const invalid = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${testApiKey}` },
      body: JSON.stringify(
        makeEvent({}, { customer: { id: 'cus_x', email, phone: `${phone} ext 1`, timezone: 'Mars/Base' } }),
      ),
    });
    expect(invalid.status).toBe(400);
    const { request_id: requestId } = (await invalid.json()) as { request_id: string };

    // The worker sends the reminder; the provider's error quotes the number.
    await waitFor(() => capture.records().find((r) => r.msg === 'provider outcome unknown; not re-sending'), {
      what: 'the provider failure to be logged',
    });

    const records = capture.records();
    const requests = records.filter((r) => r.msg === 'incoming request' || r.msg === 'request completed');
    expect(requests.length).toBeGreaterThanOrEqual(4);
    for (const record of requests) expect(record.reqId).toMatch(/^req_[0-9a-f]{12}$/);
    // The id a client is told in a problem response finds its request in the logs.
    expect(records.filter((r) => r.reqId === requestId).map((r) => r.msg)).toEqual([
      'incoming request',
      'request completed',
    ]);

    const everything = capture.lines.join('\n');
    expect(everything).not.toContain(email);
    expect(everything).not.toContain(phone);
    expect(everything).not.toContain(phone.slice(1));
    expect(everything).not.toContain('Bearer');
    expect(everything).not.toContain(testApiKey);
    // The provider's message was logged, with the number masked rather than dropped.
    const failure = records.find((r) => r.msg === 'provider outcome unknown; not re-sending') as {
      err: { message: string };
    };
    expect(failure.err.message).toBe('no answer after sending to +86*******5678');
  });

  it('never logs a retry-link token or a sandbox checkout id, however the path is spelled', async () => {
    const token = randomBytes(16).toString('base64url');
    const checkout = `sbx_${randomBytes(12).toString('hex')}`;
    const paths = [
      `/r/${token}`,
      // The router decodes the path: these reach /r/:token and the sandbox's checkout too.
      `/%72/${token}`,
      `/%72/${token}/status/att_1`,
      `/sandbox/checkout/${checkout}`,
      `/sandbox/%63heckout/${checkout}`,
      `/sandbox/scan/${checkout}?lang=en`,
    ];
    for (const path of paths) {
      const response = await fetch(`${url}${path}`);
      expect(response.status, path).toBeLessThan(500);
      await response.arrayBuffer();
    }
    const logged = await waitFor(
      () => {
        const found = capture
          .records()
          .filter((r) => r.msg === 'incoming request')
          .map((r) => (r.req as { url: string }).url)
          .filter((u) => /^\/(%72|r|sandbox)\//.test(u));
        return found.length >= paths.length ? found : undefined;
      },
      { what: 'the requests to be logged' },
    );
    expect(logged).toEqual(expect.arrayContaining(['/r/***', '/r/***/status/att_1', '/sandbox/checkout/***']));
    const everything = capture.lines.join('\n');
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(checkout);
  });
});
