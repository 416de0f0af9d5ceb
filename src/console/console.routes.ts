import formbody from '@fastify/formbody';
import type { InFlightWait } from '../messages/in-flight.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { principalActor } from '../access/audit.js';
import type { CadenceBook } from '../cadences/cadence-book.js';
import { cadenceValidationOptions } from '../cadences/cadence-checks.js';
import {
  activateCadenceVersion,
  cadenceHistory,
  cadenceOverview,
  cadenceSavers,
  saveCadenceVersion,
  type StoredCadenceVersion,
} from '../cadences/cadence-versions.js';
import type { PreviewDeps } from '../cadences/preview.js';
import { circuitStates } from '../circuits/gateway-health.js';
import { heldReminderCounts } from '../circuits/circuit-hold.js';
import type { Clock } from '../platform/clock.js';
import {
  editorSource,
  locateIssues,
  matchSummary,
  newCadenceTemplate,
  readCadenceYaml,
  stepsSummary,
  versionDiff,
  type EditorIssue,
} from './cadence-editor.js';
import { actorNames } from './actor-names.js';
import { readSample, runPreview, sampleTimezones, type PreviewSample, type PreviewView } from './cadence-preview.js';
import type { ConsoleFrame, ConsolePageName, ConsolePages, NavSection } from './console-pages.js';
import { masked, money, shownTime } from './format.js';
import { searchOrders } from './order-search.js';
import { loadOrderTimeline } from './order-timeline.js';
import { findStuckOrders } from './stuck-orders.js';
import { listSuppressions, removeSuppression } from './suppression-list.js';
import { previewLocales } from '../cadences/preview.js';
import type { Db } from '../db/client.js';
import { errorCodes, isRecoupError, RecoupError } from '../platform/errors.js';
import type { Logger } from '../platform/logger.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import type { PaymentGateways } from '../payments/gateways.js';
import type { StepQueue } from '../queue/queues.js';
import { restartRecovery, stopRecovery, stoppedByOps } from '../recoveries/ops-actions.js';
import { dashboardData, dashboardStrings, type DashboardLocale } from '../reports/dashboard.js';
import { parseReportQuery } from '../reports/report-query.js';
import { formatAmount } from '../platform/format-amount.js';
import { hasScope } from '../access/auth.js';
import { csrfFieldName, loginPath, type ConsoleSessions } from './console-auth.js';
import { sendProblem, toRecoupError } from '../http/problem.js';

export interface ConsoleRouteDeps {
  db: Db;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  cadences: CadenceBook;
  /** Restarted recoveries get their wake-up here. */
  queue: StepQueue;
  clock: Clock;
  logger: Logger;
  /** build-app's console sessions: the guard, CSRF tokens. */
  sessions: ConsoleSessions;
  /** `ConsolePages.load(path.join(templatesDir, 'console'))`. */
  pages: ConsolePages;
  /** Template catalogue for validation and previews. */
  renderer: TemplateRenderer;
  /** Configured gateways: offered methods are validated against them and their circuits listed. */
  gateways: PaymentGateways | undefined;
  publicUrl: string;
  shopName: string;
  defaultTimezone: string;
  /** STUCK_ORDER_AFTER: pending this long with no recovery is stuck. Default 2 h. */
  stuckOrderAfterMs: number;
}

/** Pages may load recoup's own stylesheet and script, nothing else; forms post to recoup only. */
const csp = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const maxYamlChars = 100_000;

/**
 * The ops console: server-rendered pages, no client build. Every page needs a console session
 * (`requireConsole`): cadences, suppressions and health need `ops`; order pages also let
 * `finance` read (without the stop/restart buttons). Every POST carries the session's CSRF token
 * and answers with a 303 to a page (post/redirect/get), except an editor save with errors, which
 * re-renders the editor (422) with the errors beside it.
 *
 * - `/console/cadences`, `/console/cadences/new`, `/console/cadences/:name` (editor + preview),
 *   `/console/cadences/:name/versions` (history, diffs, activate);
 * - `/console/orders?q=`, `/console/orders/:id` (the order's story), `POST …/stop`, `POST …/restart`;
 * - `/console/suppressions`, `POST /console/suppressions/remove`;
 * - `/console/health`: gateway circuits, held reminders, stuck orders;
 * - `/console/assets/:name`: the pages' stylesheet and script.
 */
export async function consoleRoutes(app: FastifyInstance, deps: ConsoleRouteDeps): Promise<void> {
  await app.register(formbody, { bodyLimit: 4 * maxYamlChars });
  const { sessions, pages } = deps;
  const ops = { onRequest: sessions.requireConsole('ops') };
  const opsForm = { onRequest: sessions.requireConsole('ops'), preHandler: sessions.verifyCsrf };
  const readers = { onRequest: sessions.requireConsole('ops', 'finance') };
  const validation = cadenceValidationOptions({
    renderer: deps.renderer,
    gateways: deps.gateways,
    publicUrl: deps.publicUrl,
    shopName: deps.shopName,
  });
  const previewDeps: PreviewDeps = {
    renderer: deps.renderer,
    publicUrl: deps.publicUrl,
    shopName: deps.shopName,
    defaultTimezone: deps.defaultTimezone,
  };

  const frame = (
    request: FastifyRequest,
    section: NavSection | null,
    title: string,
    notice: ConsoleFrame['notice'] = null,
  ): ConsoleFrame => {
    const principal = request.principal;
    let csrf = '';
    try {
      csrf = principal ? sessions.csrfToken(request) : '';
    } catch {
      // No session was found for this request (an error page before the guard ran).
    }
    return {
      title,
      section,
      who: principal ? { name: principal.name, scopes: principal.scopes.join(', ') } : null,
      csrf,
      // Finance reads the dashboard and orders; ops (and admin) see every section.
      sections: hasScope(principal, ['ops'])
        ? ['dashboard', 'cadences', 'orders', 'suppressions', 'health']
        : principal
          ? ['dashboard', 'orders']
          : [],
      notice,
      lang: 'en',
    };
  };
  const page = (reply: FastifyReply, status: number, name: ConsolePageName, f: ConsoleFrame, data: object) =>
    sendHtml(reply, status, pages.render(name, f, data));

  // Errors on console routes become pages for browsers (a stale form, an order that is gone);
  // scripts still get problem JSON.
  app.setErrorHandler((err, request, reply) => {
    if (!/text\/html/.test(request.headers.accept ?? '')) return sendProblem(request, reply, err);
    const error = toRecoupError(err);
    const status = errorCodes[error.code].status;
    if (status >= 500) request.log.error({ err }, 'console request failed');
    return page(reply, status, 'error', frame(request, null, titles[error.code] ?? 'Something went wrong'), {
      status,
      message: status >= 500 ? `Something went wrong on our side. Quote request id ${request.id}.` : error.message,
      signIn: error.code === 'unauthorized' ? `${loginPath}?next=${encodeURIComponent(backTo(request))}` : null,
      back: backTo(request),
    });
  });

  app.get<{ Params: { name: string } }>(
    '/console/assets/:name',
    { onRequest: sessions.requireConsole() },
    async (request, reply) => {
      const asset = pages.asset(request.params.name);
      if (!asset) throw new RecoupError('not_found', 'No such asset');
      // The URL carries the content hash, so it may be cached for good (by this browser only).
      reply.header('cache-control', 'private, max-age=31536000, immutable').header('etag', asset.etag);
      if (request.headers['if-none-match'] === asset.etag) return reply.status(304).send();
      return reply.type(asset.contentType).header('x-content-type-options', 'nosniff').send(asset.body);
    },
  );

  // ---- Cadences ----

  app.get('/console/cadences', ops, async (request, reply) => {
    const overview = await cadenceOverview(deps.db);
    const cadences = overview.map(({ name, active, latest }) => {
      const shown = active ?? latest;
      return {
        name,
        href: cadenceHref(name),
        versionsHref: `${cadenceHref(name)}/versions`,
        activeVersion: active?.version ?? null,
        latestVersion: latest.version,
        pending: active === undefined || latest.version > active.version ? latest.version : null,
        description: shown.cadence.description ?? null,
        steps: stepsSummary(shown.cadence),
        stepCount: shown.cadence.steps.length,
        match: matchSummary(shown.cadence),
        limits: limitsSummary(shown.cadence),
      };
    });
    return page(reply, 200, 'cadences', frame(request, 'cadences', 'Cadences'), {
      cadences,
      empty: cadences.length === 0,
    });
  });

  app.get<{ Querystring: Record<string, unknown> }>('/console/cadences/new', ops, async (request, reply) => {
    const sample = readSample(request.query, deps.defaultTimezone);
    return page(
      reply,
      200,
      'cadence-editor',
      frame(request, 'cadences', 'New cadence'),
      editorView({
        name: null,
        source: newCadenceTemplate(),
        shown: null,
        versions: [],
        sample,
        issues: [],
        preview: null,
      }),
    );
  });

  app.get<{ Params: { name: string }; Querystring: Record<string, unknown> }>(
    '/console/cadences/:name',
    ops,
    async (request, reply) => {
      const { name } = request.params;
      const versions = await cadenceHistory(deps.db, name);
      if (versions.length === 0) throw new RecoupError('not_found', `No cadence ${name}`);
      const asked = typeof request.query.version === 'string' ? Number(request.query.version) : undefined;
      const shown =
        asked !== undefined
          ? versions.find((v) => v.version === asked)
          : (versions.find((v) => v.active) ?? versions.at(-1));
      if (!shown) throw new RecoupError('not_found', `Cadence ${name} has no version ${String(request.query.version)}`);
      const sample = readSample(request.query, deps.defaultTimezone);
      const preview = runPreview(
        { name, version: shown.version, cadence: shown.cadence },
        sample,
        previewDeps,
        deps.clock.now(),
      );
      const source = editorSource(shown);
      return page(
        reply,
        200,
        'cadence-editor',
        frame(request, 'cadences', `Cadence ${name}`, savedNotice(request.query.saved, shown)),
        editorView({
          name,
          source,
          shown,
          versions,
          sample,
          issues: preview.ok ? [] : locateIssues(source, preview.issues),
          preview: preview.ok ? preview.view : null,
        }),
      );
    },
  );

  const saveFromEditor = async (request: FastifyRequest, reply: FastifyReply, name: string | null) => {
    const body = formFields(request);
    const yaml = body.yaml ?? '';
    const intent = body.intent === 'activate' || body.intent === 'check' ? body.intent : 'save';
    const sample = readSample(body, deps.defaultTimezone);
    const versions = name === null ? [] : await cadenceHistory(deps.db, name);
    const shown = versions.find((v) => v.active) ?? versions.at(-1) ?? null;
    const again = (
      status: number,
      issues: EditorIssue[],
      preview: PreviewView | null,
      notice: ConsoleFrame['notice'],
    ) =>
      page(
        reply,
        status,
        'cadence-editor',
        frame(request, 'cadences', name === null ? 'New cadence' : `Cadence ${name}`, notice),
        editorView({ name, source: yaml, shown, versions, sample, issues, preview, edited: true }),
      );

    if (yaml.length > maxYamlChars) {
      return again(
        422,
        [{ path: '', message: `too long: at most ${maxYamlChars} characters`, line: null, excerpt: null }],
        null,
        null,
      );
    }
    const read = readCadenceYaml(yaml, validation, name ?? undefined);
    if (!read.ok) return again(422, read.issues, null, errorNotice(read.issues.length));
    const preview = runPreview(
      { name: read.cadence.name, version: null, cadence: read.cadence },
      sample,
      previewDeps,
      deps.clock.now(),
    );
    if (!preview.ok) {
      const issues = locateIssues(read.source, preview.issues);
      return again(422, issues, null, errorNotice(issues.length));
    }
    if (intent === 'check') {
      return again(200, [], preview.view, {
        tone: 'info',
        text: 'No errors. Nothing is saved yet: the preview shows the text as it stands.',
      });
    }
    let saved;
    try {
      saved = await saveCadenceVersion(
        deps.db,
        read.cadence,
        { source: read.source, activate: intent === 'activate', mustBeNew: name === null },
        { actor: actorOf(request), at: deps.clock.now() },
      );
    } catch (err) {
      if (!isRecoupError(err, 'conflict')) throw err;
      const issues = locateIssues(read.source, [
        { path: 'name', message: `a cadence named "${read.cadence.name}" exists already; open it to change it` },
      ]);
      return again(422, issues, preview.view, errorNotice(1));
    }
    deps.cadences.invalidate();
    const state = saved.created
      ? saved.activated
        ? 'activated'
        : 'created'
      : saved.activated
        ? 'unchanged-activated'
        : 'unchanged';
    const query = new URLSearchParams({ version: String(saved.version.version), saved: state, ...sampleQuery(sample) });
    return reply.redirect(`${cadenceHref(saved.version.name)}?${query.toString()}`, 303);
  };

  app.post('/console/cadences/new', opsForm, (request, reply) => saveFromEditor(request, reply, null));
  app.post<{ Params: { name: string } }>('/console/cadences/:name', opsForm, (request, reply) =>
    saveFromEditor(request, reply, request.params.name),
  );

  app.get<{ Params: { name: string }; Querystring: Record<string, unknown> }>(
    '/console/cadences/:name/versions',
    ops,
    async (request, reply) => {
      const { name } = request.params;
      const versions = await cadenceHistory(deps.db, name);
      if (versions.length === 0) throw new RecoupError('not_found', `No cadence ${name}`);
      const savers = await cadenceSavers(deps.db, name);
      const names = await actorNames(deps.db, [...savers.values()]);
      const texts = versions.map(editorSource);
      const items = versions
        .map((v, i) => {
          const diff = i === 0 ? [] : versionDiff(texts[i - 1] ?? '', texts[i] ?? '');
          return {
            version: v.version,
            active: v.active,
            createdAt: shownTime(v.createdAt),
            savedBy: ((actor) => (actor ? (names.get(actor) ?? actor) : 'applied from a file'))(savers.get(v.version)),
            description: v.cadence.description ?? null,
            steps: stepsSummary(v.cadence),
            editHref: `${cadenceHref(name)}?version=${v.version}`,
            activateAction: `${cadenceHref(name)}/versions/${v.version}/activate`,
            first: i === 0,
            previous: i === 0 ? null : (versions[i - 1]?.version ?? null),
            diff,
            unchanged: i > 0 && diff.length === 0,
          };
        })
        .reverse();
      const activated = Number(request.query.activated);
      const notice: ConsoleFrame['notice'] =
        Number.isInteger(activated) && activated > 0
          ? {
              tone: 'success',
              text: `Version ${activated} is now active. New recoveries start on it; running ones keep theirs.`,
            }
          : null;
      return page(reply, 200, 'cadence-versions', frame(request, 'cadences', `${name}: versions`, notice), {
        name,
        editHref: cadenceHref(name),
        versions: items,
      });
    },
  );

  app.post<{ Params: { name: string; version: string } }>(
    '/console/cadences/:name/versions/:version/activate',
    opsForm,
    async (request, reply) => {
      const { name } = request.params;
      const version = /^[1-9]\d{0,8}$/.test(request.params.version) ? Number(request.params.version) : undefined;
      if (version === undefined)
        throw new RecoupError('not_found', `Cadence ${name} has no version ${request.params.version}`);
      await activateCadenceVersion(deps.db, name, version, { actor: actorOf(request), at: deps.clock.now() });
      deps.cadences.invalidate();
      return reply.redirect(`${cadenceHref(name)}/versions?activated=${version}`, 303);
    },
  );

  // ---- Orders ----

  app.get<{ Querystring: Record<string, unknown> }>('/console/orders', readers, async (request, reply) => {
    const q = typeof request.query.q === 'string' ? request.query.q.trim().slice(0, 254) : '';
    const hits = await searchOrders(deps.db, q);
    return page(reply, 200, 'orders', frame(request, 'orders', q ? `Orders: ${q}` : 'Orders'), {
      q,
      searched: q !== '',
      orders: hits.map((o) => ({
        id: o.id,
        href: orderHref(o.id),
        customerId: o.customerId,
        email: masked(o.email),
        phone: masked(o.phone),
        status: o.status,
        amount: money(o.amount, o.currency),
        recovery: o.recoveryState,
        createdAt: shownTime(o.createdAt),
      })),
    });
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/console/orders/:id',
    readers,
    async (request, reply) => {
      const timeline = await loadOrderTimeline(deps.db, request.params.id, deps.publicUrl);
      if (!timeline) throw new RecoupError('not_found', `No order ${request.params.id}`);
      const { view, customer } = timeline;
      const tz = customer?.timezone ?? null;
      const recovery = view.recovery;
      const canAct = hasScope(request.principal, ['ops']);
      const done = request.query.done;
      const notice: ConsoleFrame['notice'] =
        done === 'stopped'
          ? { tone: 'success', text: 'Recovery stopped: nothing more goes out and its retry links no longer work.' }
          : done === 'restarted'
            ? { tone: 'success', text: 'Recovery restarted from its current step.' }
            : null;
      return page(reply, 200, 'order', frame(request, 'orders', `Order ${view.order.id}`, notice), {
        order: {
          id: view.order.id,
          status: view.order.status,
          amount: money(view.order.amount, view.order.currency),
          description: view.order.description,
          coupon: view.order.coupon_code,
          lastFailure: view.order.last_failure
            ? [view.order.last_failure.code, view.order.last_failure.category].filter(Boolean).join(' · ')
            : null,
          createdAt: shownTime(new Date(view.order.created_at), tz),
          paidAt: shownTime(view.order.paid_at ? new Date(view.order.paid_at) : null, tz),
        },
        customer: customer
          ? {
              id: customer.id,
              href: `/console/orders?q=${encodeURIComponent(customer.id)}`,
              name: customer.name,
              email: customer.email,
              phone: customer.phone,
              locale: customer.locale,
              timezone: customer.timezone,
              bad:
                [
                  customer.emailBadReason ? `email: ${customer.emailBadReason}` : null,
                  customer.phoneBadReason ? `phone: ${customer.phoneBadReason}` : null,
                ]
                  .filter(Boolean)
                  .join(' · ') || null,
              forgotten: customer.forgottenAt !== null,
            }
          : null,
        recovery: recovery
          ? {
              id: recovery.id,
              state: recovery.state,
              cadence: recovery.cadence,
              cadenceHref: `${cadenceHref(recovery.cadence)}?version=${recovery.cadence_version}`,
              version: recovery.cadence_version,
              category: recovery.failure_category,
              step: recovery.step,
              nextRun: shownTime(recovery.next_run_at ? new Date(recovery.next_run_at) : null, tz),
              expires: shownTime(new Date(recovery.expires_at), tz),
              endedReason: recovery.ended_reason,
              holdout: recovery.holdout,
              stopAction: canAct && recovery.state === 'active' ? `${orderHref(view.order.id)}/stop` : null,
              restartAction:
                canAct &&
                recovery.state === 'stopped' &&
                view.order.status === 'pending' &&
                recovery.ended_reason !== 'customer_forgotten'
                  ? `${orderHref(view.order.id)}/restart`
                  : null,
              stoppedByOps: recovery.ended_reason === stoppedByOps,
            }
          : null,
        entries: timeline.entries.map((e) => ({ ...e, time: shownTime(e.at, tz) })),
        readOnly: !canAct,
      });
    },
  );

  app.post<{ Params: { id: string } }>('/console/orders/:id/stop', opsForm, async (request, reply) => {
    const result = await stopRecovery(
      deps.db,
      request.params.id,
      { actor: actorOf(request), at: deps.clock.now() },
      deps.inFlightWait,
    );
    const pending = result.pendingWakeup;
    // Only tidies the queue: the wake-up would find the recovery stopped and do nothing.
    if (pending) deps.queue.remove(pending.recoveryId, pending.wakeSeq).catch(() => undefined);
    request.log.info({ recoveryId: result.recoveryId }, 'recovery stopped by ops');
    return reply.redirect(`${orderHref(request.params.id)}?done=stopped`, 303);
  });

  app.post<{ Params: { id: string } }>('/console/orders/:id/restart', opsForm, async (request, reply) => {
    const now = deps.clock.now();
    const result = await restartRecovery(deps.db, request.params.id, { actor: actorOf(request), at: now });
    try {
      await deps.queue.add([result.wakeup], now);
    } catch (err) {
      // Committed already: the reconciler re-creates wake-ups that are overdue and missing.
      request.log.warn(
        { err, recoveryId: result.recoveryId },
        'could not queue the restarted recovery; the reconciler will',
      );
    }
    request.log.info({ recoveryId: result.recoveryId, step: result.step }, 'recovery restarted by ops');
    return reply.redirect(`${orderHref(request.params.id)}?done=restarted`, 303);
  });

  // ---- Suppressions ----

  app.get<{ Querystring: Record<string, unknown> }>('/console/suppressions', ops, async (request, reply) => {
    const q = typeof request.query.q === 'string' ? request.query.q.trim().slice(0, 254) : '';
    const list = await listSuppressions(deps.db, { q, limit: 200 });
    const removed = request.query.removed;
    const notice: ConsoleFrame['notice'] =
      removed === 'sms' || removed === 'email'
        ? {
            tone: 'success',
            text: `Removed: the ${removed === 'sms' ? 'number' : 'address'} gets reminders again (recorded as an opt-in by ops).`,
          }
        : null;
    return page(reply, 200, 'suppressions', frame(request, 'suppressions', 'Suppressions', notice), {
      q,
      total: list.total,
      shown: list.rows.length,
      more: list.total > list.rows.length,
      suppressions: list.rows.map((s) => ({
        ...s,
        channel: s.channel === 'sms' ? 'SMS' : 'email',
        createdAt: shownTime(s.createdAt),
      })),
    });
  });

  app.post('/console/suppressions/remove', opsForm, async (request, reply) => {
    const ref = formFields(request).ref ?? '';
    const removed = await removeSuppression(deps.db, ref, { actor: actorOf(request), at: deps.clock.now() });
    return reply.redirect(`/console/suppressions?removed=${removed.channel}`, 303);
  });

  // ---- Dashboard (finance and ops) ----

  app.get<{ Querystring: Record<string, string | undefined> }>('/dashboard', readers, async (request, reply) => {
    const { lang, ...rest } = request.query;
    const locale: DashboardLocale =
      lang === 'zh-CN' || (!lang && /^zh\b/i.test(request.headers['accept-language'] ?? '')) ? 'zh-CN' : 'en';
    const now = deps.clock.now();
    const query = parseReportQuery({ ...rest, group_by: undefined, format: undefined }, now);
    const data = await dashboardData(deps.db, query, now);
    const t = dashboardStrings[locale];
    const params = (extra: Record<string, string>) =>
      new URLSearchParams({
        from: query.from,
        to: query.to,
        tz: query.timezone,
        ...(data.currency ? { currency: data.currency } : {}),
        ...extra,
      }).toString();
    const f = { ...frame(request, 'dashboard', t.title ?? 'Dashboard'), lang: locale };
    return page(reply, 200, 'dashboard', f, {
      t,
      query: { from: query.from, to: query.to, timezone: query.timezone },
      currencies: data.currencies.map((c) => ({ code: c, selected: c === data.currency })),
      currency: data.currency,
      csvHref: `/v1/reports/recovery?${params({ format: 'csv', group_by: 'day' })}`,
      otherLanguageHref: `/dashboard?${params({ lang: locale === 'en' ? 'zh-CN' : 'en' })}`,
      lang: locale,
      otherLang: locale === 'en' ? 'zh-CN' : 'en',
      days: data.days.map((d) => ({
        ...d,
        money: Object.fromEntries(
          (
            [
              'recovered_amount',
              'refunded_amount',
              'incentive_amount',
              'net_recovered_amount',
              'organic_amount',
            ] as const
          ).map((k) => [k, formatAmount(d[k], d.currency, locale)]),
        ),
        ratePercent: d.recovery_rate === null ? '–' : `${(d.recovery_rate * 100).toFixed(1)}%`,
        costText:
          d.cost_amount === null || !d.cost_currency ? '–' : formatAmount(d.cost_amount, d.cost_currency, locale),
        medianText: d.median_minutes_to_recovery ?? '–',
      })),
      holdout:
        data.holdout && data.holdout.control.orders > 0 && data.currency
          ? {
              ...data.holdout,
              differenceText: percentagePoints(data.holdout.rate_difference),
              intervalText: data.holdout.ci95
                ? `[${percentagePoints(data.holdout.ci95[0])}, ${percentagePoints(data.holdout.ci95[1])}]`
                : '–',
              incrementalText:
                data.holdout.incremental_amount === null
                  ? '–'
                  : formatAmount(data.holdout.incremental_amount, data.currency, locale),
            }
          : null,
      // Charts read this (an attribute, so the browser decodes it; no inline script under the CSP).
      chartData: JSON.stringify({ ...data, strings: t, lang: locale }),
    });
  });

  // ---- Health ----

  app.get('/console/health', ops, async (request, reply) => {
    const now = deps.clock.now();
    const [circuits, held, stuck] = await Promise.all([
      circuitStates(deps.db, deps.gateways?.all().map((g) => g.name) ?? []),
      heldReminderCounts(deps.db),
      findStuckOrders(deps.db, { now, olderThanMs: deps.stuckOrderAfterMs, limit: 100 }),
    ]);
    return page(reply, 200, 'health', frame(request, 'health', 'Health'), {
      circuits: circuits.map((c) => ({
        gateway: c.gateway,
        open: c.state === 'open',
        state: c.state,
        reason: c.reason,
        openedAt: shownTime(c.openedAt),
        closedAt: shownTime(c.closedAt),
      })),
      anyOpen: circuits.some((c) => c.state === 'open'),
      noGateways: circuits.length === 0,
      held,
      stuck: {
        total: stuck.total,
        threshold: humanDuration(deps.stuckOrderAfterMs),
        more: stuck.total > stuck.orders.length,
        orders: stuck.orders.map((o) => ({
          id: o.id,
          href: orderHref(o.id),
          customerId: o.customerId,
          amount: money(o.amount, o.currency),
          createdAt: shownTime(o.createdAt),
          age: humanDuration(now.getTime() - o.createdAt.getTime()),
          lastEvent: o.lastEventType ? `${o.lastEventType} (${o.lastEventOutcome ?? '?'})` : 'none',
          hint: stuckHint(o.lastEventType, o.requestedCadence),
        })),
      },
    });
  });

  interface EditorInput {
    /** Null for a new cadence. */
    name: string | null;
    source: string;
    /** The stored version the editor started from. */
    shown: StoredCadenceVersion | null;
    versions: StoredCadenceVersion[];
    sample: PreviewSample;
    issues: EditorIssue[];
    preview: PreviewView | null;
    /** The text is what was posted, not a stored version. */
    edited?: boolean;
  }

  function editorView(input: EditorInput) {
    const { name, shown, versions, sample } = input;
    const active = versions.find((v) => v.active) ?? null;
    const latest = versions.at(-1) ?? null;
    const href = name === null ? '/console/cadences/new' : cadenceHref(name);
    return {
      name,
      isNew: name === null,
      formAction: href,
      versionsHref: name === null ? null : `${href}/versions`,
      source: input.source,
      issues: input.issues,
      hasIssues: input.issues.length > 0,
      issueHeading: `${input.issues.length === 1 ? 'One error' : `${input.issues.length} errors`}: not saved`,
      shown: shown
        ? {
            version: shown.version,
            active: shown.active,
            createdAt: shownTime(shown.createdAt),
            edited: input.edited === true,
          }
        : null,
      activeVersion: active?.version ?? null,
      // Looking at something other than what new recoveries use: say so above the editor.
      offActive: shown !== null && !shown.active && input.edited !== true,
      newerVersion: latest && shown && latest.version > shown.version ? latest.version : null,
      preview: input.preview,
      sample: {
        ...sample,
        timezones: [...new Set([sample.timezone, deps.defaultTimezone, ...sampleTimezones])].map((tz) => ({
          value: tz,
          selected: tz === sample.timezone,
        })),
        locales: ['both', ...previewLocales].map((l) => ({
          value: l,
          label: l === 'both' ? 'en and zh-CN' : l,
          selected: l === sample.locale,
        })),
      },
    };
  }
}

const titles: Partial<Record<keyof typeof errorCodes, string>> = {
  validation: 'Not accepted',
  unauthorized: 'Signed out',
  forbidden: 'Not allowed',
  not_found: 'Not found',
  conflict: 'Not possible now',
  payload_too_large: 'Too large',
};

function sendHtml(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply
    .status(status)
    .header('content-security-policy', csp)
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .type('text/html; charset=utf-8')
    .send(html);
}

function cadenceHref(name: string): string {
  return `/console/cadences/${encodeURIComponent(name)}`;
}

function orderHref(id: string): string {
  return `/console/orders/${encodeURIComponent(id)}`;
}

function actorOf(request: FastifyRequest): string {
  if (!request.principal) throw new RecoupError('unauthorized', 'No console session');
  return principalActor(request.principal);
}

/** The string fields of a form body (repeated fields: the last one). */
function formFields(request: FastifyRequest): Record<string, string | undefined> {
  const body = request.body;
  if (typeof body !== 'object' || body === null) return {};
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    if (key === csrfFieldName) continue;
    const last: unknown = Array.isArray(value) ? value.at(-1) : value;
    if (typeof last === 'string') out[key] = last;
  }
  return out;
}

function sampleQuery(sample: PreviewSample): Record<string, string> {
  return { tz: sample.timezone, locale: sample.locale, ...(sample.start ? { start: sample.start } : {}) };
}

/** A rate difference as signed percentage points: `+12.5 pp`. */
function percentagePoints(value: number | null): string {
  if (value === null) return '–';
  return `${value > 0 ? '+' : ''}${(value * 100).toFixed(1)} pp`;
}

function savedNotice(saved: unknown, shown: StoredCadenceVersion): ConsoleFrame['notice'] {
  const v = shown.version;
  switch (saved) {
    case 'created':
      return {
        tone: 'success',
        text: `Saved as version ${v}. It is not active: activate it when the preview looks right.`,
      };
    case 'activated':
      return { tone: 'success', text: `Saved as version ${v} and activated: new recoveries start on it.` };
    case 'unchanged':
      return { tone: 'info', text: `Nothing changed: version ${v} already holds this definition.` };
    case 'unchanged-activated':
      return { tone: 'success', text: `Nothing changed, and version ${v} is now active.` };
    default:
      return null;
  }
}

function errorNotice(count: number): ConsoleFrame['notice'] {
  return {
    tone: 'error',
    text: `Not saved: ${count === 1 ? 'one error' : `${count} errors`} to fix (listed above the text).`,
  };
}

function limitsSummary(cadence: StoredCadenceVersion['cadence']): string {
  return [
    `expires after ${humanDuration(cadence.expireAfterMs)}`,
    cadence.quietHours ? `quiet ${cadence.quietHours.start}–${cadence.quietHours.end}` : 'no quiet hours',
    cadence.maxMessagesPerDay !== undefined ? `max ${cadence.maxMessagesPerDay}/day` : 'no daily cap',
  ].join(' · ');
}

function humanDuration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
  return `${Math.floor(hours / 24)} days`;
}

function stuckHint(lastEvent: string | null, requestedCadence: string | null): string {
  if (lastEvent === 'order.created') return 'no payment.failed event arrived (and the abandon check did not start one)';
  if (lastEvent === 'payment.failed') {
    return requestedCadence
      ? `asked for cadence "${requestedCadence}": does it exist and match?`
      : 'no cadence matched';
  }
  return 'check the shop’s events';
}

/** Where "back" goes from an error page: the referring console page, else the console's start. */
function backTo(request: FastifyRequest): string {
  const url = request.url.split('?')[0] ?? '/console';
  if (request.method === 'GET') return url;
  // A POST's page: the order or cadence it was about.
  const match = /^\/console\/(orders|cadences)\/[^/]+/.exec(url);
  return match?.[0] ?? '/console/cadences';
}
