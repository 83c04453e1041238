/**
 * Files that appear whole or not at all: written to a temp file beside the target (readable by
 * the owner only unless asked otherwise), fsynced, renamed over the target, and the folder fsynced so the rename itself
 * survives a crash. Readers in other processes never see a partial file; a crash leaves at most a
 * temp file, which `sweepTempFiles` removes once its writer is gone.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TEMP_SUFFIX = '.tmp';
/** A temp file this old is abandoned even if a process with its writer's pid exists (pid reuse). */
const ABANDONED_AFTER_MS = 60 * 60 * 1000;

export interface AtomicWriteOptions {
  /** Readable by everyone (reports, presets) instead of the owner only (cache entries); default false. */
  shared?: boolean;
}

export async function writeFileAtomic(path: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  await writeFileAtomicWith(path, (handle) => handle.writeFile(data), options);
}

/** The same, for contents too large to hold at once: `write` streams them into the temp file. */
export async function writeFileAtomicWith(path: string, write: (handle: FileHandle) => Promise<void>, options: AtomicWriteOptions = {}): Promise<void> {
  const folder = dirname(path);
  await mkdir(folder, { recursive: true, mode: options.shared ? 0o755 : 0o700 });
  // The writer's pid is in the name so a sweep can tell a live writer's file from a dead one's.
  const temporary = join(folder, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  const handle = await open(temporary, 'wx', options.shared ? 0o644 : 0o600);
  try {
    await write(handle);
    await handle.sync();
    await handle.close();
    await rename(temporary, path);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw error;
  }
  await syncFolder(folder);
}

export function isTempFile(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
}

/** Removes temp files left by writers that died (kill -9, power loss); returns how many. */
export async function sweepTempFiles(folder: string): Promise<number> {
  let swept = 0;
  for (const name of await readdir(folder).catch(() => [] as string[])) {
    if (!isTempFile(name)) continue;
    const path = join(folder, name);
    const info = await stat(path).catch(() => undefined);
    if (!info) continue;
    const writer = Number(name.split('.').at(-3));
    if (isAlive(writer) && Date.now() - info.mtimeMs < ABANDONED_AFTER_MS) continue;
    await rm(path, { force: true });
    swept++;
  }
  return swept;
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
