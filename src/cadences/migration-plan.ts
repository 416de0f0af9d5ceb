/** A step message of a recovery, as a cadence migration sees it. */
export interface StepMessage {
  id: string;
  /** Its step in the version the recovery is leaving. */
  step: number;
  template: string;
  status: string;
}

/** Where a recovery stands on the version it moves to. */
export interface MigrationPlan {
  /** The new version's step to run next; the step count when every step is done (then: expiry). */
  stepIndex: number;
  /** Each step message's step in the new version, by message id (only the ones that change). */
  renumber: Map<string, number>;
  /** The deferred message that now stands for the step at `stepIndex`, taking its template. */
  deferred?: { id: string; template: string };
  /** Deferred messages the new version has nothing left for: recorded as skipped. */
  dropped: string[];
}

/**
 * Maps a recovery's step messages onto a new version of its cadence by template, not by index,
 * so that reordering steps never sends a template twice. Every decided message (received, or failed,
 * skipped or suppressed, which the dispatcher never retries either) takes the first step of the new
 * version with its template that no earlier message took; messages whose template the new version
 * no longer has (or has fewer times) go past its last step, where the dispatcher never looks. The
 * recovery continues at the first step no message took. A template used twice in a cadence counts
 * twice: one `nudge` sent leaves the second `nudge` step to run, as it did when mapping by index.
 *
 * A deferred (`scheduled`) message was never sent: it moves to the step the recovery continues at
 * and takes its template, or is dropped when the recovery has no step left.
 */
export function planMigration(messages: readonly StepMessage[], templates: readonly string[]): MigrationPlan {
  const byOldStep = [...messages].sort((a, b) => a.step - b.step);
  const taken: Array<StepMessage | undefined> = templates.map(() => undefined);
  const beyond: StepMessage[] = [];
  const deferred: StepMessage[] = [];
  for (const message of byOldStep) {
    if (message.status === 'scheduled') {
      deferred.push(message);
      continue;
    }
    const slot = templates.findIndex((template, i) => template === message.template && !taken[i]);
    if (slot === -1) beyond.push(message);
    else taken[slot] = message;
  }

  const free = taken.findIndex((m) => m === undefined);
  const stepIndex = free === -1 ? templates.length : free;
  const placed = new Map<number, StepMessage>();
  taken.forEach((m, i) => m && placed.set(i, m));
  const plan: MigrationPlan = { stepIndex, renumber: new Map(), dropped: [] };
  const [next, ...rest] = deferred;
  const template = templates[stepIndex];
  if (next && template !== undefined) {
    placed.set(stepIndex, next);
    plan.deferred = { id: next.id, template };
  } else if (next) {
    beyond.unshift(next);
    plan.dropped.push(next.id);
  }
  for (const m of rest) {
    beyond.push(m);
    plan.dropped.push(m.id);
  }
  beyond.forEach((m, i) => placed.set(templates.length + i, m));
  for (const [step, m] of placed) if (m.step !== step) plan.renumber.set(m.id, step);
  return plan;
}
