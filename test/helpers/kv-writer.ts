/**
 * A child process for the KV cache's concurrency tests: writes entries of random content under a
 * few shared keys of one tier (disk folder or Redis) while reading them back, and fails loudly on
 * any entry that does not decode whole.
 *
 *   node kv-writer.js disk <folder> <rounds> <bytes>
 *   node kv-writer.js redis <url> <rounds> <bytes>
 * Prints "started" once, then one JSON line {writes, reads, hits} at the end; exit code 1 on a torn read.
 */
import { randomBytes } from 'node:crypto';
import { decodeEntry, encodeEntry } from '../../src/kvcache/entry.js';
import { chainKey } from '../../src/kvcache/keys.js';
import { DiskTier } from '../../src/kvcache/tiers/disk.js';
import { RedisTier } from '../../src/kvcache/tiers/redis.js';
import type { CacheTier } from '../../src/kvcache/tiers/tier.js';

export const SHARED_KEY_COUNT = 3;

/** The shared keys: block i of a fixed token run under a zero root. */
export function sharedBlock(index: number): { root: Buffer; key: Buffer; tokens: Int32Array } {
  const root = Buffer.alloc(32);
  const tokens = Int32Array.from({ length: 16 }, (_, i) => index * 16 + i);
  return { root, key: chainKey(root, tokens), tokens };
}

/** A valid entry for shared block `index` whose state is `bytes` random bytes. */
export function randomEntry(index: number, bytes: number): Uint8Array {
  const { root, key, tokens } = sharedBlock(index);
  return encodeEntry({ root, parent: root, key, firstPosition: 0, tokens, state: randomBytes(bytes) });
}

async function openTier(kind: string, where: string): Promise<CacheTier> {
  if (kind === 'disk') return DiskTier.open(where, 1 << 30);
  if (kind === 'redis') return RedisTier.open({ url: where, timeoutMs: 5000 });
  throw new Error(`unknown tier ${kind}`);
}

async function main(): Promise<void> {
  const [kind, where, rounds, bytes] = process.argv.slice(2);
  const tier = await openTier(kind, where);
  const counts = { writes: 0, reads: 0, hits: 0 };
  process.stdout.write('started\n');
  for (let round = 0; round < Number(rounds); round++) {
    const index = round % SHARED_KEY_COUNT;
    await tier.put(sharedBlock(index).key.toString('hex'), randomEntry(index, Number(bytes)));
    counts.writes++;
    const read = await tier.get(sharedBlock((round + 1) % SHARED_KEY_COUNT).key.toString('hex'));
    counts.reads++;
    if (!read) continue;
    decodeEntry(read);
    counts.hits++;
  }
  await tier.close();
  process.stdout.write(`${JSON.stringify(counts)}\n`);
}

if (process.argv[1]?.endsWith('kv-writer.js')) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  });
}
