import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { busyDatabaseError } from '../db/tx.js';
import { errorCodes, isRecoupError, RecoupError, type ErrorCode } from '../platform/errors.js';

/** RFC 9457 problem details, with every bad field listed under `errors`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  request_id: string;
  errors?: Array<{ path: string; message: string }>;
}

const titles: Record<ErrorCode, string> = {
  validation: 'Invalid request',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  conflict: 'Conflict',
  in_progress: 'In progress',
  request_timeout: 'Request timeout',
  payload_too_large: 'Payload too large',
  uri_too_long: 'URI too long',
  unsupported_media_type: 'Unsupported media type',
  rate_limited: 'Too many requests',
  headers_too_large: 'Request headers too large',
  unavailable: 'Service unavailable',
  config: 'Internal error',
  internal: 'Internal error',
};

// Fastify's own request errors, mapped onto recoup's codes.
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'validation',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'validation',
  FST_ERR_CTP_INVALID_JSON_BODY: 'validation',
  FST_ERR_VALIDATION: 'validation',
  FST_ERR_BAD_URL: 'validation',
  FST_ERR_MAX_PARAM_LENGTH: 'uri_too_long',
  // A static file path that climbs out of its folder (`..%2f`): refused, never looked up.
  FST_STATIC_FORBIDDEN_PATH: 'forbidden',
};

/**
 * Said in recoup's words where Fastify's message would quote the URL back (it may be huge), and
 * the part of the request at fault where that is not the body.
 */
const fastifyWords: Record<string, { message: string; path?: string }> = {
  FST_ERR_BAD_URL: { message: 'not a valid URL: broken percent-encoding', path: '(url)' },
  FST_ERR_MAX_PARAM_LENGTH: { message: 'A segment of the path is too long' },
  FST_STATIC_FORBIDDEN_PATH: { message: 'The path leaves the folder it names' },
};

export function toRecoupError(err: unknown): RecoupError {
  if (isRecoupError(err)) return err;
  const fastifyError = err as Partial<FastifyError> & { type?: string };
  const code = fastifyError.code ? fastifyCodes[fastifyError.code] : undefined;
  if (code) {
    const words = fastifyWords[fastifyError.code ?? ''];
    const message = words?.message ?? fastifyError.message ?? titles[code];
    // Every 400 names what to fix: for Fastify's own body errors that is the body itself.
    const issues = code === 'validation' ? [{ path: words?.path ?? '(body)', message }] : [];
    return new RecoupError(code, message, { cause: err, issues });
  }
  // JSON.parse failures surface as SyntaxError with statusCode 400.
  if (err instanceof SyntaxError || fastifyError.statusCode === 400) {
    return new RecoupError('validation', 'Body is not valid JSON', {
      issues: [{ path: '(body)', message: 'not valid JSON' }],
    });
  }
  if (fastifyError.statusCode === 413) return new RecoupError('payload_too_large', 'Body too large');
  if (fastifyError.statusCode === 415) return new RecoupError('unsupported_media_type', 'Use application/json');
  // A lock wait past lock_timeout or a full pool on any route: busy, so worth retrying, not broken.
  const busy = busyDatabaseError(err);
  if (busy) return busy;
  return new RecoupError('internal', 'Internal error', { cause: err });
}

/**
 * The status an error answers with, for handlers that answer with a page rather than a problem:
 * its `statusCode` (a RecoupError's code's, or Fastify's and its plugins', e.g. a rate limit's 429),
 * 503 for a busy database, else 500.
 */
export function httpStatusOf(err: unknown): number {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 600) return status;
  return busyDatabaseError(err)?.statusCode ?? 500;
}

/** The problem document for an error, answered to the request with this id. */
export function problemOf(error: RecoupError, requestId: string): Problem {
  const status = errorCodes[error.code].status;
  return {
    type: `https://recoup.dev/problems/${error.code.replace(/_/g, '-')}`,
    title: titles[error.code],
    status,
    // Internal details never reach a client; the request id finds them in the logs.
    detail: status >= 500 ? `Something went wrong on our side. Quote request id ${requestId}.` : error.message,
    request_id: requestId,
    ...(error.issues.length > 0 ? { errors: error.issues } : {}),
  };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const error = toRecoupError(err);
  const problem = problemOf(error, String(request.id));
  if (problem.status >= 500) request.log.error({ err }, 'request failed');
  return reply.status(problem.status).type('application/problem+json').send(problem);
}
