import type { FastifyInstance } from 'fastify';
import {
  activateCadenceVersion,
  cadenceHistory,
  cadenceOverview,
  cadenceSavers,
  type StoredCadenceVersion,
} from '../cadences/cadence-versions.js';
import { RecoupError } from '../platform/errors.js';
import { actorNames } from './actor-names.js';
import { editorSource, matchSummary, stepsSummary, versionDiff } from './cadence-editor.js';
import { actorOf, cadenceHref, humanDuration, type ConsoleContext } from './console-context.js';
import type { ConsoleFrame } from './console-pages.js';
import { shownTime } from './format.js';

/**
 * The cadences list (`/console/cadences`) and a cadence's history
 * (`/console/cadences/:name/versions`: diffs between versions, activating one).
 */
export function consoleCadenceRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, ops, opsForm, frame, page } = ctx;

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

  app.get<{ Params: { name: string }; Querystring: Record<string, unknown> }>(
    '/console/cadences/:name/versions',
    ops,
    async (request, reply) => {
      const { name } = request.params;
      const versions = await cadenceHistory(deps.db, name);
      if (versions.length === 0) throw new RecoupError('not_found', `No cadence ${name}`);
      const savers = await cadenceSavers(deps.db, name);
      const names = await actorNames(deps.db, [...savers.values()], deps.keys.configured?.() ?? []);
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
}

function limitsSummary(cadence: StoredCadenceVersion['cadence']): string {
  return [
    `expires after ${humanDuration(cadence.expireAfterMs)}`,
    cadence.quietHours ? `quiet ${cadence.quietHours.start}–${cadence.quietHours.end}` : 'no quiet hours',
    cadence.maxMessagesPerDay !== undefined ? `max ${cadence.maxMessagesPerDay}/day` : 'no daily cap',
  ].join(' · ');
}
