import { z } from 'zod';
import type { WoocommerceApiConfig } from './woocommerce-config.js';

/**
 * The few calls recoup makes to a shop's WooCommerce REST API (wc/v3): read an order and its
 * notes, mark it paid, add a note, put it on hold, read a setting. Authenticated with the REST
 * API key over HTTP Basic auth, which WooCommerce accepts over https.
 */
export interface WoocommerceApi {
  getOrder(orderId: string): Promise<WoocommerceOrderState>;
  /** `set_paid` runs WooCommerce's own payment completion: status, stock, paid date, emails. */
  markPaid(orderId: string, transactionId: string | null): Promise<void>;
  listNotes(orderId: string): Promise<WoocommerceNote[]>;
  /** A private note (not e-mailed to the customer). */
  addNote(orderId: string, note: string): Promise<void>;
  /** Status `on-hold`: WooCommerce's unpaid-order cleanup only cancels `pending` orders. */
  putOnHold(orderId: string): Promise<void>;
  /** Status `pending` again: back in WooCommerce's own hands, cleanup included. */
  putBackToPending(orderId: string): Promise<void>;
  /** A setting's value, e.g. group `products`, id `woocommerce_hold_stock_minutes`. */
  getSetting(group: string, id: string): Promise<string>;
}

export interface WoocommerceOrderState {
  status: string;
  /** Empty when no payment was recorded with one. */
  transactionId: string;
}

export interface WoocommerceNote {
  id: number;
  note: string;
}

export interface WoocommerceApiDeps {
  /** Per call; default 10 s. */
  timeoutMs?: number;
  fetch?: typeof globalThis.fetch;
}

/** A call that did not succeed: `status` is WooCommerce's answer, null when none came. */
export class WoocommerceApiError extends Error {
  readonly status: number | null;
  constructor(status: number | null, message: string) {
    super(message);
    this.name = 'WoocommerceApiError';
    this.status = status;
  }
}

const orderShape = z.object({ status: z.string(), transaction_id: z.string().nullish() });
const notesShape = z.array(z.object({ id: z.number(), note: z.string() }));
const settingShape = z.object({ value: z.unknown() });
/** WordPress REST errors: `{ code, message, data: { status } }`. */
const errorShape = z.object({ code: z.string().optional(), message: z.string().optional() });

const maxErrorText = 200;

export function createWoocommerceApi(config: WoocommerceApiConfig, deps: WoocommerceApiDeps = {}): WoocommerceApi {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const fetchImpl = deps.fetch ?? globalThis.fetch;
  const authorization = `Basic ${Buffer.from(`${config.consumerKey}:${config.consumerSecret}`).toString('base64')}`;

  async function call(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<unknown> {
    const what = `${method} ${path}`;
    let response: Response;
    try {
      response = await fetchImpl(`${config.url}/wp-json/wc/v3${path}`, {
        method,
        headers: {
          authorization,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      throw new WoocommerceApiError(null, `${what}: ${transportProblem(err, timeoutMs)}`);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new WoocommerceApiError(response.status, `${what}: answer cut off: ${transportProblem(err, timeoutMs)}`);
    }
    if (!response.ok) {
      throw new WoocommerceApiError(response.status, `${what}: WooCommerce answered ${response.status}${said(text)}`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new WoocommerceApiError(response.status, `${what}: WooCommerce answered ${response.status} without JSON`);
    }
  }

  async function parsed<T>(shape: z.ZodType<T>, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown) {
    const answer = shape.safeParse(await call(method, path, body));
    if (!answer.success) throw new WoocommerceApiError(200, `${method} ${path}: unexpected answer from WooCommerce`);
    return answer.data;
  }

  const order = (orderId: string) => `/orders/${encodeURIComponent(orderId)}`;

  return {
    async getOrder(orderId) {
      const found = await parsed(orderShape, 'GET', order(orderId));
      return { status: found.status, transactionId: found.transaction_id ?? '' };
    },
    async markPaid(orderId, transactionId) {
      await call('PUT', order(orderId), {
        set_paid: true,
        ...(transactionId ? { transaction_id: transactionId } : {}),
      });
    },
    async listNotes(orderId) {
      return parsed(notesShape, 'GET', `${order(orderId)}/notes`);
    },
    async addNote(orderId, note) {
      await call('POST', `${order(orderId)}/notes`, { note, customer_note: false });
    },
    async putOnHold(orderId) {
      await call('PUT', order(orderId), { status: 'on-hold' });
    },
    async putBackToPending(orderId) {
      await call('PUT', order(orderId), { status: 'pending' });
    },
    async getSetting(group, id) {
      const { value } = await parsed(
        settingShape,
        'GET',
        `/settings/${encodeURIComponent(group)}/${encodeURIComponent(id)}`,
      );
      return typeof value === 'string' ? value : value == null ? '' : String(value);
    },
  };
}

/**
 * How long WooCommerce holds stock for an unpaid order before cancelling it (Settings → Products →
 * Inventory, `woocommerce_hold_stock_minutes`, 60 by default); null when the hold is off (empty or
 * below 1, as WooCommerce reads it). WooCommerce also leaves unpaid orders alone when it does not
 * manage stock at all. Throws WoocommerceApiError when the setting cannot be read.
 */
export async function readHoldStockMinutes(api: Pick<WoocommerceApi, 'getSetting'>): Promise<number | null> {
  const value = (await api.getSetting('products', 'woocommerce_hold_stock_minutes')).trim();
  if (!/^\d+$/.test(value)) return null;
  const minutes = Number(value);
  return minutes >= 1 ? minutes : null;
}

/** What WooCommerce said: its error code and the first 200 characters of its message. */
function said(text: string): string {
  let code: string | undefined;
  let message = text;
  try {
    const answer = errorShape.safeParse(JSON.parse(text));
    if (answer.success && (answer.data.message || answer.data.code)) {
      code = answer.data.code;
      message = answer.data.message ?? '';
    }
  } catch {
    // Not JSON (a proxy's error page, say): its text is all there is.
  }
  message = message.replace(/\s+/g, ' ').trim();
  if (message.length > maxErrorText) message = `${message.slice(0, maxErrorText)}…`;
  const parts = [code, message].filter((part) => part !== undefined && part !== '');
  return parts.length === 0 ? '' : `: ${parts.join(': ')}`;
}

function transportProblem(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return `no answer within ${timeoutMs} ms`;
  }
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
  const code = cause && 'code' in cause && typeof cause.code === 'string' ? cause.code : undefined;
  return code ?? (cause ?? (err instanceof Error ? err : undefined))?.message ?? 'request failed';
}
