import type { FastifyInstance } from 'fastify';

/** A year, subdomains included: browsers that saw recoup over https never try it over http. */
const hsts = 'max-age=31536000; includeSubDomains';

/**
 * Headers every answer carries, whatever the route: HSTS when PUBLIC_URL is https. Over plain
 * http it is never sent (a browser would ignore it there, and it must not pin a staging host
 * that serves no https).
 */
export function transportHeaders(publicUrl: string): Record<string, string> {
  return new URL(publicUrl).protocol === 'https:' ? { 'strict-transport-security': hsts } : {};
}

/**
 * Adds the transport headers to every answer of `app`, errors and 404s included. Pages that
 * register helmet (which sends HSTS by default) lose its HSTS when PUBLIC_URL is http: this hook
 * decides HSTS for the whole service. Register before any route.
 */
export function addTransportHeaders(app: FastifyInstance, publicUrl: string): void {
  const headers = transportHeaders(publicUrl);
  const https = 'strict-transport-security' in headers;
  app.addHook('onSend', async (_request, reply) => {
    if (https) {
      reply.headers(headers);
    } else {
      reply.removeHeader('strict-transport-security');
      reply.raw.removeHeader('strict-transport-security');
    }
  });
}
