/** In-process tier: least recently used entries go first once the byte budget is exceeded. */
import type { CacheTier, TierUsage } from './tier.js';

export class RamTier implements CacheTier {
  readonly name = 'ram';
  /** Map order is recency order: a hit re-inserts its key at the end. */
  private readonly entries = new Map<string, Uint8Array>();
  private bytes = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new RangeError('the RAM tier needs a positive byte budget');
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const bytes = this.entries.get(key);
    if (!bytes) return undefined;
    this.entries.delete(key);
    this.entries.set(key, bytes);
    return bytes;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    if (bytes.length > this.maxBytes) return;
    await this.delete(key);
    this.entries.set(key, bytes);
    this.bytes += bytes.length;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= old.length;
    }
  }

  async delete(key: string): Promise<void> {
    const bytes = this.entries.get(key);
    if (!bytes) return;
    this.entries.delete(key);
    this.bytes -= bytes.length;
  }

  async keys(): Promise<string[]> {
    return [...this.entries.keys()];
  }

  async usage(): Promise<TierUsage> {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  async clear(): Promise<void> {
    this.entries.clear();
    this.bytes = 0;
  }

  async close(): Promise<void> {
    await this.clear();
  }
}
