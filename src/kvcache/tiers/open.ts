/** Opens the tiers a user asked for (`--cache ram,disk,redis`), with defaults sized for a laptop. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DiskTier } from './disk.js';
import { RamTier } from './ram.js';
import { RedisTier } from './redis.js';
import { TIER_NAMES, type CacheTier, type TierName } from './tier.js';

const MIB = 1024 * 1024;
export const DEFAULT_RAM_BYTES = 512 * MIB;
export const DEFAULT_DISK_BYTES = 8 * 1024 * MIB;

export interface TierConfig {
  /** In lookup order; RAM, disk, Redis is the order that makes sense. */
  readonly tiers: readonly TierName[];
  /** Disk tier folder; default `defaultCacheFolder()`. */
  readonly dir?: string;
  /** Required for the Redis tier. */
  readonly redisUrl?: string;
  readonly ramBytes?: number;
  readonly diskBytes?: number;
  readonly onWarning?: (line: string) => void;
}

/** $XDG_CACHE_HOME/tachyon/kv, else ~/.cache/tachyon/kv. */
export function defaultCacheFolder(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tachyon', 'kv');
}

/** Parses "ram,disk,redis"; throws a RangeError naming an unknown tier. */
export function parseTierList(text: string): TierName[] {
  const names = text.split(',').map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (!TIER_NAMES.includes(name as TierName)) throw new RangeError(`unknown cache tier '${name}' (expected ${TIER_NAMES.join(', ')})`);
  }
  if (names.length === 0) throw new RangeError('no cache tier named');
  return [...new Set(names)] as TierName[];
}

export async function openTiers(config: TierConfig): Promise<CacheTier[]> {
  const tiers: CacheTier[] = [];
  for (const name of config.tiers) tiers.push(await openTier(name, config));
  return tiers;
}

function openTier(name: TierName, config: TierConfig): Promise<CacheTier> | CacheTier {
  switch (name) {
    case 'ram':
      return new RamTier(config.ramBytes ?? DEFAULT_RAM_BYTES);
    case 'disk':
      return DiskTier.open(config.dir ?? defaultCacheFolder(), config.diskBytes ?? DEFAULT_DISK_BYTES);
    case 'redis':
      if (!config.redisUrl) throw new RangeError('the redis cache tier needs a URL (--redis redis://host:6379)');
      return RedisTier.open({ url: config.redisUrl, onWarning: config.onWarning });
  }
}
