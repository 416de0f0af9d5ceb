import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  assertEmbeddedDatabaseFree,
  embeddedDatabaseHolder,
  embeddedLockFile,
  EmbeddedLock,
} from '../../src/db/embedded-lock.js';

/** The pid of a process that has exited. */
function deadPid(): number {
  const { pid } = spawnSync(process.execPath, ['-e', '0']);
  if (!pid) throw new Error('no pid');
  return pid;
}

describe('embedded database lock', () => {
  let dir: string;
  let lock: EmbeddedLock | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-lock-'));
  });
  afterEach(() => {
    lock?.release();
    lock = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const writeLock = (content: unknown) =>
    fs.writeFileSync(embeddedLockFile(dir), typeof content === 'string' ? content : JSON.stringify(content));
  const lockContent = () => JSON.parse(fs.readFileSync(embeddedLockFile(dir), 'utf8')) as unknown;

  it('names its holder, refuses a second holder (this process included), and is gone once released', () => {
    lock = EmbeddedLock.acquire(dir);
    expect(lockContent()).toEqual({ pid: process.pid });
    expect(embeddedDatabaseHolder(dir)).toEqual({ pid: process.pid });
    expect(() => EmbeddedLock.acquire(dir)).toThrow(
      `already running with the embedded database in ${dir} (pid ${process.pid}): stop it first, ` +
        'or set DATABASE_URL to run several processes on Postgres',
    );

    lock.announce('http://127.0.0.1:3999');
    expect(embeddedDatabaseHolder(dir)).toEqual({ pid: process.pid, url: 'http://127.0.0.1:3999' });
    expect(() => assertEmbeddedDatabaseFree(dir)).toThrow(/or use its API at http:\/\/127\.0\.0\.1:3999$/);

    lock.release();
    lock = undefined;
    expect(fs.existsSync(embeddedLockFile(dir))).toBe(false);
    expect(embeddedDatabaseHolder(dir)).toBeUndefined();
    expect(() => assertEmbeddedDatabaseFree(dir)).not.toThrow();
  });

  it('refuses while another live process holds it', () => {
    // The test runner that started this process is alive for as long as the test runs.
    writeLock({ pid: process.ppid, url: 'http://127.0.0.1:3000' });
    expect(() => EmbeddedLock.acquire(dir)).toThrow(
      `already running with the embedded database in ${dir} (pid ${process.ppid}): stop it first, ` +
        'or use its API at http://127.0.0.1:3000',
    );
    expect(lockContent()).toEqual({ pid: process.ppid, url: 'http://127.0.0.1:3000' });
  });

  it.each([
    ['a process that has exited', () => ({ pid: deadPid(), url: 'http://127.0.0.1:3000' })],
    // A container's recoup often has the same pid after a restart.
    ['this pid, from an earlier run', () => ({ pid: process.pid })],
    ['nothing readable', () => 'half a lo'],
  ])('replaces a lock left by %s', (_what, content) => {
    writeLock(content());
    expect(embeddedDatabaseHolder(dir)).toBeUndefined();
    lock = EmbeddedLock.acquire(dir);
    expect(lockContent()).toEqual({ pid: process.pid });
    expect(fs.readdirSync(dir)).toEqual(['pglite.lock']);
  });

  it('leaves a lock another process took alone when releasing', () => {
    lock = EmbeddedLock.acquire(dir);
    writeLock({ pid: process.ppid });
    lock.release();
    lock = undefined;
    expect(lockContent()).toEqual({ pid: process.ppid });
  });
});
