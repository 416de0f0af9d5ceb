import type { FastifyInstance } from 'fastify';

export interface RouteEntry {
  method: string;
  url: string;
}

/**
 * Every route the app serves, read from Fastify's route tree (`printRoutes`): each line is one
 * path segment under its parent, `├── /v1/cadences (GET, HEAD, POST)`, indented four columns a level.
 */
export function listRoutes(app: FastifyInstance): RouteEntry[] {
  const routes: RouteEntry[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = (match[1] ?? '').length / 4;
    const segment = match[2] ?? '';
    stack.length = depth;
    stack.push(segment);
    for (const method of (match[3] ?? '').split(', ').filter(Boolean)) routes.push({ method, url: stack.join('') });
  }
  return routes;
}
