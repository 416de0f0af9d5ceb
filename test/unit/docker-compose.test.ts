import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  image?: string;
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
}

const compose = parse(fs.readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), {
  merge: true,
}) as { services: Record<string, Service> };

// Nothing here runs docker: these read the file users start the local stack with.
describe('docker-compose.yml', () => {
  it('pins every image to a version', () => {
    const images = Object.values(compose.services).flatMap((s) => (s.image ? [s.image] : []));
    expect(images.length).toBeGreaterThan(0);
    for (const image of images) expect(image, image).toMatch(/:(?!latest$)[\w.-]+$/);
  });

  it("checks Postgres's health as the user and database recoup connects with", () => {
    const postgres = compose.services.postgres!;
    const url = new URL(compose.services.server!.environment!.DATABASE_URL!);
    expect(postgres.environment!.POSTGRES_USER).toBe(url.username);
    expect(postgres.environment!.POSTGRES_DB).toBe(url.pathname.slice(1));
    const check = postgres.healthcheck!.test.join(' ');
    expect(check).toContain(`-U ${url.username}`);
    expect(check).toContain(`-d ${url.pathname.slice(1)}`);
  });
});
