import { describe, expect, it } from 'vitest';
import type { ConnectorMapping, ConnectorRequest, ShopConnector } from '../../src/connectors/shop-connector.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { isRecoupError } from '../../src/platform/errors.js';

/** A platform's webhook, built and signed as the platform would, from one of its documented payloads. */
export interface ConnectorFixture {
  /** What the case shows, e.g. "a WooCommerce order whose payment failed". */
  name: string;
  request: ConnectorRequest;
  /** What the mapping must be: its kind, and for events their types in order. */
  expected:
    | { kind: 'events'; types: string[]; check?: (mapping: Extract<ConnectorMapping, { kind: 'events' }>) => void }
    | { kind: 'ignored' | 'rejected' }
    | { kind: 'forget'; customerIds: string[] };
}

export interface ConnectorHarness {
  connector: ShopConnector;
  /** Documented payloads, signed with the connector's secret. */
  fixtures: ConnectorFixture[];
  /** The same request signed with another secret. */
  forge(request: ConnectorRequest): ConnectorRequest;
}

/** Cases every ShopConnector must pass. `create` builds the connector and its signed fixtures. */
export function shopConnectorContract(name: string, create: () => Promise<ConnectorHarness> | ConnectorHarness): void {
  describe(`${name} satisfies the ShopConnector contract`, () => {
    it('accepts what the platform signed, and refuses a forged or altered body as unauthorized', async () => {
      const { connector, fixtures, forge } = await create();
      expect(fixtures.length).toBeGreaterThan(0);
      for (const fixture of fixtures) {
        expect(() => connector.verify(fixture.request), fixture.name).not.toThrow();
        for (const bad of [
          forge(fixture.request),
          { ...fixture.request, rawBody: Buffer.concat([fixture.request.rawBody, Buffer.from(' ')]) },
        ]) {
          let caught: unknown;
          try {
            connector.verify(bad);
          } catch (err) {
            caught = err;
          }
          expect(isRecoupError(caught, 'unauthorized'), fixture.name).toBe(true);
        }
      }
    });

    it('names each delivery and its topic', async () => {
      const { connector, fixtures } = await create();
      for (const fixture of fixtures) {
        const described = connector.describe(fixture.request);
        expect(described.deliveryId.length, fixture.name).toBeGreaterThan(0);
        expect(described.topic.length, fixture.name).toBeGreaterThan(0);
      }
    });

    it("maps each documented payload to recoup's own events, valid by recoup's event schema", async () => {
      const { connector, fixtures } = await create();
      for (const fixture of fixtures) {
        const mapping = await connector.map(fixture.request);
        expect(mapping.kind, fixture.name).toBe(fixture.expected.kind);
        if (mapping.kind === 'events' && fixture.expected.kind === 'events') {
          expect(
            mapping.events.map((e) => e.type),
            fixture.name,
          ).toEqual(fixture.expected.types);
          // What the intake will do with them: parse them again, as POST /v1/events would.
          for (const event of mapping.events) expect(() => parseEvent(JSON.parse(JSON.stringify(event)))).not.toThrow();
          fixture.expected.check?.(mapping);
        }
        if (mapping.kind === 'forget' && fixture.expected.kind === 'forget') {
          expect(mapping.customerIds).toEqual(fixture.expected.customerIds);
        }
        if (mapping.kind === 'rejected' || mapping.kind === 'ignored') expect(mapping.reason.length).toBeGreaterThan(0);
      }
    });

    it('maps the same delivery to the same event ids, so a redelivery is a duplicate', async () => {
      const { connector, fixtures } = await create();
      for (const fixture of fixtures) {
        const [first, second] = [await connector.map(fixture.request), await connector.map(fixture.request)];
        if (first.kind === 'events' && second.kind === 'events') {
          expect(second.events.map((e) => e.id)).toEqual(first.events.map((e) => e.id));
        }
      }
    });

    it('never throws on content it cannot map: a body that is not JSON, or not the shape expected', async () => {
      const { connector, fixtures } = await create();
      const base = fixtures[0]!.request;
      for (const rawBody of ['not json', '{}', '[]', 'null', '{"id": "x", "total": "abc"}'].map((t) =>
        Buffer.from(t),
      )) {
        const mapping = await connector.map({ ...base, rawBody });
        expect(['rejected', 'ignored']).toContain(mapping.kind);
      }
    });
  });
}
