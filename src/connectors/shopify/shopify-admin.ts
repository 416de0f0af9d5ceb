import { createAdminApiClient } from '@shopify/admin-api-client';
import { formatAmount } from '../../platform/format-amount.js';
import type { EventForShop, ShopWriteBack, WriteBackResult } from '../shop-connector.js';
import type { ShopifyAdminConfig } from './shopify-config.js';

/**
 * Write-back through Shopify's Admin GraphQL API: an order whose payment recoup collected is
 * marked paid (`orderMarkAsPaid`), tagged `recoup-recovered` and given a line in its note; a
 * refund recoup made tags it `recoup-refunded` with a line in the note. The merchant's own note is
 * kept: recoup reads it and appends. Each step is safe to repeat, so a retried delivery finishes
 * what an earlier attempt left half done.
 */

export interface ShopifyAdminDeps {
  /** Replaces the global fetch for Admin API calls. */
  fetch?: typeof fetch;
  /** How long one Admin API call may take, in ms. Default 10 000. */
  timeoutMs?: number;
}

export const recoveredTag = 'recoup-recovered';
export const refundedTag = 'recoup-refunded';

const orderStateQuery = `query RecoupOrderState($id: ID!) {
  order(id: $id) { id displayFinancialStatus note }
}`;

const markPaidMutation = `mutation RecoupMarkPaid($input: OrderMarkAsPaidInput!) {
  orderMarkAsPaid(input: $input) { order { id displayFinancialStatus } userErrors { field message } }
}`;

const tagsAddMutation = `mutation RecoupTagOrder($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}`;

const noteMutation = `mutation RecoupNoteOrder($input: OrderInput!) {
  orderUpdate(input: $input) { order { id } userErrors { field message } }
}`;

/** Financial states in which the order needs no marking: paid, and perhaps refunded since. */
const settledStates = new Set(['PAID', 'PARTIALLY_REFUNDED', 'REFUNDED']);

interface UserError {
  field?: string[] | null;
  message: string;
}

type Call<T> = { ok: true; status: number; data: T } | { ok: false; status: number | null; detail: string };

/** A failed step's result: what Shopify said, never the credentials. */
class StepFailed {
  constructor(readonly result: WriteBackResult) {}
}

export function createShopifyWriteBack(config: ShopifyAdminConfig, deps: ShopifyAdminDeps = {}): ShopWriteBack {
  const fetchImpl = deps.fetch ?? fetch;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const redact = (detail: string) => detail.split(config.accessToken).join('[token]').slice(0, 1_000);

  let client: ReturnType<typeof createAdminApiClient> | undefined;
  const adminClient = () => {
    client ??= createAdminApiClient({
      storeDomain: config.shop,
      apiVersion: config.apiVersion,
      accessToken: config.accessToken,
      // A failed write-back is retried on the webhook delivery schedule, not inside one attempt.
      retries: 0,
      // The library's only logs are version-support notices, which would otherwise go to the console.
      logger: () => {},
      customFetchApi: (url, init) => {
        // The library always calls https://<shop>; a configured API URL (a local fake) replaces that origin.
        const target = config.apiUrl ? `${config.apiUrl.replace(/\/+$/, '')}${new URL(url).pathname}` : url;
        return fetchImpl(target, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      },
    });
    return client;
  };

  async function call<T>(operation: string, variables: Record<string, unknown>): Promise<Call<T>> {
    try {
      const { data, errors } = await adminClient().request<T>(operation, { variables });
      if (errors || data === undefined) {
        const graphQL = (errors?.graphQLErrors ?? []).map((e) => e.message).filter(Boolean);
        const detail = [errors?.message ?? 'no data in the answer', ...graphQL].join(': ');
        return { ok: false, status: errors?.networkStatusCode ?? null, detail: redact(detail) };
      }
      return { ok: true, status: 200, data };
    } catch (err) {
      return { ok: false, status: null, detail: redact(err instanceof Error ? err.message : String(err)) };
    }
  }

  /** Runs one call; a transport error or any user error not `tolerated` ends the write-back as failed. */
  async function step<T>(
    what: string,
    operation: string,
    variables: Record<string, unknown>,
    userErrorsOf: (data: T) => UserError[] | undefined,
    tolerated: (error: UserError) => boolean = () => false,
  ): Promise<T> {
    const answer = await call<T>(operation, variables);
    if (!answer.ok)
      throw new StepFailed({ kind: 'failed', status: answer.status, detail: `${what}: ${answer.detail}` });
    const refused = (userErrorsOf(answer.data) ?? []).filter((e) => !tolerated(e));
    if (refused.length > 0) {
      const detail = `${what}: ${refused.map((e) => e.message).join('; ')}`;
      throw new StepFailed({ kind: 'failed', status: answer.status, detail: redact(detail) });
    }
    return answer.data;
  }

  async function orderState(gid: string): Promise<{ status: string | null; note: string | null }> {
    const data = await step<{ order: { displayFinancialStatus: string | null; note: string | null } | null }>(
      'reading the order',
      orderStateQuery,
      { id: gid },
      () => [],
    );
    if (!data.order) throw new StepFailed({ kind: 'failed', status: 200, detail: `no order ${gid} in the shop` });
    return { status: data.order.displayFinancialStatus, note: data.order.note };
  }

  async function tag(gid: string, name: string): Promise<void> {
    await step<{ tagsAdd: { userErrors: UserError[] } | null }>(
      `adding the tag ${name}`,
      tagsAddMutation,
      { id: gid, tags: [name] },
      (d) => d.tagsAdd?.userErrors,
    );
  }

  /** Appends `line` to the merchant's note unless an earlier attempt already did (`marker` is in it). */
  async function appendNote(gid: string, note: string | null, marker: string, line: string): Promise<boolean> {
    if (note?.includes(marker)) return false;
    await step<{ orderUpdate: { userErrors: UserError[] } | null }>(
      'adding to the note',
      noteMutation,
      { input: { id: gid, note: note?.trim() ? `${note.trimEnd()}\n${line}` : line } },
      (d) => d.orderUpdate?.userErrors,
    );
    return true;
  }

  async function paymentCollected(gid: string, data: Record<string, unknown>): Promise<WriteBackResult> {
    const state = await orderState(gid);
    const marked = !settledStates.has(state.status ?? '');
    if (marked) {
      await step<{ orderMarkAsPaid: { userErrors: UserError[] } | null }>(
        'marking the order paid',
        markPaidMutation,
        { input: { id: gid } },
        (d) => d.orderMarkAsPaid?.userErrors,
        // Paid meanwhile (by the shop, or an attempt whose answer was lost): what was asked for holds.
        (e) => /already (been )?paid|paid already/i.test(e.message),
      );
    }
    await tag(gid, recoveredTag);
    const paymentId = String(data.payment_id ?? '');
    const marker = `recoup payment ${paymentId}`;
    const via = [data.gateway, data.gateway_payment_id].filter((v) => typeof v === 'string' && v).join(' ');
    const line = `${marker}: ${money(data)} collected through a retry link${via ? ` (${via})` : ''}.`;
    const noted = await appendNote(gid, state.note, marker, line);
    const done = [
      marked ? 'marked paid' : `already ${state.status?.toLowerCase() ?? 'paid'}`,
      `tagged ${recoveredTag}`,
    ];
    return { kind: 'done', status: 200, detail: [...done, noted ? 'noted' : 'note already there'].join(', ') };
  }

  async function refunded(gid: string, data: Record<string, unknown>): Promise<WriteBackResult> {
    const state = await orderState(gid);
    await tag(gid, refundedTag);
    const marker = `recoup refund ${String(data.refund_id ?? '')}`;
    const why = data.reason === 'duplicate' ? 'a duplicate payment' : 'asked for by ops';
    const said = typeof data.note === 'string' && data.note.trim() ? `: ${data.note.trim()}` : '';
    const line = `${marker}: ${money(data)} refunded (${why})${said}.`;
    const noted = await appendNote(gid, state.note, marker, line);
    return { kind: 'done', status: 200, detail: `tagged ${refundedTag}, ${noted ? 'noted' : 'note already there'}` };
  }

  async function apply(event: EventForShop): Promise<WriteBackResult> {
    const { data } = event;
    if (event.type === 'payment.succeeded') {
      if (data.collected_by !== 'recoup') return { kind: 'skipped', reason: 'the shop reported this payment itself' };
      if (data.duplicate === true) {
        return {
          kind: 'skipped',
          reason: 'a second payment for a paid order: it is refunded, the order stays as it is',
        };
      }
    } else if (event.type !== 'refund.succeeded') {
      return { kind: 'skipped', reason: `${event.type} is nothing Shopify is told about` };
    }
    const orderId = typeof data.order_id === 'string' ? data.order_id : '';
    if (!/^\d{1,30}$/.test(orderId)) {
      return {
        kind: 'skipped',
        reason: `${orderId || 'the order'} is a Shopify checkout, not an order: there is no Shopify order to update`,
      };
    }
    const gid = `gid://shopify/Order/${orderId}`;
    try {
      return event.type === 'payment.succeeded' ? await paymentCollected(gid, data) : await refunded(gid, data);
    } catch (err) {
      if (err instanceof StepFailed) return err.result;
      return { kind: 'failed', status: null, detail: redact(err instanceof Error ? err.message : String(err)) };
    }
  }

  return { events: ['payment.succeeded', 'refund.succeeded'], apply };
}

/** `USD 49.99`, or the bare minor units when the event's amount cannot be formatted. */
function money(data: Record<string, unknown>): string {
  const { amount, currency } = data;
  if (typeof amount !== 'number' || typeof currency !== 'string') return 'an amount';
  try {
    // Intl puts a no-break space after the code; a note is plain text the merchant edits.
    return formatAmount(amount, currency, 'en', { currencyDisplay: 'code' }).replace(/\s/g, ' ');
  } catch {
    return `${amount} ${currency} minor units`;
  }
}
