import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

/** A line of a Node stack trace: what a known failure must never print. */
export const stackTrace = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Finished>;
}

const children = new Set<ChildProcess>();

/** `recoup <args>` as a user runs it, with only the environment given (plus PATH and HOME). */
export function startCli(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<Finished>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

export function runCli(args: string[], env: Record<string, string>): Promise<Finished> {
  return startCli(args, env).exited;
}

/** Kills every recoup still running: a test that failed half-way must not leave one behind. */
export function killCliChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** Resolves with the exit, or with undefined if the process is still running after `ms`. */
export function exitWithin(running: Running, ms: number): Promise<Finished | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    running.exited,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A TCP port nothing listens on (just released by a throwaway server). */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}
