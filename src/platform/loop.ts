import type { Logger } from './logger.js';

/**
 * Runs `task` now and then again `intervalMs` after each run ends, so runs never overlap; a failed
 * run is logged and the next one comes on time. `stop` waits for a run in progress.
 */
export function startLoop(
  intervalMs: number,
  task: () => Promise<unknown>,
  logger: Logger,
  what: string,
): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = task()
      .then(() => undefined)
      .catch((err: unknown) => logger.warn({ err }, `${what} failed; retrying next interval`))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
