import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../helpers/service.js';

const hsts = 'max-age=31536000; includeSubDomains';

/** Routes of every kind: API, probe, unknown, customer pages, console login, docs and their assets. */
const paths = [
  '/healthz',
  '/v1/orders/o_1',
  '/nowhere',
  '/r/not-a-token',
  '/u/not-a-token',
  '/console/login',
  '/docs/',
];

/** The headers of a raw request, which fetch could not send (a URL past Node's limit). */
function rawHeaders(base: string, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: hostname, port, path }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers }));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('security headers with an https PUBLIC_URL', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ roles: { http: true, worker: false } });
  });
  afterAll(async () => {
    await svc.close();
  });

  it.each(paths)('sends HSTS on %s', async (path) => {
    const response = await fetch(`${svc.url}${path}`, { redirect: 'manual' });
    await response.arrayBuffer();
    expect(response.headers.get('strict-transport-security')).toBe(hsts);
  });

  it('sends HSTS on a refusal Node answers before routing', async () => {
    const answer = await rawHeaders(svc.url, `/v1/orders/${'x'.repeat(100_000)}`);
    expect(answer.status).toBe(414);
    expect(answer.headers['strict-transport-security']).toBe(hsts);
  });

  it('serves swagger-ui at /docs under a CSP it works with, never framed', async () => {
    const page = await fetch(`${svc.url}/docs/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("object-src 'none'");
    // No inline script: the page's scripts are its own files, which script-src 'self' allows.
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');

    for (const asset of ['swagger-ui-bundle.js', 'swagger-initializer.js', 'swagger-ui.css']) {
      expect(html).toContain(`./static/${asset}`);
      const response = await fetch(`${svc.url}/docs/static/${asset}`);
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      expect(response.headers.get('content-security-policy')).toBe(csp);
      expect(response.headers.get('x-frame-options')).toBe('DENY');
    }
    // The document is fetched from /docs/json, and "Try it out" calls the API at PUBLIC_URL.
    expect(csp).toContain("connect-src 'self' https://pay.example-shop.com");
    const document = await fetch(`${svc.url}/docs/json`);
    expect(document.status).toBe(200);
    await document.arrayBuffer();
  });
});

describe('security headers with an http PUBLIC_URL', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: { PUBLIC_URL: 'http://127.0.0.1:8080' },
    });
  });
  afterAll(async () => {
    await svc.close();
  });

  it.each(paths)('sends no HSTS on %s', async (path) => {
    const response = await fetch(`${svc.url}${path}`, { redirect: 'manual' });
    await response.arrayBuffer();
    expect(response.headers.get('strict-transport-security')).toBeNull();
  });
});
