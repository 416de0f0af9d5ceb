import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import { embeddedDatabaseHolder } from '../db/embedded-lock.js';
import { errorCodes, RecoupError, type ErrorCode, type Issue } from '../platform/errors.js';

/** A running recoup's HTTP API, as the command line reaches it. */
export interface ApiTarget {
  url: string;
  key: string | undefined;
}

/**
 * The API of the recoup that has the embedded database in DATA_DIR open, if one does and listens:
 * a command that changes data goes through it, since a second process must not open that database.
 * Undefined with Postgres (DATABASE_URL), which any number of processes share.
 */
export function embeddedServerApi(config: Config): ApiTarget | undefined {
  if (config.databaseUrl) return undefined;
  const url = embeddedDatabaseHolder(config.dataDir)?.url;
  return url ? { url, key: localApiKey(config) } : undefined;
}

/**
 * The bootstrap API key this machine has: the first of RECOUP_API_KEYS, else the one `recoup start`
 * generated into DATA_DIR/api-key. Never generates one (a running server would not know it).
 */
export function localApiKey(config: Config): string | undefined {
  if (config.apiKeys) return config.apiKeys[0];
  try {
    return fs.readFileSync(path.join(config.dataDir, 'api-key'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  json?: unknown;
  yaml?: string;
}

/**
 * One call to the API. Refusals become RecoupErrors in one line (with the problem's issues), so a
 * command reports them like its own: unreachable → `unavailable`, 401 → what key to give, else the
 * problem's code and detail.
 */
export async function callApi<T>(target: ApiTarget, request: ApiRequest): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = target.key ? { authorization: `Bearer ${target.key}` } : {};
  let body: string | undefined;
  if (request.yaml !== undefined) {
    headers['content-type'] = 'application/yaml';
    body = request.yaml;
  } else if (request.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(request.json);
  }
  let response: Response;
  try {
    response = await fetch(`${target.url}${request.path}`, { method: request.method, headers, body });
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new RecoupError('unavailable', `cannot reach recoup at ${target.url} (${cause})`, { cause: err });
  }
  const text = await response.text();
  if (response.ok) return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
  const problem = parseProblem(text);
  const detail = problem.detail ?? (text.slice(0, 200) || response.statusText);
  if (response.status === 401) {
    throw new RecoupError(
      'unauthorized',
      `recoup at ${target.url} refused the API key (${detail}): ` +
        (target.key ? 'give one of its keys in RECOUP_API_KEYS' : `none found in RECOUP_API_KEYS or DATA_DIR/api-key`),
    );
  }
  const code = problem.code ?? (response.status >= 500 ? 'internal' : 'validation');
  const message = code === 'validation' ? detail : `recoup at ${target.url} answered ${response.status}: ${detail}`;
  throw new RecoupError(code, message, { issues: problem.issues });
}

function parseProblem(text: string): { code?: ErrorCode; detail?: string; issues: Issue[] } {
  try {
    const problem = JSON.parse(text) as { type?: unknown; detail?: unknown; errors?: unknown };
    const tail = typeof problem.type === 'string' ? problem.type.split('/').pop()?.replace(/-/g, '_') : undefined;
    const code = tail && tail in errorCodes ? (tail as ErrorCode) : undefined;
    const issues = Array.isArray(problem.errors)
      ? problem.errors.filter(
          (i): i is Issue => typeof i?.path === 'string' && typeof (i as { message?: unknown }).message === 'string',
        )
      : [];
    return { code, detail: typeof problem.detail === 'string' ? problem.detail : undefined, issues };
  } catch {
    return { issues: [] };
  }
}
