import type { FastifySchema } from 'fastify';

/** The pieces the route documentation of src/app/openapi.ts and src/app/openapi-webhooks.ts is built from. */

export type Doc = FastifySchema & {
  summary: string;
  description?: string;
  tags: string[];
  security?: Array<Record<string, string[]>>;
  consumes?: string[];
  hide?: boolean;
};

export const bearer: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { consoleSession: [] }];

export const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } },
});
export const json = (description: string, schema: Record<string, unknown>) => ({
  description,
  content: { 'application/json': { schema } },
});
export const authProblems = {
  401: problem('No credentials, or an unknown or revoked key'),
  403: problem('The key lacks the scope'),
};

export const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });
export const text = { type: 'string' };
export const integer = { type: 'integer' };
export const timestamp = { type: 'string', format: 'date-time' };
