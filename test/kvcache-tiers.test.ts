/** The KV cache's tiers: RAM LRU, the disk folder (atomic, owner-only, rebuilt, swept) and Redis (shared, skipped when down). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeEntry } from '../src/kvcache/entry.js';
import { DiskTier } from '../src/kvcache/tiers/disk.js';
import { RamTier } from '../src/kvcache/tiers/ram.js';
import { RedisTier } from '../src/kvcache/tiers/redis.js';
import { TierUnavailableError, type CacheTier, type TierName } from '../src/kvcache/tiers/tier.js';
import { TieredStore } from '../src/kvcache/tiered-store.js';
import { scratchDir } from './helpers/models.js';
import { RedisServer } from './helpers/redis.js';
import { skipWithout } from './helpers/system-tools.js';
import { randomEntry, sharedBlock } from './helpers/kv-writer.js';

const writerScript = join(import.meta.dirname, 'helpers', 'kv-writer.js');
const keyOf = (index: number): string => sharedBlock(index).key.toString('hex');

interface WriterResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

async function runWriter(args: string[]): Promise<WriterResult> {
  const child = spawn(process.execPath, [writerScript, ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const [code] = await once(child, 'exit');
  return { code: code as number | null, stdout, stderr };
}

/** Two writer processes on the same tier at once: neither may ever read a torn entry. */
async function assertNoTornReads(kind: 'disk' | 'redis', where: string): Promise<void> {
  const results = await Promise.all([runWriter([kind, where, '60', '300000']), runWriter([kind, where, '60', '200000'])]);
  for (const result of results) {
    assert.equal(result.code, 0, `writer failed: ${result.stderr}`);
    const counts = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as { hits: number };
    assert.ok(counts.hits > 0, 'the writers read each other’s entries');
  }
}

describe('RAM tier', () => {
  test('evicts least recently used entries beyond its byte budget', async () => {
    const ram = new RamTier(250);
    await ram.put('a'.repeat(64), new Uint8Array(100));
    await ram.put('b'.repeat(64), new Uint8Array(100));
    await ram.get('a'.repeat(64));
    await ram.put('c'.repeat(64), new Uint8Array(100));
    assert.deepEqual(await ram.keys(), ['a'.repeat(64), 'c'.repeat(64)]);
    assert.deepEqual(await ram.usage(), { entries: 2, bytes: 200 });
  });
});

describe('disk tier', () => {
  test('entries are owner-only files; the index is rebuilt from the folder and bounded by size', async () => {
    const folder = join(scratchDir(), 'kv');
    const disk = await DiskTier.open(folder, 1_000_000);
    const entries = [0, 1, 2].map((index) => randomEntry(index, 300_000));
    for (const [index, entry] of entries.entries()) await disk.put(keyOf(index), entry);
    assert.equal((await stat(folder)).mode & 0o777, 0o700);
    for (const name of await readdir(folder)) assert.equal((await stat(join(folder, name))).mode & 0o777, 0o600, name);
    assert.deepEqual(await disk.get(keyOf(1)), Buffer.from(entries[1]));
    // Oldest first by modification time after a restart; a smaller budget evicts the oldest.
    await utimes(join(folder, `${keyOf(0)}.kv`), new Date(1000), new Date(1000));
    const reopened = await DiskTier.open(folder, 700_000);
    assert.equal((await reopened.usage()).entries, 2);
    assert.equal(await reopened.get(keyOf(0)), undefined);
    assert.ok(await reopened.get(keyOf(2)));
  });

  test('an entry evicted or deleted before a read is a miss', async () => {
    const disk = await DiskTier.open(join(scratchDir(), 'kv'), 1_000_000);
    await disk.put(keyOf(0), randomEntry(0, 1000));
    const other = await DiskTier.open(disk.folder, 1_000_000);
    await other.delete(keyOf(0));
    assert.equal(await disk.get(keyOf(0)), undefined);
  });

  test('temp files of dead writers are swept at start, a live writer’s are kept', async () => {
    const folder = join(scratchDir(), 'kv');
    await DiskTier.open(folder, 1_000_000);
    const dead = join(folder, `.${keyOf(0)}.kv.999999999.abcdef.tmp`);
    const live = join(folder, `.${keyOf(1)}.kv.${process.pid}.abcdef.tmp`);
    await writeFile(dead, 'partial');
    await writeFile(live, 'partial');
    const disk = await DiskTier.open(folder, 1_000_000);
    assert.deepEqual((await readdir(folder)).sort(), [`.${keyOf(1)}.kv.${process.pid}.abcdef.tmp`]);
    assert.deepEqual(await disk.keys(), []);
  });

  test('two processes writing the same folder never read a torn entry', async () => {
    await assertNoTornReads('disk', join(scratchDir(), 'kv'));
  });

  test('kill -9 during writes leaves no visible partial entry', async () => {
    const folder = join(scratchDir(), 'kv');
    // Killed at staggered moments, so some kill lands inside a write of a 20 MB entry.
    for (const delay of [300, 410, 530]) {
      const child = spawn(process.execPath, [writerScript, 'disk', folder, '100000', '20000000']);
      await once(child.stdout, 'data');
      await sleep(delay);
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    const disk = await DiskTier.open(folder, 1 << 30);
    const names = await readdir(folder);
    assert.ok(names.every((name) => name.endsWith('.kv')), `only whole entries remain: ${names.join(', ')}`);
    for (const key of await disk.keys()) {
      const bytes = await disk.get(key);
      assert.ok(bytes);
      assert.doesNotThrow(() => decodeEntry(bytes));
    }
  });
});

describe('Redis tier', { skip: skipWithout('redis-server', 'redis-server') }, () => {
  let server: RedisServer;
  before(async () => {
    server = await RedisServer.start();
  });
  after(() => server.stop());

  test('stores, lists and clears entries; two processes never read a torn entry', async () => {
    const redis = await RedisTier.open({ url: server.url, prefix: 'test-a:' });
    await redis.put(keyOf(0), randomEntry(0, 1000));
    assert.ok(await redis.get(keyOf(0)));
    assert.deepEqual(await redis.keys(), [keyOf(0)]);
    assert.equal((await redis.usage()).entries, 1);
    await redis.clear();
    assert.equal(await redis.get(keyOf(0)), undefined);
    await redis.close();
    await assertNoTornReads('redis', server.url);
  });

  test('down or slow: skipped at once with one warning, then used again', async () => {
    const warnings: string[] = [];
    const redis = await RedisTier.open({ url: server.url, prefix: 'test-b:', timeoutMs: 200, retryAfterMs: 300, onWarning: (line) => warnings.push(line) });
    await redis.put(keyOf(0), randomEntry(0, 1000));

    const admin = server.client();
    await admin.ping();
    const sleeping = admin.call('DEBUG', 'SLEEP', '0.6');
    await sleep(50);
    await assert.rejects(redis.get(keyOf(0)), TierUnavailableError, 'a slow server times out');
    await assert.rejects(redis.get(keyOf(0)), TierUnavailableError, 'and is skipped without waiting');
    await sleeping;
    admin.disconnect();
    await sleep(350);
    assert.ok(await redis.get(keyOf(0)), 'used again after the rest');

    await server.stop();
    await assert.rejects(redis.put(keyOf(1), randomEntry(1, 1000)), TierUnavailableError);
    await assert.rejects(redis.get(keyOf(1)), TierUnavailableError);
    await server.restart();
    await sleep(600);
    await redis.put(keyOf(1), randomEntry(1, 1000));
    assert.ok(await redis.get(keyOf(1)));
    assert.equal(warnings.filter((line) => line.includes('unavailable')).length, 2, warnings.join('\n'));
    assert.equal(warnings.filter((line) => line.includes('is back')).length, 2);
    await redis.close();
  });
});

/** A real tier whose reads take `delayMs` longer, like a distant or overloaded one. */
class SlowTier implements CacheTier {
  readonly name: TierName;
  constructor(
    private readonly inner: CacheTier,
    private readonly delayMs: number,
  ) {
    this.name = inner.name;
  }
  async get(key: string): Promise<Uint8Array | undefined> {
    await sleep(this.delayMs);
    return this.inner.get(key);
  }
  put = (key: string, bytes: Uint8Array) => this.inner.put(key, bytes);
  delete = (key: string) => this.inner.delete(key);
  keys = () => this.inner.keys();
  usage = () => this.inner.usage();
  clear = () => this.inner.clear();
  close = () => this.inner.close();
}

describe('tiered store', () => {
  const accept = (bytes: Uint8Array): Uint8Array => decodeEntry(bytes).state;

  test('looks tiers up in order, promotes a hit, drops a bad entry and counts it', async () => {
    const ram = new RamTier(1 << 20);
    const disk = await DiskTier.open(join(scratchDir(), 'kv'), 1 << 20);
    const store = new TieredStore([ram, disk], 1 << 20);
    assert.equal(store.enqueue(keyOf(0), () => randomEntry(0, 1000), 1000), true);
    await store.flush();
    await ram.clear();
    assert.equal((await store.load(keyOf(0), accept))?.source, 'disk');
    await store.flush();
    assert.equal((await store.load(keyOf(0), accept))?.source, 'ram', 'promoted');
    const flipped = randomEntry(1, 1000);
    flipped[100] ^= 1;
    await disk.put(keyOf(1), flipped);
    assert.equal(await store.load(keyOf(1), accept), undefined);
    assert.equal(await disk.get(keyOf(1)), undefined, 'the bad entry is gone');
    const stats = store.stats();
    assert.deepEqual(stats.rejected, { checksum: 1 });
    assert.equal(stats.tiers.disk?.hits, 1);
    assert.equal(stats.tiers.ram?.hits, 1);
    assert.equal(stats.tiers.disk?.rejected, 1);
    assert.ok((stats.tiers.disk?.bytesLoaded ?? 0) > 2000);
    await store.close();
  });

  test('a Redis that is down costs a skipped lookup and a failed store, never an error', async () => {
    const redis = await RedisTier.open({ url: 'redis://127.0.0.1:1', timeoutMs: 100, retryAfterMs: 60_000 });
    const store = new TieredStore([new RamTier(1 << 20), redis], 1 << 20);
    assert.equal(await store.load(keyOf(0), accept), undefined);
    store.enqueue(keyOf(0), () => randomEntry(0, 1000), 1000);
    await store.flush();
    assert.equal((await store.load(keyOf(0), accept))?.source, 'ram');
    const stats = store.stats();
    assert.equal(stats.tiers.redis?.unavailable, 1);
    assert.equal(stats.tiers.redis?.failedStores, 1);
    await store.close();
  });

  test('a tier whose hits take longer than recomputing is skipped, and probed once in 16 lookups', async () => {
    const store = new TieredStore([new SlowTier(await DiskTier.open(join(scratchDir(), 'kv'), 1 << 20), 30)], 1 << 20);
    store.enqueue(keyOf(0), () => randomEntry(0, 1000), 1000);
    await store.flush();
    assert.equal((await store.load(keyOf(0), accept, 5))?.source, 'disk', 'measured on its first hit');
    const sources = [];
    for (let i = 0; i < 16; i++) sources.push((await store.load(keyOf(0), accept, 5))?.source);
    assert.deepEqual(sources.filter((source) => source === 'disk').length, 1, 'one probe in 16 lookups');
    assert.equal(store.stats().tiers.disk?.skippedSlow, 15);
    assert.equal((await store.load(keyOf(0), accept, 1000))?.source, 'disk', 'used when recomputing costs more');
  });

  test('a full queue drops new stores and counts them', () => {
    const store = new TieredStore([new RamTier(1 << 20)], 1500);
    assert.equal(store.enqueue(keyOf(0), () => randomEntry(0, 1000), 1000), true);
    assert.equal(store.enqueue(keyOf(1), () => randomEntry(1, 1000), 1000), false);
    assert.equal(store.stats().droppedStores, 1);
  });
});
