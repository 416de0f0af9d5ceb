import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, type Finished } from '../helpers/cli.js';

const script = path.join(repoRoot, 'scripts/build-if-stale.ts');
const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');

/** The build step of `npm start`, run in `cwd` as npm runs it. */
function build(cwd: string): Promise<Finished> {
  const child = spawn(tsx, [script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Moves a file's time forward, as saving it in an editor does. */
function touch(file: string, secondsAhead: number): void {
  const at = new Date(Date.now() + secondsAhead * 1000);
  fs.utimesSync(file, at, at);
}

describe('npm start builds only what changed', { timeout: 90_000 }, () => {
  let project: string;
  beforeAll(() => {
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-build-'));
    fs.mkdirSync(path.join(project, 'src', 'app'), { recursive: true });
    fs.writeFileSync(
      path.join(project, 'tsconfig.build.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'ES2022',
          strict: true,
          types: [],
          rootDir: 'src',
          outDir: 'dist',
        },
        include: ['src'],
      }),
    );
    fs.writeFileSync(path.join(project, 'src', 'cli.ts'), "import { answer } from './app/answer.js';\nanswer();\n");
    fs.writeFileSync(path.join(project, 'src', 'app', 'answer.ts'), 'export const answer = (): number => 42;\n');
  });
  afterAll(() => {
    fs.rmSync(project, { recursive: true, force: true });
  });

  it('is what npm start runs before starting', () => {
    const scripts = (
      JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    expect(scripts.start).toBe('tsx scripts/build-if-stale.ts && node dist/cli.js start');
  });

  it('compiles on the first run, saying so; not again with nothing changed; again once a source changed', async () => {
    const first = await build(project);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe('recoup: compiling (first run ~1 min)…\n');
    const output = path.join(project, 'dist', 'app', 'answer.js');
    expect(fs.readFileSync(output, 'utf8')).toContain('42');

    // Emitted files keep their time unless tsc runs again.
    const emitted = new Date('2020-01-01T00:00:00Z');
    fs.utimesSync(output, emitted, emitted);
    const second = await build(project);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('');
    expect(fs.statSync(output).mtime).toEqual(emitted);

    fs.writeFileSync(path.join(project, 'src', 'app', 'answer.ts'), 'export const answer = (): number => 43;\n');
    touch(path.join(project, 'src', 'app', 'answer.ts'), 2);
    const third = await build(project);
    expect(third.code).toBe(0);
    expect(third.stdout).toBe(`recoup: compiling (${path.join('src', 'app', 'answer.ts')} changed)…\n`);
    expect(fs.readFileSync(output, 'utf8')).toContain('43');
  });

  it('compiles again after a failed build, and stops npm start with its errors', async () => {
    const source = path.join(project, 'src', 'app', 'answer.ts');
    fs.writeFileSync(source, "export const answer = (): number => 'not a number';\n");
    touch(source, 4);
    const failed = await build(project);
    expect(failed.code).not.toBe(0);
    expect(failed.stdout).toContain("Type 'string' is not assignable to type 'number'");

    const again = await build(project);
    expect(again.code).not.toBe(0);
    expect(again.stdout).toMatch(/^recoup: compiling \(no successful build recorded\)…\n/);
  });
});
