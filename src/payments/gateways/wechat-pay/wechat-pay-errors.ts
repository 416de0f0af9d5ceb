import { classifyFailure } from '../../../recoveries/classify-failure.js';
import type { FailureCategory } from '../../../domain/vocabulary.js';
import { GatewayError } from '../../payment-gateway.js';

/** Whether a failed call could have changed anything at WeChat Pay: decides `unavailable` vs `unknown_outcome`. */
export type WechatPayCallKind = 'read' | 'write';

// Connection failures where the request never left this machine.
const neverSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The order's state forbids the call (paid, closed): retrieve it and follow its state. */
const conflictCodes = new Set(['ORDERPAID', 'ORDER_PAID', 'ORDER_CLOSED', 'ORDERCLOSED', 'OUT_TRADE_NO_USED']);

const customerCategories = new Set<FailureCategory>([
  'insufficient_funds',
  'card_data',
  'authentication_required',
  'account_frozen',
  'method_unsupported',
  'fraud_suspected',
]);

export function classifyWechatPayCode(code: string): FailureCategory {
  return classifyFailure({ gateway: 'wechat_pay', code });
}

/**
 * What recoup reads of the HTTP client's (axios, inside wechatpay-axios-plugin) errors. Read by
 * shape: the client is the plugin's, not a dependency of recoup's own.
 */
interface HttpClientError extends Error {
  isAxiosError: true;
  code?: string;
  response?: { status: number; data: unknown };
}

function isHttpClientError(error: unknown): error is HttpClientError {
  return error instanceof Error && (error as Partial<HttpClientError>).isAxiosError === true;
}

/** The `{code, message}` of an APIv3 error answer, when there is one. */
export function errorAnswer(error: unknown): { status: number; code: string; message: string } | undefined {
  if (!isHttpClientError(error) || !error.response) return undefined;
  const data: unknown = error.response.data;
  const parsed = typeof data === 'string' ? safeJson(data) : data;
  const body = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  return {
    status: error.response.status,
    code: typeof body.code === 'string' ? body.code : String(error.response.status),
    message: typeof body.message === 'string' ? body.message : error.message,
  };
}

/**
 * Anything the HTTP client threw → GatewayError. Errors that are not the client's (bugs) are
 * returned unchanged.
 */
export function toGatewayError(error: unknown, kind: WechatPayCallKind, gatewayPaymentId?: string): unknown {
  if (error instanceof GatewayError || !isHttpClientError(error)) return error;
  const base = { cause: error, ...(gatewayPaymentId ? { gatewayPaymentId } : {}) };
  const answer = errorAnswer(error);
  if (answer && error.code !== undefined && error.code.startsWith('EV3_')) {
    // An answer not signed by a WeChat Pay key recoup trusts: nothing it says counts.
    return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', `WeChat Pay: ${error.message}`, {
      ...base,
      code: 'response_signature_invalid',
      category: 'gateway_outage',
    });
  }
  if (!answer) {
    const code = error.code ?? 'network_error';
    const neverSent = neverSentCodes.has(code);
    return new GatewayError(
      neverSent || kind === 'read' ? 'unavailable' : 'unknown_outcome',
      `WeChat Pay: ${error.message}`,
      {
        ...base,
        code: code === 'ECONNABORTED' ? 'timeout' : code,
        category: 'network',
      },
    );
  }
  const message = `WeChat Pay: ${answer.message} (${answer.code})`;
  if (answer.status >= 500 || answer.code === 'SYSTEM_ERROR' || answer.code === 'SYSTEMERROR') {
    return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', message, {
      ...base,
      code: answer.code,
      category: 'gateway_outage',
    });
  }
  if (answer.status === 429 || answer.code === 'FREQUENCY_LIMITED') {
    return new GatewayError('unavailable', message, { ...base, code: answer.code, category: 'gateway_outage' });
  }
  if (conflictCodes.has(answer.code)) return new GatewayError('conflict', message, { ...base, code: answer.code });
  const category = classifyWechatPayCode(answer.code);
  if (customerCategories.has(category)) {
    return new GatewayError('declined', message, { ...base, code: answer.code, category });
  }
  return new GatewayError('invalid_request', message, { ...base, code: answer.code, category });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
