import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postJson, urlProblem, type PostOptions } from '../../src/webhooks/safe-http.js';

interface Received {
  method: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A receiver on 127.0.0.1 that records each request and answers with `answer` (or never, when it is absent). */
async function receiver(answer?: (response: http.ServerResponse) => void) {
  const received: Received[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ method: request.method, headers: request.headers, body: Buffer.concat(chunks).toString() });
      answer?.(response);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { port, url: `http://127.0.0.1:${port}/hooks/recoup?token=q-secret`, received };
}

function options(overrides: Partial<PostOptions>): PostOptions {
  return {
    url: 'http://127.0.0.1:9/',
    headers: { 'x-recoup-signature': 'v1,sig-secret' },
    body: JSON.stringify({ type: 'order.paid', order: 'o_1' }),
    timeoutMs: 2_000,
    allowPrivateNetworks: true,
    ...overrides,
  };
}

describe('postJson to a local receiver', () => {
  it('answers a 2xx with an excerpt, having sent the JSON, its length and the caller headers', async () => {
    const { url, received } = await receiver((response) => response.writeHead(200).end('{"ok":true}\n\tthanks'));
    const result = await postJson(options({ url }));
    expect(result).toMatchObject({ kind: 'answered', status: 200, excerpt: '{"ok":true}  thanks' });
    expect(result.latencyMs).toBeGreaterThan(0);
    const [request] = received;
    expect(request?.method).toBe('POST');
    expect(request?.body).toBe('{"type":"order.paid","order":"o_1"}');
    expect(request?.headers).toMatchObject({
      'content-type': 'application/json',
      'content-length': '35',
      'user-agent': 'recoup-webhooks/1',
      'x-recoup-signature': 'v1,sig-secret',
    });
  });

  it('answers a 503 like any other status', async () => {
    const { url } = await receiver((response) => response.writeHead(503).end('busy'));
    expect(await postJson(options({ url }))).toMatchObject({ kind: 'answered', status: 503, excerpt: 'busy' });
  });

  it('does not follow a redirect', async () => {
    const target = await receiver((response) => response.writeHead(200).end());
    const { url } = await receiver((response) => response.writeHead(302, { location: target.url }).end());
    expect(await postJson(options({ url }))).toMatchObject({ kind: 'answered', status: 302 });
    expect(target.received).toHaveLength(0);
  });

  it('gives up at the deadline when the receiver never answers', async () => {
    const { url } = await receiver();
    const result = await postJson(options({ url, timeoutMs: 150 }));
    expect(result).toMatchObject({ kind: 'failed', reason: 'timeout' });
    expect(result.latencyMs).toBeLessThan(1_000);
  });

  it('counts the body read against the same deadline', async () => {
    const { url } = await receiver((response) => response.writeHead(200).write('partial'));
    expect(await postJson(options({ url, timeoutMs: 150 }))).toMatchObject({ kind: 'failed', reason: 'timeout' });
  });

  it('reads a large or endless body only up to its cap', async () => {
    const { url } = await receiver((response) => {
      response.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 'x');
      const pump = () => {
        while (!response.destroyed && response.write(chunk));
        if (!response.destroyed) response.once('drain', pump);
      };
      pump();
    });
    const result = await postJson(options({ url, timeoutMs: 2_000 }));
    expect(result).toMatchObject({ kind: 'answered', status: 200, excerpt: 'x'.repeat(200) });
  });

  it('makes a binary body into text without throwing', async () => {
    const { url } = await receiver((response) => response.writeHead(200).end(Buffer.from([0xff, 0x00, 0xc3, 0x41])));
    expect(await postJson(options({ url }))).toMatchObject({ kind: 'answered', excerpt: '\ufffd \ufffdA' });
  });

  it('reports a closed port as a connection failure with its code', async () => {
    const { port } = await receiver();
    const server = servers.pop();
    await new Promise((resolve) => server?.close(resolve));
    const result = await postJson(options({ url: `http://127.0.0.1:${port}/` }));
    expect(result).toMatchObject({ kind: 'failed', reason: 'connection' });
    expect(result.kind === 'failed' && result.detail).toMatch(/^ECONNREFUSED/);
  });

  it('reports a failed TLS handshake as a connection failure', async () => {
    const { port } = await receiver((response) => response.end());
    const result = await postJson(options({ url: `https://127.0.0.1:${port}/` }));
    expect(result).toMatchObject({ kind: 'failed', reason: 'connection' });
  });

  it('keeps secrets and the body out of the detail', async () => {
    const { port } = await receiver();
    const server = servers.pop();
    await new Promise((resolve) => server?.close(resolve));
    const result = await postJson(options({ url: `http://127.0.0.1:${port}/x?token=q-secret` }));
    expect(JSON.stringify(result)).not.toMatch(/secret|order\.paid/);
  });
});

describe('postJson refusing non-public addresses', () => {
  it('refuses 127.0.0.1 by default and delivers to it with allowPrivateNetworks', async () => {
    const { url, received } = await receiver((response) => response.writeHead(204).end());
    const refused = await postJson(options({ url, allowPrivateNetworks: false }));
    expect(refused).toMatchObject({
      kind: 'failed',
      reason: 'refused_address',
      detail: expect.stringContaining('127.0.0.1'),
    });
    expect(received).toHaveLength(0);
    expect(await postJson(options({ url, allowPrivateNetworks: true }))).toMatchObject({
      kind: 'answered',
      status: 204,
    });
  });

  it.each([
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://localhost/',
    'http://api.LOCALHOST./',
    'http://2130706433/',
  ])('refuses %s', async (url) => {
    expect(await postJson(options({ url, allowPrivateNetworks: false }))).toMatchObject({
      kind: 'failed',
      reason: 'refused_address',
    });
  });

  it('refuses a name resolving to a private address, resolving it only once', async () => {
    const asked: string[] = [];
    const result = await postJson(
      options({
        url: 'https://hooks.shop.example/recoup',
        allowPrivateNetworks: false,
        lookup: async (hostname) => {
          asked.push(hostname);
          return [{ address: '10.0.0.5', family: 4 }];
        },
      }),
    );
    expect(result).toMatchObject({ kind: 'failed', reason: 'refused_address' });
    expect(result.kind === 'failed' && result.detail).toBe(
      'hooks.shop.example resolves to 10.0.0.5, a non-public address',
    );
    expect(asked).toEqual(['hooks.shop.example']);
  });

  it('refuses a name when any one of its addresses is private', async () => {
    const result = await postJson(
      options({
        url: 'http://hooks.shop.example/',
        allowPrivateNetworks: false,
        lookup: async () => [
          { address: '8.8.8.8', family: 4 },
          { address: 'fd00::5', family: 6 },
        ],
      }),
    );
    expect(result).toMatchObject({
      kind: 'failed',
      reason: 'refused_address',
      detail: expect.stringContaining('fd00::5'),
    });
  });

  it('connects to the address the lookup gave', async () => {
    const { port } = await receiver((response) => response.writeHead(202).end());
    const result = await postJson(
      options({
        url: `http://hooks.shop.example:${port}/`,
        allowPrivateNetworks: true,
        lookup: async () => [{ address: '127.0.0.1', family: 4 }],
      }),
    );
    expect(result).toMatchObject({ kind: 'answered', status: 202 });
  });

  it('resolves through the system resolver when no lookup is given', async () => {
    const { port } = await receiver((response) => response.writeHead(200).end());
    const result = await postJson(options({ url: `http://localhost:${port}/`, allowPrivateNetworks: true }));
    expect(result).toMatchObject({ kind: 'answered', status: 200 });
  });

  // Whether a public address can be reached from the tests depends on the machine (it may time out,
  // fail to connect, or meet a proxy that answers), so this only shows that the refusal does not happen.
  it('lets a name resolving to a public address through to the connect stage', async () => {
    const result = await postJson(
      options({
        url: 'http://hooks.shop.example:9/',
        allowPrivateNetworks: false,
        timeoutMs: 300,
        lookup: async () => [{ address: '8.8.8.8', family: 4 }],
      }),
    );
    expect(result.kind === 'answered' || result.reason !== 'refused_address').toBe(true);
  });

  it('reports a name that does not resolve as a connection failure', async () => {
    const result = await postJson(options({ url: 'http://nowhere.shop.example/', lookup: async () => [] }));
    expect(result).toMatchObject({ kind: 'failed', reason: 'connection', detail: 'ENOTFOUND' });
  });
});

describe('urlProblem', () => {
  it.each([
    ['ftp://hooks.shop.example/', true],
    ['/hooks/recoup', true],
    ['hooks.shop.example/recoup', true],
    ['http://', true],
    ['https://', true],
    ['https://user:pass@hooks.shop.example/', true],
    ['https://user@hooks.shop.example/', true],
    ['javascript:alert(1)', true],
    ['http://hooks.shop.example/recoup', false],
    ['https://hooks.shop.example:8443/recoup?shop=1', false],
  ])('%s → problem: %s', (url, hasProblem) => {
    expect(urlProblem(url) !== undefined).toBe(hasProblem);
  });

  it('makes postJson fail with bad_url without echoing the URL', async () => {
    const result = await postJson(options({ url: 'ftp://user:secret@hooks.shop.example/' }));
    expect(result).toMatchObject({ kind: 'failed', reason: 'bad_url' });
    expect(JSON.stringify(result)).not.toContain('secret');
  });
});
