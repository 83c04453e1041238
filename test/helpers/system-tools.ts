/**
 * Tests that drive a system program (redis-server, Chromium, tmux) skip, naming it, on a machine
 * without it, so a newcomer's `npm test` passes before they install them. CI installs them all
 * and sets TACHYON_TEST_TOOLS=required (.ci/run): there a missing program is a failure, never a skip.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** A `skip` option: false when `program` (a name on PATH or an absolute path) can run, else why not. */
export function skipWithout(program: string, debianPackage: string): string | false {
  if (process.env.TACHYON_TEST_TOOLS === 'required' || runnable(program)) return false;
  return `${program} is not installed (apt-get install ${debianPackage}; .ci/run installs it)`;
}

function runnable(program: string): boolean {
  const candidates = isAbsolute(program) ? [program] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  return candidates.some((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
