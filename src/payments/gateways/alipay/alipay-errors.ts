import { AlipayRequestError } from 'alipay-sdk';
import type { FailureCategory } from '../../../domain/vocabulary.js';
import { classifyFailure } from '../../../recoveries/classify-failure.js';
import { GatewayError } from '../../payment-gateway.js';

/** Whether a failed call could have changed anything at Alipay: decides `unavailable` vs `unknown_outcome`. */
export type AlipayCallKind = 'read' | 'write';

/** The business part of an Alipay answer (`xxx_response`): `code` 10000 is success. */
export interface AlipayAnswer {
  code?: string;
  msg?: string;
  sub_code?: string;
  sub_msg?: string;
  [key: string]: unknown;
}

// Connection failures where the request never left this machine.
const neverSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Codes that say "Alipay may or may not have acted": query before anything else. */
const uncertainCodes = new Set([
  'ACQ.SYSTEM_ERROR',
  'AQC.SYSTEM_ERROR',
  '20000',
  'isp.unknow-error',
  'aop.unknow-error',
]);

/** The payment's state forbids the call: retrieve it and follow its state. */
const conflictCodes = new Set([
  'ACQ.TRADE_HAS_SUCCESS',
  'ACQ.TRADE_HAS_FINISHED',
  'ACQ.TRADE_HAS_CLOSE',
  'ACQ.TRADE_STATUS_ERROR',
  'ACQ.REFUND_AMT_NOT_EQUAL_TOTAL',
  'ACQ.REASON_TRADE_REFUND_FEE_ERR',
  'ACQ.TRADE_NOT_ALLOW_REFUND',
  'ACQ.REFUND_FEE_ERROR',
]);

/** Categories a customer (not recoup's set-up) caused: the payment is declined, not badly asked. */
const customerCategories = new Set<FailureCategory>([
  'insufficient_funds',
  'card_data',
  'authentication_required',
  'account_frozen',
  'method_unsupported',
  'fraud_suspected',
]);

/** The most specific code of an answer: `sub_code` (ACQ.*) when present, else the gateway `code`. */
export function answerCode(answer: AlipayAnswer): string {
  return answer.sub_code || answer.code || 'unknown';
}

export function classifyAlipayCode(code: string): FailureCategory {
  return classifyFailure({ gateway: 'alipay', code });
}

/** A non-10000 answer → GatewayError. */
export function answerError(answer: AlipayAnswer, kind: AlipayCallKind, gatewayPaymentId?: string): GatewayError {
  const code = answerCode(answer);
  const message = `Alipay: ${answer.sub_msg || answer.msg || code} (${code})`;
  const base = { code, ...(gatewayPaymentId ? { gatewayPaymentId } : {}) };
  if (uncertainCodes.has(code)) {
    return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', message, {
      ...base,
      category: 'gateway_outage',
    });
  }
  if (conflictCodes.has(code)) return new GatewayError('conflict', message, base);
  const category = classifyAlipayCode(code);
  if (category === 'gateway_outage') return new GatewayError('unavailable', message, { ...base, category });
  if (customerCategories.has(category)) return new GatewayError('declined', message, { ...base, category });
  return new GatewayError('invalid_request', message, { ...base, category });
}

/**
 * Anything the SDK threw (transport failure, HTTP error, unreadable or badly signed answer)
 * → GatewayError. Errors that are not the SDK's (bugs) are returned unchanged.
 */
export function toGatewayError(error: unknown, kind: AlipayCallKind, gatewayPaymentId?: string): unknown {
  if (error instanceof TypeError && /signature/i.test(error.message)) {
    // An answer without `sign` (Alipay sends some refusals unsigned): the SDK cannot verify it,
    // so nothing it says is trusted, refusal or not.
    return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', 'Alipay: unsigned answer', {
      cause: error,
      code: 'response_signature_invalid',
      category: 'gateway_outage',
      ...(gatewayPaymentId ? { gatewayPaymentId } : {}),
    });
  }
  if (error instanceof GatewayError || !(error instanceof AlipayRequestError)) return error;
  const base = { cause: error, ...(gatewayPaymentId ? { gatewayPaymentId } : {}) };
  const transport = transportCode(error);
  if (transport !== undefined) {
    const neverSent = neverSentCodes.has(transport);
    return new GatewayError(
      neverSent || kind === 'read' ? 'unavailable' : 'unknown_outcome',
      `Alipay: ${error.message}`,
      {
        ...base,
        code: transport,
        category: 'network',
      },
    );
  }
  if (/验签|sign/i.test(error.message)) {
    // An answer not signed by Alipay's key: a misconfigured key or something in between. Nothing it says can be trusted.
    return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', `Alipay: ${error.message}`, {
      ...base,
      code: 'response_signature_invalid',
      category: 'gateway_outage',
    });
  }
  const status = error.responseHttpStatus;
  return new GatewayError(kind === 'read' ? 'unavailable' : 'unknown_outcome', `Alipay: ${error.message}`, {
    ...base,
    code: status ? String(status) : 'api_error',
    category: 'gateway_outage',
  });
}

/** The transport error code (ECONNREFUSED, a timeout, …) somewhere in the cause chain, if any. */
function transportCode(error: Error): string | undefined {
  let current: unknown = error.cause;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    if (/timeout/i.test(current.name)) return 'timeout';
    current = current.cause;
  }
  if (/HttpClient Request error/.test(error.message)) return 'network_error';
  return undefined;
}
