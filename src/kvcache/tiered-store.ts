/**
 * The tiers behind one interface. Loads look the tiers up in order (RAM, disk, Redis), check each
 * entry before accepting it, drop bad entries, and promote a hit into the faster tiers. Stores are
 * queued and written in the background: `enqueue` returns at once, so the decode loop never waits
 * on disk or network.
 */
import { EntryRejected, type RejectReason } from './entry.js';
import type { CacheTier, TierName } from './tiers/tier.js';

export interface TierStats {
  hits: number;
  misses: number;
  /** Entries found but rejected (corrupt, foreign, stale format…): also counted as misses. */
  rejected: number;
  /** Lookups that failed because the tier was down, slow or had an I/O error. */
  unavailable: number;
  bytesLoaded: number;
  bytesStored: number;
  stores: number;
  /** Stores that failed (tier down, disk full): the entry is simply not in that tier. */
  failedStores: number;
  /** Lookups skipped because the tier's hits took longer than recomputing the block. */
  skippedSlow: number;
  /** Recent time of one hit (moving average), ms; 0 before the first hit. */
  hitMs: number;
  /** Total milliseconds spent in loads (hits and misses) and in stores. */
  loadMs: number;
  storeMs: number;
}

export interface StoreStats {
  readonly tiers: Partial<Record<TierName, TierStats>>;
  readonly rejected: Partial<Record<RejectReason, number>>;
  /** Stores waiting to be written, and stores dropped because the queue was full. */
  readonly pendingStores: number;
  readonly droppedStores: number;
  /** Loads served from stores still waiting in the queue. */
  readonly queuedHits: number;
}

/** Where a load found its entry: a tier, or the queue of stores not written yet. */
export type EntrySource = TierName | 'queued';

interface PendingStore {
  readonly key: string;
  /** Memoized: the queue's writer and a load of the same pending entry encode it once. */
  readonly encode: () => Uint8Array;
  readonly sizeHint: number;
  readonly targets: readonly CacheTier[];
}

/** Weight of the newest hit in a tier's moving-average hit time. */
const HIT_TIME_WEIGHT = 0.2;
/** A tier too slow to pay is still tried once in this many lookups. */
const PROBE_EVERY = 16;

export class TieredStore {
  private readonly tierStats = new Map<CacheTier, TierStats>();
  /** Lookups that met each tier while it was too slow (probes included). */
  private readonly slowLookups = new Map<CacheTier, number>();
  private readonly rejected: Partial<Record<RejectReason, number>> = {};
  private readonly queue: PendingStore[] = [];
  private readonly queuedByKey = new Map<string, PendingStore>();
  private queuedHits = 0;
  private queuedBytes = 0;
  private dropped = 0;
  private draining: Promise<void> | null = null;

  constructor(
    readonly tiers: readonly CacheTier[],
    /** Most bytes of stores allowed to wait; beyond it new stores are dropped (and counted). */
    private readonly maxQueuedBytes: number,
  ) {
    for (const tier of tiers) this.tierStats.set(tier, emptyTierStats());
  }

  /**
   * The first entry under `key` that `accept` takes (it throws EntryRejected otherwise), looked up
   * tier by tier; undefined when no tier has a good one.
   */
  async load<T>(key: string, accept: (bytes: Uint8Array) => T, budgetMs = Infinity): Promise<{ value: T; source: EntrySource } | undefined> {
    const queued = this.queuedByKey.get(key);
    if (queued) {
      this.queuedHits++;
      return { value: accept(queued.encode()), source: 'queued' };
    }

    for (const [index, tier] of this.tiers.entries()) {
      if (this.tooSlow(tier, budgetMs)) continue;
      const started = performance.now();
      const bytes = await this.get(tier, key);
      if (!bytes) continue;
      try {
        const value = accept(bytes);
        const stats = this.statsOf(tier);
        stats.hits++;
        const elapsed = performance.now() - started;
        stats.hitMs = stats.hitMs === 0 ? elapsed : stats.hitMs + HIT_TIME_WEIGHT * (elapsed - stats.hitMs);
        this.promote(key, bytes, this.tiers.slice(0, index));
        return { value, source: tier.name };
      } catch (error) {
        if (!(error instanceof EntryRejected)) throw error;
        this.reject(error.reason, this.statsOf(tier));
        await tier.delete(key).catch(() => undefined);
      }
    }
    return undefined;
  }

  /** Counts an entry rejected after it left the store (e.g. llama.cpp refused to restore it). */
  countRejected(reason: RejectReason): void {
    this.reject(reason);
  }

  /** Queues an entry for every tier; returns false (dropped) when the queue is full. */
  enqueue(key: string, encode: () => Uint8Array, sizeHint: number): boolean {
    return this.push({ key, encode: memoize(encode), sizeHint, targets: this.tiers });
  }

  /** Resolves when every queued store has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  stats(): StoreStats {
    const tiers: Partial<Record<TierName, TierStats>> = {};
    for (const [tier, stats] of this.tierStats) tiers[tier.name] = { ...stats };
    return { tiers, rejected: { ...this.rejected }, pendingStores: this.queue.length, droppedStores: this.dropped, queuedHits: this.queuedHits };
  }

  async close(): Promise<void> {
    await this.flush();
    for (const tier of this.tiers) await tier.close();
  }

  /**
   * A tier whose hits take longer than `budgetMs` (recomputing the block) is skipped, except for
   * one lookup in PROBE_EVERY, which keeps its time measured (a slow phase may pass).
   */
  private tooSlow(tier: CacheTier, budgetMs: number): boolean {
    const stats = this.statsOf(tier);
    if (stats.hitMs <= budgetMs) return false;
    const lookups = (this.slowLookups.get(tier) ?? 0) + 1;
    this.slowLookups.set(tier, lookups);
    if (lookups % PROBE_EVERY === 0) return false;
    stats.skippedSlow++;
    return true;
  }

  private async get(tier: CacheTier, key: string): Promise<Uint8Array | undefined> {
    const stats = this.statsOf(tier);
    const started = performance.now();
    try {
      const bytes = await tier.get(key);
      if (bytes) stats.bytesLoaded += bytes.length;
      else stats.misses++;
      return bytes;
    } catch {
      // Down, slow, or an I/O error: this lookup goes on without the tier; the request never fails.
      stats.unavailable++;
      return undefined;
    } finally {
      stats.loadMs += performance.now() - started;
    }
  }

  private promote(key: string, bytes: Uint8Array, targets: readonly CacheTier[]): void {
    if (targets.length > 0) this.push({ key, encode: () => bytes, sizeHint: bytes.length, targets });
  }

  private push(store: PendingStore): boolean {
    if (this.queuedBytes + store.sizeHint > this.maxQueuedBytes) {
      this.dropped++;
      return false;
    }
    this.queue.push(store);
    if (store.targets === this.tiers) this.queuedByKey.set(store.key, store);
    this.queuedBytes += store.sizeHint;
    this.startDraining();
    return true;
  }

  private startDraining(): void {
    if (this.draining) return;
    this.draining = this.drain().finally(() => {
      this.draining = null;
      // A store pushed after the drain's last look at the queue, before it settled.
      if (this.queue.length > 0) this.startDraining();
    });
  }

  private async drain(): Promise<void> {
    // Start on a later turn of the event loop: the caller's synchronous work goes first.
    await new Promise((resolve) => setImmediate(resolve));
    for (let store = this.queue.shift(); store; store = this.queue.shift()) {
      const bytes = store.encode();
      for (const tier of store.targets) await this.put(tier, store.key, bytes);
      if (this.queuedByKey.get(store.key) === store) this.queuedByKey.delete(store.key);
      this.queuedBytes -= store.sizeHint;
    }
  }

  private async put(tier: CacheTier, key: string, bytes: Uint8Array): Promise<void> {
    const stats = this.statsOf(tier);
    const started = performance.now();
    try {
      await tier.put(key, bytes);
      stats.stores++;
      stats.bytesStored += bytes.length;
    } catch {
      // A full disk or a lost Redis costs this entry, never the request.
      stats.failedStores++;
    } finally {
      stats.storeMs += performance.now() - started;
    }
  }

  private reject(reason: RejectReason, stats?: TierStats): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    if (stats) {
      stats.rejected++;
      stats.misses++;
    }
  }

  private statsOf(tier: CacheTier): TierStats {
    const stats = this.tierStats.get(tier);
    if (!stats) throw new Error(`tier ${tier.name} is not part of this store`);
    return stats;
  }
}

function memoize(encode: () => Uint8Array): () => Uint8Array {
  let bytes: Uint8Array | undefined;
  return () => (bytes ??= encode());
}

function emptyTierStats(): TierStats {
  return { hits: 0, misses: 0, rejected: 0, unavailable: 0, bytesLoaded: 0, bytesStored: 0, stores: 0, failedStores: 0, skippedSlow: 0, hitMs: 0, loadMs: 0, storeMs: 0 };
}
