/**
 * Checks every entry a tier holds without a model: whole, checksum right, current format, and its
 * key both provable from its parent and tokens and equal to the name it is stored under (or, for a
 * partial block, stored under its parent's continuation name).
 */
import { decodeEntry, EntryRejected, type RejectReason } from './entry.js';
import { continuationName } from './keys.js';
import type { CacheTier } from './tiers/tier.js';

export interface VerifyReport {
  readonly entries: number;
  readonly good: number;
  readonly bad: Partial<Record<RejectReason, number>>;
  /** Bad entries removed (when asked to). */
  readonly removed: number;
}

export async function verifyTier(tier: CacheTier, options: { removeBad?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<VerifyReport> {
  const keys = await tier.keys();
  const bad: Partial<Record<RejectReason, number>> = {};
  let good = 0;
  let removed = 0;
  for (const [index, key] of keys.entries()) {
    options.onProgress?.(index, keys.length);
    const bytes = await tier.get(key);
    if (!bytes) continue; // evicted meanwhile
    const reason = problemOf(bytes, key);
    if (!reason) {
      good++;
      continue;
    }
    bad[reason] = (bad[reason] ?? 0) + 1;
    if (options.removeBad) {
      await tier.delete(key);
      removed++;
    }
  }
  options.onProgress?.(keys.length, keys.length);
  return { entries: keys.length, good, bad, removed };
}

function problemOf(bytes: Uint8Array, key: string): RejectReason | undefined {
  try {
    const entry = decodeEntry(bytes);
    const names = [Buffer.from(entry.key).toString('hex'), continuationName(entry.parent).toString('hex')];
    return names.includes(key) ? undefined : 'key';
  } catch (error) {
    if (error instanceof EntryRejected) return error.reason;
    throw error;
  }
}
