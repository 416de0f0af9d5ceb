import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/platform/logger.js';
import { startMetricsServer, type MetricsServer } from '../../src/ops/metrics-server.js';
import { OpsMetrics } from '../../src/ops/metrics.js';

describe('METRICS_PORT server (recoup worker)', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(token?: string) {
    const metrics = new OpsMetrics();
    metrics.observeDispatch({
      action: 'sent',
      channel: 'sms',
      plannedAt: new Date('2024-05-10T06:00:00Z'),
      sentAt: new Date('2024-05-10T06:00:03Z'),
    });
    server = await startMetricsServer({ metrics, port: 0, host: '127.0.0.1', token, logger: createLogger('silent') });
    return server;
  }

  it("serves the worker's own metrics in Prometheus text format", async () => {
    const { url } = await start();
    const response = await fetch(`${url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toMatch(/^recoup_send_lateness_seconds_count\{channel="sms"\} 1$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it('requires METRICS_TOKEN as a bearer token when one is set', async () => {
    const { url } = await start('scrape-me-0123456789');
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer scrape-me-0123456789' } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('recoup_step_jobs_total{action="sent"} 1');
  });

  it('answers nothing but /metrics', async () => {
    const { url } = await start();
    expect((await fetch(`${url}/`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(404);
  });
});
