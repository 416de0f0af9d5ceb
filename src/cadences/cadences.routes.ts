import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { principalActor } from '../access/audit.js';
import type { Cadence } from './cadence.js';
import type { CadenceBook } from './cadence-book.js';
import { cadenceValidationOptions, type OfferedMethods } from './cadence-checks.js';
import {
  activateCadenceVersion,
  cadenceHistory,
  cadenceOverview,
  cadenceSavers,
  currentCadenceVersion,
  saveCadenceVersion,
  storedCadenceVersion,
  type CadenceChange,
  type StoredCadenceVersion,
} from './cadence-versions.js';
import { migrateRecoveries } from './migrate-recoveries.js';
import { cadenceToDocument, validateCadence, yamlToData } from './parse-cadence.js';
import { previewCadence, type PreviewOrder } from './preview.js';
import { loadPreviewOrder } from './preview-order.js';
import { sendTestStep } from './test-send.js';
import type { EmailSender } from '../channels/email-sender.js';
import type { SmsSender } from '../channels/sms-sender.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { failureCategories, type FailureCategory } from '../domain/vocabulary.js';
import { RecoupError, validationError, zodIssues, type Issue } from '../platform/errors.js';
import type { Logger } from '../platform/logger.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import { eventSchema } from '../domain/event-schema.js';
import type { StepQueue } from '../queue/queues.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { requireJson } from '../http/request.js';

export interface CadenceRouteDeps {
  db: Db;
  cadences: CadenceBook;
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  keys: KeyResolver;
  renderer: TemplateRenderer;
  /** The configured gateways: offered methods are checked against them. Undefined: not checked. */
  gateways: OfferedMethods | undefined;
  /** The service's own transports: test sends go out exactly as customer messages do. */
  sms: SmsSender;
  email: EmailSender;
  publicUrl: string;
  shopName: string;
  defaultTimezone: string;
  defaultLocale: string;
  /** STEP_MIN_GAP, for previews. Default defaultStepMinGapMs. */
  stepMinGapMs?: number | undefined;
}

/** Body types a cadence may be sent as besides JSON. */
const yamlTypes = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

const versionNumber = z.number('must be a version number').int('must be a whole number').min(1, 'must be 1 or more');
const activateBody = z.strictObject({ version: versionNumber });
const migrateBody = z.strictObject({ from_version: versionNumber, to_version: versionNumber });
const previewBody = z
  .strictObject({
    order: eventSchema.shape.order.unwrap().optional(),
    order_id: z.string().trim().min(1, 'must not be empty').max(200).optional(),
    version: versionNumber.optional(),
    start_at: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 timestamp with a timezone' }).optional(),
    failure_category: z.enum(failureCategories, `must be one of ${failureCategories.join(', ')}`).optional(),
  })
  .refine((b) => (b.order === undefined) !== (b.order_id === undefined), {
    path: ['order'],
    message: 'give either order (the event order shape) or order_id',
  });
const testSendBody = z.strictObject({
  to: z.string('must be an E.164 phone number or an email address').trim().min(1, 'must not be empty'),
  step: z.number().int('must be a whole number').min(0, 'must be 0 or more').default(0),
  locale: z
    .string()
    .regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/, 'must be a BCP 47 locale such as en or zh-CN')
    .optional(),
  version: versionNumber.optional(),
  failure_category: z.enum(failureCategories, `must be one of ${failureCategories.join(', ')}`).optional(),
});

/**
 * Cadence management (scope `ops`; admin implied): versions are immutable, every save makes a new
 * one, recoveries keep the version they started on unless migrated. Saves and activations are
 * audited with the caller as actor. Bodies of saves are YAML (`application/yaml`, `text/yaml`) or
 * JSON, one cadence each; the other routes take JSON.
 */
export async function cadenceRoutes(app: FastifyInstance, deps: CadenceRouteDeps): Promise<void> {
  const ops = { onRequest: requireScope(deps.keys, 'ops') };
  const validation = cadenceValidationOptions({
    renderer: deps.renderer,
    gateways: deps.gateways,
    publicUrl: deps.publicUrl,
    shopName: deps.shopName,
  });
  // This scope only: YAML arrives as text and is parsed (with paths for its errors) below.
  app.addContentTypeParser(yamlTypes, { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.get('/v1/cadences', ops, async () => ({
    cadences: (await cadenceOverview(deps.db)).map(({ name, active, latest }) => ({
      name,
      active_version: active?.version ?? null,
      latest_version: latest.version,
      active: active ? versionView(active) : null,
      latest: versionView(latest),
    })),
  }));

  app.post<{ Querystring: Record<string, unknown> }>('/v1/cadences', ops, async (request, reply) => {
    const { cadence, source } = readCadence(request, validation);
    const saved = await saveCadenceVersion(
      deps.db,
      cadence,
      { source, activate: activateFlag(request.query), mustBeNew: true },
      change(request, deps.clock),
    );
    deps.cadences.invalidate();
    return reply.status(201).send(saveView(saved));
  });

  app.get<{ Params: { name: string } }>('/v1/cadences/:name', ops, async (request) => {
    const versions = await cadenceHistory(deps.db, request.params.name);
    if (versions.length === 0) throw new RecoupError('not_found', `No cadence ${request.params.name}`);
    const savers = await cadenceSavers(deps.db, request.params.name);
    const active = versions.find((v) => v.active);
    return {
      name: request.params.name,
      active_version: active?.version ?? null,
      latest_version: versions.at(-1)?.version ?? null,
      active: active ? versionView(active) : null,
      versions: versions.map((v) => ({
        version: v.version,
        active: v.active,
        created_at: v.createdAt.toISOString(),
        saved_by: savers.get(v.version) ?? null,
        description: v.cadence.description ?? null,
        steps: v.cadence.steps.length,
      })),
    };
  });

  app.get<{ Params: { name: string; version: string } }>('/v1/cadences/:name/versions/:version', ops, async (request) =>
    versionView(await findVersion(deps.db, request.params.name, request.params.version)),
  );

  app.put<{ Params: { name: string }; Querystring: Record<string, unknown> }>(
    '/v1/cadences/:name',
    ops,
    async (request, reply) => {
      const { cadence, source } = readCadence(request, validation, request.params.name);
      const saved = await saveCadenceVersion(
        deps.db,
        cadence,
        { source, activate: activateFlag(request.query) },
        change(request, deps.clock),
      );
      deps.cadences.invalidate();
      return reply.status(saved.created ? 201 : 200).send(saveView(saved));
    },
  );

  app.post<{ Params: { name: string } }>('/v1/cadences/:name/activate', ops, async (request) => {
    const body = parseJson(request, activateBody);
    const result = await activateCadenceVersion(
      deps.db,
      request.params.name,
      body.version,
      change(request, deps.clock),
    );
    deps.cadences.invalidate();
    return { ...versionView(result.version), changed: result.changed, previous_active: result.previousActive };
  });

  app.post<{ Params: { name: string } }>('/v1/cadences/:name/migrate', ops, async (request) => {
    const body = parseJson(request, migrateBody);
    const result = await migrateRecoveries(
      deps.db,
      { name: request.params.name, fromVersion: body.from_version, toVersion: body.to_version },
      change(request, deps.clock),
    );
    try {
      await deps.queue.add(result.wakeups, deps.clock.now());
    } catch (err) {
      // Committed already: the reconciler re-creates wake-ups that are overdue and missing.
      request.log.warn({ err }, 'could not queue wake-ups of migrated recoveries; the reconciler will');
    }
    return {
      cadence: request.params.name,
      from_version: body.from_version,
      to_version: body.to_version,
      moved: result.moved,
      to_expiry: result.toExpiry,
    };
  });

  app.post<{ Params: { name: string } }>('/v1/cadences/:name/preview', ops, async (request) => {
    const body = parseJson(request, previewBody);
    const version = await versionOrCurrent(deps.db, request.params.name, body.version);
    const startAt = body.start_at ? new Date(body.start_at) : deps.clock.now();
    let order: PreviewOrder;
    let stored: Awaited<ReturnType<typeof loadPreviewOrder>>;
    if (body.order_id !== undefined) {
      stored = await loadPreviewOrder(deps.db, body.order_id, startAt);
      if (!stored) throw new RecoupError('not_found', `No order ${body.order_id}`);
      order = stored.order;
    } else if (body.order) {
      order = {
        id: body.order.id,
        amount: body.order.amount,
        currency: body.order.currency,
        description: body.order.description,
        couponCode: body.order.coupon_code ?? body.order.coupon?.code,
        items: body.order.items,
        customer: body.order.customer,
      };
    } else {
      throw validationError([{ path: 'order', message: 'give either order or order_id' }]);
    }
    return previewCadence(
      {
        name: version.name,
        version: version.version,
        cadence: version.cadence,
        order,
        startAt,
        failureCategory: body.failure_category ?? stored?.failureCategory ?? defaultCategory(version.cadence),
        recentSends: stored?.recentSends,
        addressSends: stored?.addressSends,
        suppressed: stored?.suppressed,
      },
      deps,
    );
  });

  app.post<{ Params: { name: string } }>('/v1/cadences/:name/test-send', ops, async (request) => {
    const body = parseJson(request, testSendBody);
    const version = await versionOrCurrent(deps.db, request.params.name, body.version);
    const result = await sendTestStep(
      deps,
      {
        version,
        step: body.step,
        to: body.to,
        locale: body.locale ?? deps.defaultLocale,
        failureCategory: body.failure_category,
      },
      change(request, deps.clock),
    );
    return {
      provider_id: result.providerId,
      channel: result.channel,
      locale: result.locale,
      version: version.version,
      step: body.step,
    };
  });
}

/**
 * The one cadence in a save's body, validated with every check. YAML comes as text (its own parser
 * in this scope), JSON as an object. With `expectedName`, the body's name must match the path.
 */
function readCadence(
  request: FastifyRequest,
  options: ReturnType<typeof cadenceValidationOptions>,
  expectedName?: string,
): { cadence: Cadence; source: string } {
  const type = request.headers['content-type'] ?? '';
  let raw: unknown;
  let source: string;
  if (typeof request.body === 'string' && yamlTypes.some((t) => type.toLowerCase().startsWith(t))) {
    raw = readYaml(request.body);
    source = request.body;
  } else {
    requireJson(request);
    raw = request.body;
    source = `${JSON.stringify(raw, null, 2)}\n`;
  }
  if (Array.isArray(raw)) {
    throw validationError([{ path: '', message: 'send one cadence (a mapping), not a list' }], 'Invalid cadence');
  }
  const nameIssue: Issue[] =
    expectedName !== undefined &&
    typeof raw === 'object' &&
    raw !== null &&
    (raw as Record<string, unknown>).name !== expectedName
      ? [{ path: 'name', message: `must be "${expectedName}", the cadence in the path` }]
      : [];
  try {
    const cadence = validateCadence(raw, options);
    if (nameIssue.length > 0) throw validationError(nameIssue, 'Invalid cadence');
    return { cadence, source };
  } catch (err) {
    if (err instanceof RecoupError && err.code === 'validation' && nameIssue.length > 0) {
      const issues = err.issues.some((i) => i.path === 'name') ? err.issues : [...err.issues, ...nameIssue];
      throw validationError(issues, 'Invalid cadence');
    }
    throw err;
  }
}

/** One YAML document's content; syntax errors and empty or multi-document bodies are `validation` errors. */
function readYaml(text: string): unknown {
  const parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const docs = Array.isArray(parsed) ? parsed : [];
  const errors = docs.flatMap((d) => d.errors);
  if (errors.length > 0) {
    throw validationError(
      errors.map((e) => ({
        path: '',
        message: `YAML syntax error: ${(e.message.split('\n')[0] ?? '').replace(/:$/, '')}`,
      })),
      'Invalid cadence',
    );
  }
  const contents = docs.map((doc) => yamlToData(doc, 'Invalid cadence')).filter((c) => c !== null && c !== undefined);
  if (contents.length === 0) throw validationError([{ path: '', message: 'the body is empty; send one cadence' }]);
  if (contents.length > 1) {
    throw validationError([{ path: '', message: 'send one cadence per request, not several YAML documents' }]);
  }
  return contents[0];
}

function parseJson<T extends z.ZodType>(request: FastifyRequest, schema: T): z.output<T> {
  requireJson(request);
  if (typeof request.body !== 'object' || request.body === null || Array.isArray(request.body)) {
    throw validationError([{ path: '(body)', message: 'must be a JSON object' }]);
  }
  const parsed = schema.safeParse(request.body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  return parsed.data;
}

/** `?activate=false` saves without activating; absent or `true` activates. */
function activateFlag(query: Record<string, unknown>): boolean {
  const value = query.activate;
  if (value === undefined || value === 'true') return true;
  if (value === 'false') return false;
  throw validationError([{ path: 'activate', message: 'must be true or false' }]);
}

async function findVersion(db: Db, name: string, version: string): Promise<StoredCadenceVersion> {
  const number = /^[1-9]\d{0,8}$/.test(version) ? Number(version) : undefined;
  const found = number === undefined ? undefined : await storedCadenceVersion(db, name, number);
  if (!found) throw new RecoupError('not_found', `Cadence ${name} has no version ${version}`);
  return found;
}

/** The asked version, else the active one, else the latest. */
async function versionOrCurrent(db: Db, name: string, version: number | undefined): Promise<StoredCadenceVersion> {
  if (version !== undefined) return findVersion(db, name, String(version));
  const found = await currentCadenceVersion(db, name);
  if (!found) throw new RecoupError('not_found', `No cadence ${name}`);
  return found;
}

/** A category the cadence names, else `unknown` (which every `any` cadence handles). */
function defaultCategory(cadence: Cadence): FailureCategory {
  return cadence.match.failureCategories.find((c): c is FailureCategory => c !== 'any') ?? 'unknown';
}

function change(request: FastifyRequest, clock: Clock): CadenceChange {
  if (!request.principal) throw new RecoupError('unauthorized', 'No caller');
  return { actor: principalActor(request.principal), at: clock.now() };
}

function versionView(v: StoredCadenceVersion) {
  return {
    name: v.name,
    version: v.version,
    active: v.active,
    created_at: v.createdAt.toISOString(),
    definition: cadenceToDocument(v.cadence),
    source: v.source,
  };
}

function saveView(saved: Awaited<ReturnType<typeof saveCadenceVersion>>) {
  return {
    ...versionView(saved.version),
    created: saved.created,
    activated: saved.activated,
    previous_active: saved.previousActive,
  };
}
