import net from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { startTestService, testApiKey, waitFor, type TestService } from '../helpers/service.js';

/**
 * Slow-loris: a client that trickles its body one byte at a time never gets to hold a
 * connection (and a request handler) past REQUEST_TIMEOUT: it is answered 408 and cut off,
 * and nothing of the half-sent event is written.
 */
describe('a body sent too slowly', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ roles: { http: true, worker: false }, env: { REQUEST_TIMEOUT: '1s' } });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('is answered 408 and the connection closed, with nothing written', async () => {
    const { hostname, port } = new URL(svc.url);
    const socket = net.connect(Number(port), hostname);
    let received = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(
      `POST /v1/events HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${testApiKey}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"id":"evt_slow",',
    );
    // One byte every 200 ms, forever: only the server's timeout can end this.
    const drip = setInterval(() => {
      if (!closed) socket.write(' ');
    }, 200);
    try {
      await waitFor(() => (closed ? true : undefined), {
        timeoutMs: 20_000,
        what: 'the server to cut the slow client',
      });
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    const [events] = await rows<{ n: number }>(svc.database.db, sql`select count(*)::int as n from events`);
    expect(events?.n).toBe(0);
  }, 40_000);
});
