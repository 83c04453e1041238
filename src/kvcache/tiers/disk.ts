/**
 * Local disk tier: one file per entry (`<key>.kv`, owner-only) in one folder. Files appear by
 * atomic rename, so a reader (in this or another process) sees a whole entry or none; a crash
 * mid-write leaves only a temp file, swept at the next start. The index of sizes and recency is
 * rebuilt from the folder at start, so nothing the eviction needs lives only in memory.
 */
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isTempFile, sweepTempFiles, writeFileAtomic } from '../../atomic-file.js';
import { isEntryKey, type CacheTier, type TierUsage } from './tier.js';

const SUFFIX = '.kv';

export class DiskTier implements CacheTier {
  readonly name = 'disk';
  /** Entry sizes by key, in recency order (oldest first), as far as this process knows. */
  private readonly index = new Map<string, number>();
  private bytes = 0;

  private constructor(
    readonly folder: string,
    readonly maxBytes: number,
  ) {}

  /** Opens (creating) the folder, sweeps dead writers' temp files and rebuilds the index. */
  static async open(folder: string, maxBytes: number): Promise<DiskTier> {
    if (!(maxBytes > 0)) throw new RangeError('the disk tier needs a positive byte budget');
    await mkdir(folder, { recursive: true, mode: 0o700 });
    await sweepTempFiles(folder);
    const tier = new DiskTier(folder, maxBytes);
    const files = await tier.listEntries();
    files.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const file of files) tier.remember(file.key, file.size);
    await tier.evict();
    return tier;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const bytes = await this.readBounded(this.pathOf(key));
      if (bytes) this.remember(key, bytes.length);
      return bytes;
    } catch (error) {
      // Absent, or evicted by another process between its listing and our read: a miss.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.forget(key);
      return undefined;
    }
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    if (bytes.length > this.maxBytes) return;
    await writeFileAtomic(this.pathOf(key), bytes);
    this.remember(key, bytes.length);
    await this.evict();
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
    this.forget(key);
  }

  async keys(): Promise<string[]> {
    return (await this.listEntries()).map((file) => file.key);
  }

  async usage(): Promise<TierUsage> {
    const files = await this.listEntries();
    return { entries: files.length, bytes: files.reduce((sum, file) => sum + file.size, 0) };
  }

  async clear(): Promise<void> {
    for (const name of await readdir(this.folder)) {
      if (name.endsWith(SUFFIX) || isTempFile(name)) await rm(join(this.folder, name), { force: true });
    }
    this.index.clear();
    this.bytes = 0;
  }

  async close(): Promise<void> {}

  private pathOf(key: string): string {
    if (!isEntryKey(key)) throw new RangeError(`not a cache key: ${key}`);
    return join(this.folder, `${key}${SUFFIX}`);
  }

  /** A file larger than the whole tier was not written by it: not read into memory at all. */
  private async readBounded(path: string): Promise<Uint8Array | undefined> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      return size > this.maxBytes ? undefined : await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  private remember(key: string, size: number): void {
    this.forget(key);
    this.index.set(key, size);
    this.bytes += size;
  }

  private forget(key: string): void {
    const size = this.index.get(key);
    if (size === undefined) return;
    this.index.delete(key);
    this.bytes -= size;
  }

  private async evict(): Promise<void> {
    for (const [oldest] of this.index) {
      if (this.bytes <= this.maxBytes) return;
      await this.delete(oldest);
    }
  }

  private async listEntries(): Promise<{ key: string; size: number; mtimeMs: number }[]> {
    const files = [];
    for (const name of await readdir(this.folder)) {
      const key = name.slice(0, -SUFFIX.length);
      if (!name.endsWith(SUFFIX) || !isEntryKey(key)) continue;
      const info = await stat(join(this.folder, name)).catch(() => undefined);
      if (info) files.push({ key, size: info.size, mtimeMs: info.mtimeMs });
    }
    return files;
  }
}
