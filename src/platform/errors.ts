import type { z } from 'zod';

/**
 * recoup's one error type. Every failure that crosses a module boundary is a
 * RecoupError with a code from this fixed list; HTTP maps codes to statuses in
 * one place (src/http/problem.ts). Anything else is a bug and becomes a generic
 * 500 with a request id.
 */
export const errorCodes = {
  /** Input failed validation; `issues` lists every offending path. */
  validation: { status: 400, retryable: false },
  /** Missing or unknown credentials. */
  unauthorized: { status: 401, retryable: false },
  /** Credentials are valid but lack the scope for this action. */
  forbidden: { status: 403, retryable: false },
  not_found: { status: 404, retryable: false },
  /** The request conflicts with the current state (e.g. an id reused with other data). */
  conflict: { status: 409, retryable: false },
  /** The same request is being handled right now (a webhook's event in flight); send it again later. */
  in_progress: { status: 409, retryable: true },
  /** The request was not fully received in time (REQUEST_TIMEOUT). */
  request_timeout: { status: 408, retryable: true },
  payload_too_large: { status: 413, retryable: false },
  /** The URL, or one segment of its path, is longer than recoup reads. */
  uri_too_long: { status: 414, retryable: false },
  unsupported_media_type: { status: 415, retryable: false },
  rate_limited: { status: 429, retryable: true },
  /** The request's headers are larger than the server reads. */
  headers_too_large: { status: 431, retryable: false },
  /** A dependency (Postgres, Redis, a provider) is unreachable; try again later. */
  unavailable: { status: 503, retryable: true },
  /** Configuration is invalid; the process cannot start. */
  config: { status: 500, retryable: false },
  internal: { status: 500, retryable: false },
} as const;

export type ErrorCode = keyof typeof errorCodes;

/** One problem with one input field, addressed by its path (e.g. `order.customer.email`). */
export interface Issue {
  path: string;
  message: string;
}

export class RecoupError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly issues: Issue[];
  /** The HTTP status, for error handlers that know only `statusCode` (Fastify's plugins, e.g. bull-board's). */
  readonly statusCode: number;

  constructor(code: ErrorCode, message: string, options: { issues?: Issue[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RecoupError';
    this.code = code;
    this.retryable = errorCodes[code].retryable;
    this.issues = options.issues ?? [];
    this.statusCode = errorCodes[code].status;
  }
}

export function validationError(issues: Issue[], message = 'Invalid input'): RecoupError {
  return new RecoupError('validation', message, { issues });
}

export function isRecoupError(err: unknown, code?: ErrorCode): err is RecoupError {
  return err instanceof RecoupError && (code === undefined || err.code === code);
}

/** `order.customer.email`, `steps[1].after`: the path notation used in every problem response. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out || '(body)';
}

/** Every problem zod found, in the path notation above. */
export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message }));
}
