/** Where the package's own files are, wherever it is installed. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package.json not found above ${start}`);
    dir = parent;
  }
  return dir;
}

/** The folder holding Tachyon's package.json (compiled code lives in dist/ below it). */
export const packageRoot = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** The embedded default model: the trained testbed target shipped with the package. */
export const defaultModelPath = join(packageRoot, 'models', 'testbed', 'target.gguf');

/** Its draft model (same vocabulary), for speculative decoding with a draft model. */
export const defaultDraftModelPath = join(packageRoot, 'models', 'testbed', 'draft.gguf');

/** Generated files (test models, measured cost curves) live here. */
export const cacheDir = join(packageRoot, '.cache');
