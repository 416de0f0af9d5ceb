import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allOutboundEventTypes } from '../../src/outbound/event-types.js';
import { makeEvent, startTestService, testApiKey, type TestService } from '../helpers/service.js';

interface Operation {
  summary?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: Array<{ name: string; in: string; required?: boolean }>;
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
}

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  webhooks?: Record<string, { post?: Operation }>;
  components: { schemas?: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}

const httpMethods = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']);

describe('OpenAPI document', () => {
  let svc: TestService;
  let doc: OpenApiDocument;
  beforeAll(async () => {
    // Twilio as the SMS transport, so its webhooks are mounted and documented (nothing is sent).
    svc = await startTestService({
      roles: { http: true, worker: false },
      env: {
        SMS_TRANSPORT: 'twilio',
        TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
        TWILIO_AUTH_TOKEN: 'test-auth-token',
        TWILIO_FROM: '+15550100000',
        TWILIO_API_URL: 'http://127.0.0.1:9',
      },
    });
    const response = await fetch(`${svc.url}/docs/json`);
    expect(response.status).toBe(200);
    doc = (await response.json()) as OpenApiDocument;
  });
  afterAll(async () => {
    await svc.close();
  });

  it('is an OpenAPI 3 document whose operations all have responses and whose $refs all resolve', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: 'recoup', version: expect.any(String) });
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path.startsWith('/')).toBe(true);
      for (const [method, operation] of Object.entries(item)) {
        expect(httpMethods.has(method)).toBe(true);
        expect(Object.keys(operation.responses).length).toBeGreaterThan(0);
        for (const [status, response] of Object.entries(operation.responses)) {
          expect(status).toMatch(/^([1-5]\d\d|default)$/);
          expect(typeof response.description).toBe('string');
        }
        // Every {param} in the path is declared as a path parameter.
        for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
          expect(operation.parameters?.some((p) => p.in === 'path' && p.name === name)).toBe(true);
        }
      }
    }
    for (const ref of collectRefs(doc)) {
      expect(ref.startsWith('#/')).toBe(true);
      expect(resolvePointer(doc, ref)).toBeDefined();
    }
    expect(doc.components.securitySchemes).toHaveProperty('bearerAuth');
  });

  it('documents the public routes', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(operations).toEqual(
      expect.arrayContaining([
        'POST /v1/events',
        'GET /v1/orders/{id}',
        'POST /v1/orders/{id}/refunds',
        'POST /v1/orders/{id}/retry-link',
        'GET /healthz',
        'GET /readyz',
        'GET /metrics',
        'POST /webhooks/twilio/status',
        'POST /webhooks/twilio/inbound',
        'POST /webhooks/payments/{gateway}',
      ]),
    );
    // Browser pages and consoles are not API.
    expect(operations.filter((op) => /\/(admin\/queues|docs|r|console|sandbox)(\/|$)/.test(op))).toEqual([]);
  });

  it('carries the full event body schema, summaries, tags and problem responses', () => {
    const events = doc.paths['/v1/events']?.post;
    expect(events).toMatchObject({ summary: expect.any(String), tags: ['events'] });
    const body = events?.requestBody?.content['application/json']?.schema as {
      required: string[];
      properties: Record<string, { properties?: Record<string, unknown> }>;
    };
    expect(body.required).toEqual(expect.arrayContaining(['id', 'type', 'occurred_at']));
    expect(Object.keys(body.properties)).toEqual(
      expect.arrayContaining(['id', 'type', 'occurred_at', 'order', 'customer', 'payment']),
    );
    expect(JSON.stringify(body.properties.type)).toContain('payment.failed');
    expect(JSON.stringify(body.properties.order)).toContain('customer');
    expect(Object.keys(events?.responses ?? {})).toEqual(expect.arrayContaining(['200', '202', '400', '401', '403']));
    expect(events?.responses['400']?.content).toHaveProperty('application/problem+json');

    const order = doc.paths['/v1/orders/{id}']?.get;
    const orderBody = order?.responses['200']?.content?.['application/json']?.schema as { properties: object };
    expect(Object.keys(orderBody.properties)).toEqual(
      expect.arrayContaining(['order', 'recovery', 'messages', 'payments', 'refunds']),
    );
    expect(doc.paths['/webhooks/twilio/status']?.post?.requestBody?.content).toHaveProperty(
      'application/x-www-form-urlencoded',
    );
  });

  it('is OpenAPI 3.1 with a webhook for every event type recoup sends, and documents the endpoints and the feed', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(Object.keys(doc.webhooks ?? {}).sort()).toEqual([...allOutboundEventTypes].sort());
    for (const type of allOutboundEventTypes) {
      const post = doc.webhooks?.[type]?.post;
      expect(post, type).toMatchObject({ summary: type, description: expect.any(String) as unknown });
      expect(post?.parameters?.filter((p) => p.in === 'header' && p.required).map((p) => p.name)).toEqual([
        'webhook-id',
        'webhook-timestamp',
        'webhook-signature',
      ]);
      const body = post?.requestBody?.content['application/json']?.schema as {
        required: string[];
        properties: { type: { const: string }; data: { properties: Record<string, unknown> } };
      };
      expect(body.required).toEqual(['type', 'timestamp', 'data']);
      expect(body.properties.type.const).toBe(type);
      const fields = Object.keys(body.properties.data.properties);
      expect(fields, type).toEqual(
        expect.arrayContaining(
          type.startsWith('customer.')
            ? ['customer_id', 'channel', 'address', 'how', 'at']
            : ['order_id', 'customer_id', 'amount', 'currency', 'sequence'],
        ),
      );
      expect(Object.keys(post?.responses ?? {})).toEqual(['2XX']);
    }

    const documented = new Map<string, Operation>(
      Object.entries(doc.paths).flatMap(([path, item]) =>
        Object.entries(item).map(([method, operation]) => [`${method.toUpperCase()} ${path}`, operation] as const),
      ),
    );
    for (const name of [
      'POST /v1/webhook-endpoints',
      'GET /v1/webhook-endpoints',
      'GET /v1/webhook-endpoints/{id}',
      'PATCH /v1/webhook-endpoints/{id}',
      'DELETE /v1/webhook-endpoints/{id}',
      'POST /v1/webhook-endpoints/{id}/rotate-secret',
      'GET /v1/webhook-endpoints/{id}/deliveries',
      'POST /v1/webhook-endpoints/{id}/deliveries/{deliveryId}/resend',
      'GET /v1/outbound-events',
    ]) {
      expect(documented.get(name), name).toMatchObject({
        summary: expect.any(String) as unknown,
        tags: ['shop webhooks'],
      });
    }
    const created = documented.get('POST /v1/webhook-endpoints')?.responses['201']?.content?.['application/json'];
    expect(JSON.stringify(created?.schema)).toContain('secret');
    const feed = documented.get('GET /v1/outbound-events');
    expect(feed?.parameters?.filter((p) => p.in === 'query').map((p) => p.name)).toEqual(['after', 'limit']);
  });

  it('schemas document only: validation errors and responses are exactly what the handlers produce', async () => {
    const invalid = await svc.post({ type: 'payment.failed' });
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get('content-type')).toMatch(/application\/problem\+json/);
    const problem = (await invalid.json()) as { errors: Array<{ path: string }>; request_id: string };
    // zod's issues (every bad field, recoup's path notation), not Fastify's ajv message.
    expect(problem.errors.map((e) => e.path)).toEqual(expect.arrayContaining(['id', 'occurred_at']));
    expect(problem.request_id).toMatch(/^req_/);

    const event = makeEvent();
    const accepted = await svc.post(event);
    expect(accepted.status).toBe(202);
    expect(await accepted.json()).toEqual({ event_id: event.id, status: 'accepted', outcome: 'recovery_started' });

    const view = await fetch(`${svc.url}/v1/orders/${event.order.id}`, {
      headers: { authorization: `Bearer ${testApiKey}` },
    });
    expect(view.status).toBe(200);
    const body = (await view.json()) as { order: Record<string, unknown> };
    expect(body.order).toMatchObject({ id: event.order.id, amount: 12900, status: 'pending' });
  });

  it('serves swagger-ui at /docs from its own assets, no CDN', async () => {
    const page = await fetch(`${svc.url}/docs`, { redirect: 'follow' });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/swagger/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const script = html.match(/src="([^"]+\.js)"/)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(new URL(script ?? '', page.url));
    expect(asset.status).toBe(200);
    // Read it all: a half-read response keeps its connection busy, and closing the server waits for it.
    expect((await asset.text()).length).toBeGreaterThan(0);
  });
});

function collectRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) collectRefs(item, out);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') out.push(value);
      else collectRefs(value, out);
    }
  }
  return out;
}

function resolvePointer(doc: unknown, ref: string): unknown {
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return node;
}
