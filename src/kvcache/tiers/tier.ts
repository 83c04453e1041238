/** The interface every cache tier implements; the tiered store looks them up in order. */

export type TierName = 'ram' | 'disk' | 'redis';

export const TIER_NAMES: readonly TierName[] = ['ram', 'disk', 'redis'];

export interface TierUsage {
  readonly entries: number;
  readonly bytes: number;
}

/**
 * A store of encoded entries (entry.ts) by hex key. Tiers move bytes only: they never judge an
 * entry's content (the caller checks every entry before use), but they must never return part of
 * an entry another writer is still writing.
 */
export interface CacheTier {
  readonly name: TierName;
  /** The entry's bytes, or undefined when absent. Throws TierUnavailableError when the tier is down. */
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every key the tier holds now (for `cache verify` and `cache stats`). */
  keys(): Promise<string[]>;
  usage(): Promise<TierUsage>;
  clear(): Promise<void>;
  close(): Promise<void>;
}

/** A tier that cannot answer now (Redis down or slow); the caller skips it. */
export class TierUnavailableError extends Error {
  override name = 'TierUnavailableError';
}

const HEX_KEY = /^[0-9a-f]{64}$/;

export function isEntryKey(key: string): boolean {
  return HEX_KEY.test(key);
}
