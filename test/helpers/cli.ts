/** Runs the `tachyon` command as a user would, in a child process. */
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { packageRoot } from '../../src/paths.js';

const run = promisify(execFile);
const cli = join(packageRoot, 'bin', 'tachyon.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Never throws for a non-zero exit; fails the test if the process died from a signal (a crash). */
export function tachyon(...args: string[]): Promise<CliResult> {
  return tachyonWithStdin(undefined, ...args);
}

/** As `tachyon`, with this text on stdin (undefined: stdin is left as the test's own). */
export async function tachyonWithStdin(input: string | undefined, ...args: string[]): Promise<CliResult> {
  try {
    const child = run(process.execPath, [cli, ...args], { timeout: 300_000 });
    if (input !== undefined) child.child.stdin?.end(input);
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string; signal?: string };
    assert.equal(failed.signal ?? null, null, `the process must not die from a signal (a crash); its stderr:\n${failed.stderr ?? ''}`);
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/**
 * As `tachyon`, with a reader that takes the first bytes of stdout and then closes the pipe (as
 * `tachyon run … | head -c N` does). Resolves when the process has ended.
 */
export function tachyonIntoClosingPipe(bytes: number, ...args: string[]): Promise<CliResult & { signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (stdout.length >= bytes) child.stdout.destroy();
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr })));
}
