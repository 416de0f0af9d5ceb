import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../platform/logger.js';
import type { OpsMetrics } from './metrics.js';

export interface MetricsServerOptions {
  metrics: OpsMetrics;
  port: number;
  host: string;
  /** When set, scrapes must send `Authorization: Bearer <token>`. */
  token?: string | undefined;
  logger: Logger;
}

export interface MetricsServer {
  /** `http://host:port`. */
  url: string;
  close(): Promise<void>;
}

/**
 * A bare `GET /metrics` server (METRICS_PORT), for `recoup worker`: the worker has no HTTP API,
 * yet send lateness and provider latency are only observable inside it. No framework, no other
 * routes; keep the port private to the network Prometheus scrapes from.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server = http.createServer((request, response) => {
    void answer(options, request, response);
  });
  // A scraper never needs a slow connection held open.
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}

async function answer(
  options: MetricsServerOptions,
  request: http.IncomingMessage,
  response: http.ServerResponse,
): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
    response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    return;
  }
  if (options.token !== undefined && !bearerMatches(request.headers.authorization, options.token)) {
    response
      .writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer' })
      .end('unauthorized\n');
    return;
  }
  try {
    const text = await options.metrics.text();
    response.writeHead(200, { 'content-type': options.metrics.contentType });
    response.end(request.method === 'HEAD' ? undefined : text);
  } catch (err) {
    options.logger.error({ err }, 'metrics: collecting failed');
    response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('collecting metrics failed\n');
  }
}

/** `Authorization: Bearer <token>` with exactly this token, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  if (!presented) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(presented), digest(token));
}
