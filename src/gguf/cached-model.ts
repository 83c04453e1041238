/** Generated model files cached under <project>/.cache/models/, built on first use. */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { cacheDir } from '../paths.js';
import { onceByKey } from '../memo.js';

const pendingBuilds = new Map<string, Promise<string>>();

/**
 * Path of `name` under .cache/models/, built by `build` if missing. Concurrent callers share one
 * build; callers in other processes are safe because the writer creates files by atomic rename.
 * The name must change whenever the built bytes would (a hash of the inputs, a version).
 */
export function cachedModel(name: string, build: (path: string) => Promise<unknown>): Promise<string> {
  const path = join(cacheDir, 'models', name);
  return onceByKey(pendingBuilds, path, () => buildIfMissing(path, build));
}

async function buildIfMissing(path: string, build: (path: string) => Promise<unknown>): Promise<string> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile()) return path;
  await mkdir(dirname(path), { recursive: true });
  await build(path);
  return path;
}
