import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local stand-in for a WooCommerce shop's REST API (wc/v3), for write-back and settings tests
 * through real HTTP.
 *
 * Implements, with HTTP Basic auth (consumer key and secret; 401 otherwise):
 * - `GET /wp-json/wc/v3/orders/:id` and `PUT` (`set_paid`, `transaction_id`, `status`);
 * - `GET` and `POST /wp-json/wc/v3/orders/:id/notes`;
 * - `GET /wp-json/wc/v3/settings/:group/:id`.
 * Unknown orders and settings are answered 404 in WordPress's error shape (`{ code, message, data }`).
 *
 * `set_paid` behaves as WooCommerce's payment completion: an order `pending`, `failed`,
 * `on-hold` or `cancelled` becomes `processing` with a paid date; any other is left as it is.
 *
 * `failNext(n, fault, match)` makes the next n matching requests fail: an error answer, the
 * same after the change was made (`applied: true`: the shop did it, the client never heard),
 * `hang` (no answer until the client gives up or `close()`) or `drop` (connection destroyed).
 */
export interface FakeWoocommerce {
  /** The shop's address, to give as WOOCOMMERCE_URL, e.g. `http://127.0.0.1:43125`. */
  readonly url: string;
  readonly consumerKey: string;
  readonly consumerSecret: string;
  /** Every request that reached the server, oldest first. */
  readonly requests: readonly FakeWoocommerceRequest[];
  /** Settings by `group/id`, e.g. `products/woocommerce_hold_stock_minutes` → `'60'`. */
  readonly settings: Map<string, string>;
  addOrder(id: number, fields?: { status?: string; transactionId?: string }): FakeWoocommerceOrder;
  order(id: number): FakeWoocommerceOrder | undefined;
  failNext(count: number, fault: FakeWoocommerceFault, match?: { method?: string; path?: RegExp }): void;
  /** Forgets orders, requests and faults; settings go back to WooCommerce's defaults. */
  reset(): void;
  /** Stops the server, cutting held requests. Safe to call twice. */
  close(): Promise<void>;
}

export interface FakeWoocommerceOrder {
  id: number;
  status: string;
  transactionId: string;
  datePaid: string | null;
  /** Newest last. */
  notes: Array<{ id: number; note: string; customerNote: boolean }>;
}

export interface FakeWoocommerceRequest {
  method: string;
  /** Path and query, e.g. `/wp-json/wc/v3/orders/727`. */
  path: string;
  authorized: boolean;
  /** Status answered; undefined when held or dropped. */
  status: number | undefined;
  /** Parsed JSON body, when there was one. */
  body: unknown;
}

export type FakeWoocommerceFault =
  { status: number; code?: string; message?: string; applied?: boolean } | 'hang' | 'drop';

const api = '/wp-json/wc/v3';
const payable = new Set(['pending', 'failed', 'on-hold', 'cancelled']);
const defaultSettings: ReadonlyArray<[string, string]> = [
  ['products/woocommerce_hold_stock_minutes', '60'],
  ['products/woocommerce_manage_stock', 'yes'],
];

export async function startFakeWoocommerce(): Promise<FakeWoocommerce> {
  const consumerKey = 'ck_fake0123456789';
  const consumerSecret = 'cs_fake9876543210';
  const expectedAuth = Buffer.from(`Basic ${Buffer.from(`${consumerKey}:${consumerSecret}`).toString('base64')}`);
  const orders = new Map<number, FakeWoocommerceOrder>();
  const settings = new Map<string, string>(defaultSettings);
  const requests: FakeWoocommerceRequest[] = [];
  const faults: Array<{ fault: FakeWoocommerceFault; method?: string; path?: RegExp }> = [];
  const sockets = new Set<Socket>();
  let nextNoteId = 1000;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw === '' ? undefined : (JSON.parse(raw) as unknown);
      } catch {
        body = raw;
      }
      const method = req.method ?? 'GET';
      const path = req.url ?? '/';
      const given = Buffer.from(req.headers.authorization ?? '');
      const authorized = given.length === expectedAuth.length && timingSafeEqual(given, expectedAuth);
      const record: FakeWoocommerceRequest = { method, path, authorized, status: undefined, body };
      requests.push(record);
      const answer = (status: number, payload: unknown) => {
        record.status = status;
        res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
        res.end(JSON.stringify(payload));
      };
      const error = (status: number, code: string, message: string) =>
        answer(status, { code, message, data: { status } });

      if (!authorized) return error(401, 'woocommerce_rest_cannot_view', 'Sorry, you cannot list resources.');
      const index = faults.findIndex((f) => (!f.method || f.method === method) && (!f.path || f.path.test(path)));
      const fault = index >= 0 ? faults.splice(index, 1)[0]?.fault : undefined;
      if (fault === 'hang') return;
      if (fault === 'drop') {
        req.socket.destroy();
        return;
      }
      const outcome = handle(method, path, body);
      if (fault) {
        return error(fault.status, fault.code ?? 'fake_fault', fault.message ?? 'Injected failure.');
      }
      if (outcome.kind === 'error') return error(outcome.status, outcome.code, outcome.message);
      answer(outcome.status, outcome.body);

      function handle(
        m: string,
        p: string,
        b: unknown,
      ):
        | { kind: 'ok'; status: number; body: unknown }
        | { kind: 'error'; status: number; code: string; message: string } {
        // With a fault that is not `applied`, nothing changes: answer as if the shop never saw it.
        const apply = !fault || (typeof fault === 'object' && fault.applied === true);
        const pathname = p.split('?')[0] ?? p;
        const setting = new RegExp(`^${api}/settings/([\\w-]+)/([\\w-]+)$`).exec(pathname);
        if (setting && m === 'GET') {
          const value = settings.get(`${setting[1]}/${setting[2]}`);
          if (value === undefined)
            return { kind: 'error', status: 404, code: 'rest_setting_setting_invalid', message: 'Invalid setting.' };
          return {
            kind: 'ok',
            status: 200,
            body: { id: setting[2], label: setting[2], type: 'number', default: '60', value },
          };
        }
        const match = new RegExp(`^${api}/orders/(\\d+)(/notes)?$`).exec(pathname);
        const order = match ? orders.get(Number(match[1])) : undefined;
        if (!match)
          return {
            kind: 'error',
            status: 404,
            code: 'rest_no_route',
            message: 'No route was found matching the URL and request method.',
          };
        if (!order)
          return { kind: 'error', status: 404, code: 'woocommerce_rest_shop_order_invalid_id', message: 'Invalid ID.' };
        const fields = (typeof b === 'object' && b !== null ? b : {}) as Record<string, unknown>;
        if (match[2] && m === 'GET') {
          return { kind: 'ok', status: 200, body: [...order.notes].reverse().map(noteJson) };
        }
        if (match[2] && m === 'POST') {
          if (typeof fields.note !== 'string' || fields.note === '') {
            return {
              kind: 'error',
              status: 400,
              code: 'rest_missing_callback_param',
              message: 'Missing parameter(s): note',
            };
          }
          const note = { id: nextNoteId++, note: fields.note, customerNote: fields.customer_note === true };
          if (apply) order.notes.push(note);
          return { kind: 'ok', status: 201, body: noteJson(note) };
        }
        if (m === 'GET') return { kind: 'ok', status: 200, body: orderJson(order) };
        if (m === 'PUT') {
          if (apply) {
            if (typeof fields.transaction_id === 'string') order.transactionId = fields.transaction_id;
            if (typeof fields.status === 'string') order.status = fields.status;
            if (fields.set_paid === true && payable.has(order.status)) {
              order.status = 'processing';
              order.datePaid = new Date().toISOString().slice(0, 19);
            }
          }
          return { kind: 'ok', status: 200, body: orderJson(order) };
        }
        return {
          kind: 'error',
          status: 404,
          code: 'rest_no_route',
          message: 'No route was found matching the URL and request method.',
        };
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed = false;

  return {
    url: `http://127.0.0.1:${port}`,
    consumerKey,
    consumerSecret,
    requests,
    settings,
    addOrder(id, fields = {}) {
      const order = {
        id,
        status: fields.status ?? 'pending',
        transactionId: fields.transactionId ?? '',
        datePaid: null,
        notes: [],
      };
      orders.set(id, order);
      return order;
    },
    order: (id) => orders.get(id),
    failNext(count, fault, match = {}) {
      for (let i = 0; i < count; i++) faults.push({ fault, ...match });
    },
    reset() {
      orders.clear();
      requests.length = 0;
      faults.length = 0;
      settings.clear();
      for (const [key, value] of defaultSettings) settings.set(key, value);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function orderJson(order: FakeWoocommerceOrder) {
  return {
    id: order.id,
    status: order.status,
    transaction_id: order.transactionId,
    date_paid_gmt: order.datePaid,
    currency: 'USD',
    total: '29.35',
  };
}

function noteJson(note: { id: number; note: string; customerNote: boolean }) {
  return {
    id: note.id,
    author: 'WooCommerce',
    date_created_gmt: '2026-03-08T16:02:11',
    note: note.note,
    customer_note: note.customerNote,
    added_by_user: false,
  };
}
