import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, testApiKey, type TestService } from '../helpers/service.js';

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * Sends `path` exactly as written: fetch would normalise dot segments and reject some of what a
 * hostile client can put on the wire.
 */
function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: hostname, port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    request.on('error', reject);
    request.end();
  });
}

function expectProblem(answer: RawAnswer, status: number): Record<string, unknown> {
  expect({ status: answer.status, type: answer.headers['content-type'] }).toEqual({
    status,
    type: expect.stringMatching(/^application\/problem\+json/),
  });
  const problem = JSON.parse(answer.body) as Record<string, unknown>;
  expect(problem).toMatchObject({ status, request_id: expect.any(String) });
  return problem;
}

/** A YAML "billion laughs": each level names the one before it nine times. */
function aliasBomb(levels: number): string {
  const lines = ['a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
  for (let level = 1; level <= levels; level++) {
    const previous = `*a${level - 1}`;
    lines.push(`a${level}: &a${level} [${Array.from({ length: 9 }, () => previous).join(', ')}]`);
  }
  return `name: bomb\n${lines.map((line) => `x_${line}`).join('\n')}\n`;
}

describe('requests the routes never see', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ roles: { http: true, worker: false } });
  });
  afterAll(async () => {
    await svc.close();
  });

  it.each([
    '/docs/static/..%2f..%2f..%2fpackage.json',
    '/docs/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd',
    '/docs/static/%2e%2e/%2e%2e/%2e%2e/package.json',
    '/docs/static/..%5c..%5cpackage.json',
    '/docs/static/.%2e/.%2e/.%2e/package.json',
    '/assets/..%2f..%2fpackage.json',
    '/assets/%2e%2e/%2e%2e/package.json',
  ])('refuses the traversal %s as a 4xx problem', async (path) => {
    const answer = await rawRequest(svc.url, 'GET', path);
    expect([403, 404]).toContain(answer.status);
    expectProblem(answer, answer.status);
    expect(answer.body).not.toContain('"dependencies"');
  });

  it.each([
    ['a 100 KB URL', `/v1/orders/${'x'.repeat(100_000)}`],
    ['a path segment past the router limit', `/v1/orders/${'x'.repeat(200)}`],
  ])('answers %s 414, as a problem', async (_what, path) => {
    const answer = await rawRequest(svc.url, 'GET', path);
    const problem = expectProblem(answer, 414);
    expect(problem.title).toBe('URI too long');
    expect(answer.body).not.toContain('xxxxxxxxxx');
  });

  it('answers 100 KB of headers 431, as a problem', async () => {
    const answer = await rawRequest(svc.url, 'GET', '/healthz', { 'x-padding': 'y'.repeat(100_000) });
    expect(expectProblem(answer, 431).title).toBe('Request headers too large');
  });

  it('answers a URL with broken percent-encoding 400, as a problem naming the URL', async () => {
    const answer = await rawRequest(svc.url, 'GET', '/v1/orders/%E0%A4%A');
    const problem = expectProblem(answer, 400);
    expect(problem.errors).toEqual([{ path: '(url)', message: expect.stringContaining('percent-encoding') }]);
  });

  it('refuses a YAML alias bomb with a 400 naming it, and saves nothing', async () => {
    const response = await fetch(`${svc.url}/v1/cadences/bomb`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${testApiKey}`, 'content-type': 'application/yaml' },
      body: aliasBomb(9),
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await response.json()) as { errors: Array<{ path: string; message: string }> };
    expect(problem.errors).toEqual([{ path: '', message: expect.stringMatching(/^YAML error: .*alias/i) }]);
    const saved = await fetch(`${svc.url}/v1/cadences/bomb`, { headers: { authorization: `Bearer ${testApiKey}` } });
    expect(saved.status).toBe(404);
  });
});
