/**
 * `npm start`'s build: compiles src/ into dist/ (tsconfig.build.json) only when a source or a
 * tsconfig changed since the last successful build, so that a start with nothing changed starts at
 * once. Run in the package's folder (npm runs scripts there). Prints one line before compiling;
 * prints nothing when dist/ is up to date. Exits with tsc's code when compiling fails.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Written into dist/ after a build that succeeded; its time is when that build started. */
export const stampName = '.built';

const firstRun = 'first run ~1 min';

/** What a build reads besides src/ (a file missing is ignored). */
const configFiles = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];

/** Why `root`'s dist/ must be compiled again, or undefined when it is up to date. */
export function staleReason(root: string): string | undefined {
  const stamp = modifiedAt(path.join(root, 'dist', stampName));
  if (stamp === undefined) return fs.existsSync(path.join(root, 'dist')) ? 'no successful build recorded' : firstRun;
  for (const file of configFiles) {
    if ((modifiedAt(path.join(root, file)) ?? 0) > stamp) return `${file} changed`;
  }
  const changed = newerIn(path.join(root, 'src'), stamp);
  return changed ? `${path.relative(root, changed)} changed` : undefined;
}

/**
 * The first file or folder under `dir` modified after `since`. Folders count: a file deleted or
 * renamed changes its folder's time only.
 */
function newerIn(dir: string, since: number): string | undefined {
  if ((modifiedAt(dir) ?? 0) > since) return dir;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const found = entry.isDirectory() ? newerIn(full, since) : (modifiedAt(full) ?? 0) > since ? full : undefined;
    if (found) return found;
  }
  return undefined;
}

function modifiedAt(file: string): number | undefined {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Compiles `root`'s src/ into dist/ when it is stale; tsc's exit code (0 when nothing had to be done). */
export function buildIfStale(root: string): number {
  const reason = staleReason(root);
  if (reason === undefined) return 0;
  console.log(`recoup: compiling (${reason})…`);
  const started = new Date();
  const stamp = path.join(root, 'dist', stampName);
  fs.rmSync(stamp, { force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  // Incremental, its record inside dist/: deleting dist/ forgets it, so the next build emits everything.
  const args = [tsc, '-p', 'tsconfig.build.json', '--incremental', '--tsBuildInfoFile', 'dist/.tsbuildinfo'];
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) return result.status ?? 1;
  // Dated when the build started: a source saved while tsc ran makes the next start compile again.
  fs.writeFileSync(stamp, '');
  fs.utimesSync(stamp, started, started);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = buildIfStale(process.cwd());
}
