import fs from 'node:fs';
import path from 'node:path';
import { RecoupError } from '../platform/errors.js';

/**
 * The embedded database (PGlite) is one process's memory over files: a second process opening the
 * same directory works on its own copy, and whichever closes last overwrites the other's writes.
 * PGlite locks nothing, so recoup does: `DATA_DIR/pglite.lock` names the process that has it open.
 */
export const embeddedLockName = 'pglite.lock';

/** What the lock file says about the process that has the embedded database open. */
export interface EmbeddedHolder {
  pid: number;
  /** Its HTTP API, once it listens: commands run beside it go through it. */
  url?: string;
}

// Lock files this process holds: a file naming this pid that is not in here is a previous run's
// (a container's process often has the same pid after every restart).
const held = new Set<string>();

export function embeddedLockFile(dataDir: string): string {
  return path.resolve(dataDir, embeddedLockName);
}

/** The live process that has the embedded database in `dataDir` open, if any. */
export function embeddedDatabaseHolder(dataDir: string): EmbeddedHolder | undefined {
  const file = embeddedLockFile(dataDir);
  const holder = parseHolder(readLock(file));
  return holder && isLive(holder, file) ? holder : undefined;
}

/** Throws, in one line saying what to do, when another process has the embedded database open. */
export function assertEmbeddedDatabaseFree(dataDir: string): void {
  const holder = embeddedDatabaseHolder(dataDir);
  if (holder) throw embeddedDatabaseInUse(dataDir, holder);
}

export function embeddedDatabaseInUse(dataDir: string, holder: EmbeddedHolder): RecoupError {
  const instead = holder.url ? `use its API at ${holder.url}` : 'set DATABASE_URL to run several processes on Postgres';
  return new RecoupError(
    'unavailable',
    `already running with the embedded database in ${dataDir} (pid ${holder.pid}): stop it first, or ${instead}`,
  );
}

export class EmbeddedLock {
  readonly #file: string;

  private constructor(file: string) {
    this.#file = file;
  }

  /** Takes the lock on `dataDir`, replacing one left by a process that is gone; throws if one is alive. */
  static acquire(dataDir: string): EmbeddedLock {
    fs.mkdirSync(dataDir, { recursive: true });
    const file = embeddedLockFile(dataDir);
    const mine = JSON.stringify({ pid: process.pid } satisfies EmbeddedHolder);
    for (let attempt = 0; attempt < 5; attempt += 1) {
      if (createExclusive(file, mine)) {
        held.add(file);
        return new EmbeddedLock(file);
      }
      const seen = readLock(file);
      if (seen === undefined) continue;
      const holder = parseHolder(seen);
      if (holder && isLive(holder, file)) throw embeddedDatabaseInUse(dataDir, holder);
      removeStale(file, seen);
    }
    throw new RecoupError('unavailable', `could not take ${file}: other processes keep replacing it`);
  }

  /** Records where this process's HTTP API listens, for commands run beside it. */
  announce(url: string): void {
    if (!held.has(this.#file)) return;
    const tmp = `${this.#file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ pid: process.pid, url } satisfies EmbeddedHolder));
    fs.renameSync(tmp, this.#file);
  }

  release(): void {
    if (!held.delete(this.#file)) return;
    if (parseHolder(readLock(this.#file))?.pid === process.pid) fs.rmSync(this.#file, { force: true });
  }
}

/**
 * Creates `file` with `content` unless it exists. Written aside and linked into place, so that a
 * reader never sees a lock file half written.
 */
function createExclusive(file: string, content: string): boolean {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content);
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Removes a lock whose holder is gone. Two processes may find the same stale lock: each moves it
 * aside first, and one that moved a fresh lock (the other's, taken meanwhile) puts it back.
 */
function removeStale(file: string, seen: string): void {
  const aside = `${file}.${process.pid}.stale`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    if (readLock(aside) !== seen) fs.linkSync(aside, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

function readLock(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The holder a lock file names; undefined for anything else (such a file is replaced). */
function parseHolder(text: string | undefined): EmbeddedHolder | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as { pid?: unknown; url?: unknown };
    if (typeof value.pid !== 'number' || !Number.isInteger(value.pid) || value.pid <= 0) return undefined;
    return typeof value.url === 'string' ? { pid: value.pid, url: value.url } : { pid: value.pid };
  } catch {
    return undefined;
  }
}

function isLive(holder: EmbeddedHolder, file: string): boolean {
  if (holder.pid === process.pid) return held.has(file);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
