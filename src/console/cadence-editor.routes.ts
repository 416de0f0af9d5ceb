import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cadenceValidationOptions } from '../cadences/cadence-checks.js';
import { cadenceHistory, saveCadenceVersion } from '../cadences/cadence-versions.js';
import type { PreviewDeps } from '../cadences/preview.js';
import { isRecoupError, RecoupError } from '../platform/errors.js';
import { editorSource, locateIssues, newCadenceTemplate, readCadenceYaml, type EditorIssue } from './cadence-editor.js';
import { editorView, errorNotice, savedNotice } from './cadence-editor-view.js';
import { readSample, runPreview, type PreviewSample, type PreviewView } from './cadence-preview.js';
import { actorOf, cadenceHref, formFields, type ConsoleContext } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';

/** The longest cadence text the editor accepts. */
export const maxYamlChars = 100_000;

/**
 * The cadence editor: `/console/cadences/new` and `/console/cadences/:name` show the text with a
 * preview; posting checks it, saves it as a new version, or saves and activates it.
 */
export function consoleCadenceEditorRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, ops, opsForm, frame, page } = ctx;
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
    stepMinGapMs: deps.stepMinGapMs,
  };

  app.get<{ Querystring: Record<string, unknown> }>('/console/cadences/new', ops, async (request, reply) => {
    const sample = readSample(request.query, deps.defaultTimezone);
    return page(
      reply,
      200,
      'cadence-editor',
      frame(request, 'cadences', 'New cadence'),
      editorView(
        {
          name: null,
          source: newCadenceTemplate(),
          shown: null,
          versions: [],
          sample,
          issues: [],
          preview: null,
        },
        deps.defaultTimezone,
      ),
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
        editorView(
          {
            name,
            source,
            shown,
            versions,
            sample,
            issues: preview.ok ? [] : locateIssues(source, preview.issues),
            preview: preview.ok ? preview.view : null,
          },
          deps.defaultTimezone,
        ),
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
        editorView(
          { name, source: yaml, shown, versions, sample, issues, preview, edited: true },
          deps.defaultTimezone,
        ),
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
}

function sampleQuery(sample: PreviewSample): Record<string, string> {
  return { tz: sample.timezone, locale: sample.locale, ...(sample.start ? { start: sample.start } : {}) };
}
