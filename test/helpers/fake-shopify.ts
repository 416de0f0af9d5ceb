import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local stand-in for Shopify's Admin GraphQL API (`POST /admin/api/<version>/graphql.json`),
 * for the connector's write-back tests. It knows the operations write-back sends, by operation
 * name: `RecoupOrderState` (order → displayFinancialStatus, note), `RecoupMarkPaid`
 * (orderMarkAsPaid), `RecoupTagOrder` (tagsAdd) and `RecoupNoteOrder` (orderUpdate's note).
 * Anything else is answered with a GraphQL error, as Shopify answers an unknown field.
 *
 * Checks run in Shopify's order: route (404), `X-Shopify-Access-Token` (401), programmed faults,
 * then the operation. Every request that reached the route is recorded, answered or not.
 */
export interface FakeShopify {
  /** Give write-back this as SHOPIFY_API_URL, e.g. `http://127.0.0.1:43125`. */
  readonly url: string;
  readonly accessToken: string;
  readonly requests: readonly FakeShopifyRequest[];
  /** Adds an order in the given state (`PENDING` unless said). */
  addOrder(id: string, state?: { financialStatus?: string; note?: string | null; tags?: string[] }): void;
  order(id: string): FakeShopifyOrder | undefined;
  /**
   * The next `count` requests (of `operation` only, when given) get `fault` instead of their answer:
   * an HTTP status, a GraphQL error (answered 200, as Shopify's throttling is), user errors from
   * the mutation, or `hang` (never answered, until the client gives up or close()).
   */
  failNext(count: number, fault: FakeShopifyFault, options?: { operation?: FakeShopifyOperation }): void;
  /** The operations recorded, in order, e.g. `['RecoupOrderState', 'RecoupMarkPaid', …]`. */
  operations(): string[];
  close(): Promise<void>;
}

export type FakeShopifyOperation = 'RecoupOrderState' | 'RecoupMarkPaid' | 'RecoupTagOrder' | 'RecoupNoteOrder';

export type FakeShopifyFault = { status: number } | { graphQLError: string } | { userError: string } | 'hang';

export interface FakeShopifyOrder {
  financialStatus: string;
  note: string | null;
  tags: string[];
}

export interface FakeShopifyRequest {
  path: string;
  /** The X-Shopify-Access-Token header as sent. */
  token: string | undefined;
  operation: string | undefined;
  variables: Record<string, unknown>;
}

type Answer = { status: number; body: unknown };

const gidPrefix = 'gid://shopify/Order/';

export async function startFakeShopify(options: { accessToken?: string } = {}): Promise<FakeShopify> {
  const accessToken = options.accessToken ?? 'shpat_fake_admin_token';
  const orders = new Map<string, FakeShopifyOrder>();
  const requests: FakeShopifyRequest[] = [];
  const faults: Array<{ fault: FakeShopifyFault; operation: FakeShopifyOperation | undefined }> = [];
  const sockets = new Set<Socket>();

  const userErrors = (message: string) => [{ field: ['id'], message }];
  const orderOf = (gid: unknown) =>
    typeof gid === 'string' && gid.startsWith(gidPrefix) ? orders.get(gid.slice(gidPrefix.length)) : undefined;

  function run(operation: string | undefined, variables: Record<string, unknown>): Answer {
    const input = (variables.input ?? {}) as Record<string, unknown>;
    switch (operation) {
      case 'RecoupOrderState': {
        const order = orderOf(variables.id);
        const data = order
          ? { id: variables.id, displayFinancialStatus: order.financialStatus, note: order.note }
          : null;
        return { status: 200, body: { data: { order: data } } };
      }
      case 'RecoupMarkPaid': {
        const order = orderOf(input.id);
        if (!order) return mutation('orderMarkAsPaid', { order: null, userErrors: userErrors('Order does not exist') });
        if (order.financialStatus === 'PAID') {
          return mutation('orderMarkAsPaid', { order: null, userErrors: userErrors('Order has already been paid') });
        }
        order.financialStatus = 'PAID';
        return mutation('orderMarkAsPaid', { order: { id: input.id, displayFinancialStatus: 'PAID' }, userErrors: [] });
      }
      case 'RecoupTagOrder': {
        const order = orderOf(variables.id);
        if (!order) return mutation('tagsAdd', { node: null, userErrors: userErrors('Resource not found') });
        for (const tag of (variables.tags ?? []) as string[]) if (!order.tags.includes(tag)) order.tags.push(tag);
        return mutation('tagsAdd', { node: { id: variables.id }, userErrors: [] });
      }
      case 'RecoupNoteOrder': {
        const order = orderOf(input.id);
        if (!order) return mutation('orderUpdate', { order: null, userErrors: userErrors('Order does not exist') });
        if (typeof input.note === 'string') order.note = input.note;
        return mutation('orderUpdate', { order: { id: input.id }, userErrors: [] });
      }
      default:
        return {
          status: 200,
          body: { errors: [{ message: `Field '${operation ?? '?'}' doesn't exist on type 'Mutation'` }] },
        };
    }
  }

  function mutation(field: string, payload: unknown): Answer {
    return { status: 200, body: { data: { [field]: payload } } };
  }

  const mutationField: Record<FakeShopifyOperation, string> = {
    RecoupOrderState: 'order',
    RecoupMarkPaid: 'orderMarkAsPaid',
    RecoupTagOrder: 'tagsAdd',
    RecoupNoteOrder: 'orderUpdate',
  };

  function takeFault(operation: string | undefined): FakeShopifyFault | undefined {
    const index = faults.findIndex((f) => f.operation === undefined || f.operation === operation);
    return index === -1 ? undefined : faults.splice(index, 1)[0]?.fault;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const send = ({ status, body }: Answer) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const path = req.url ?? '';
      if (req.method !== 'POST' || !/^\/admin\/api\/[\w-]+\/graphql\.json$/.test(path)) {
        return send({ status: 404, body: { errors: 'Not Found' } });
      }
      let parsed: { query?: string; variables?: Record<string, unknown> };
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof parsed;
      } catch {
        return send({ status: 400, body: { errors: 'Bad Request' } });
      }
      const query = parsed.query ?? '';
      const variables = parsed.variables ?? {};
      const operation = /^\s*(?:query|mutation)\s+(\w+)/.exec(query)?.[1];
      const token = req.headers['x-shopify-access-token'];
      requests.push({ path, token: typeof token === 'string' ? token : undefined, operation, variables });
      if (token !== accessToken) {
        return send({
          status: 401,
          body: { errors: '[API] Invalid API key or access token (unrecognized login or wrong password)' },
        });
      }
      const fault = takeFault(operation);
      // Held: close() destroys the socket if the client has not given up first.
      if (fault === 'hang') return;
      if (fault && 'status' in fault) return send({ status: fault.status, body: { errors: 'Service Unavailable' } });
      if (fault && 'graphQLError' in fault) {
        return send({
          status: 200,
          body: { errors: [{ message: fault.graphQLError, extensions: { code: 'THROTTLED' } }] },
        });
      }
      if (fault && 'userError' in fault && operation && operation in mutationField) {
        const field = mutationField[operation as FakeShopifyOperation];
        return send(mutation(field, { userErrors: userErrors(fault.userError) }));
      }
      send(run(operation, variables));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    accessToken,
    requests,
    addOrder(id, state = {}) {
      orders.set(id, {
        financialStatus: state.financialStatus ?? 'PENDING',
        note: state.note ?? null,
        tags: [...(state.tags ?? [])],
      });
    },
    order: (id) => orders.get(id),
    failNext(count, fault, options = {}) {
      for (let i = 0; i < count; i += 1) faults.push({ fault, operation: options.operation });
    },
    operations: () => requests.map((r) => r.operation ?? '?'),
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}
