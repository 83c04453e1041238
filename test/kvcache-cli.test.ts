/** `tachyon cache stats|verify|clear` on a disk folder and a Redis server with good and bad entries. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskTier } from '../src/kvcache/tiers/disk.js';
import { RedisTier } from '../src/kvcache/tiers/redis.js';
import { defaultCacheFolder } from '../src/kvcache/tiers/open.js';
import { tachyon } from './helpers/cli.js';
import { randomEntry, sharedBlock } from './helpers/kv-writer.js';
import { scratchDir } from './helpers/models.js';
import { RedisServer } from './helpers/redis.js';
import { skipWithout } from './helpers/system-tools.js';

const keyOf = (index: number): string => sharedBlock(index).key.toString('hex');

describe('tachyon cache', { skip: skipWithout('redis-server', 'redis-server') }, () => {
  let server: RedisServer;
  const dir = join(scratchDir(), 'kv');
  before(async () => {
    server = await RedisServer.start();
    const disk = await DiskTier.open(dir, 1 << 30);
    await disk.put(keyOf(0), randomEntry(0, 1000));
    await disk.put(keyOf(1), randomEntry(1, 1000));
    const flipped = randomEntry(2, 1000);
    flipped[500] ^= 1;
    await writeFile(join(dir, `${keyOf(2)}.kv`), flipped);
    const redis = await RedisTier.open({ url: server.url });
    await redis.put(keyOf(0), randomEntry(0, 2000));
    await redis.close();
  });
  after(() => server.stop());

  test('stats counts the entries of the disk folder and Redis', async () => {
    const result = await tachyon('cache', 'stats', '--dir', dir, '--redis', server.url, '--json');
    assert.equal(result.code, 0, result.stderr);
    const stats = JSON.parse(result.stdout) as { tiers: { tier: string; entries: number; bytes: number }[] };
    assert.deepEqual(stats.tiers.map(({ tier, entries }) => [tier, entries]), [['disk', 3], ['redis', 1]]);
    assert.ok(stats.tiers[1].bytes > 2000);
  });

  test('verify finds the bad entry (exit 1), --remove-bad removes it, clear empties the tiers', async () => {
    const found = await tachyon('cache', 'verify', '--dir', dir, '--redis', server.url);
    assert.equal(found.code, 1);
    assert.match(found.stdout, /disk: 3 entries, 2 good, bad: 1 checksum/);
    assert.match(found.stdout, /redis: 1 entries, 1 good/);
    const removed = await tachyon('cache', 'verify', '--dir', dir, '--remove-bad', '--json');
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(JSON.parse(removed.stdout), { tiers: [{ tier: 'disk', entries: 3, good: 2, bad: { checksum: 1 }, removed: 1 }] });
    const cleared = await tachyon('cache', 'clear', '--dir', dir, '--redis', server.url);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /disk: removed 2 entries\nredis: removed 1 entries/);
  });

  test('an unreachable Redis is one clear line and exit 1', async () => {
    const result = await tachyon('cache', 'stats', '--dir', dir, '--redis', 'redis://127.0.0.1:1');
    assert.equal(result.code, 1);
    assert.match(result.stderr.trim(), /^tachyon: redis at redis:\/\/127\.0\.0\.1:1 is unavailable \(.*ECONNREFUSED.*\)$/);
  });

  test('bench kvcache smoke run: every tier restores the cold run\'s first token, the cached chat says the same', async () => {
    const report = join(scratchDir(), 'report');
    const result = await tachyon(
      'bench', 'kvcache', '--prefix', '64', '--question', '8', '--runs', '1', '--block-size', '16', '--tiers', 'ram,disk,redis', '--redis', server.url,
      '--chat-turns', '2', '--user-tokens', '16', '--new-tokens', '8', '--shared-redis', '--json', '--report', report,
    );
    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout) as {
      prefix: Record<string, { cold_ttft_ms: number; ram_ttft_ms: number; disk_ttft_ms: number; redis_ttft_ms: number; restored_tokens: number; identical: boolean; ceiling_x: number; breakdown: Record<string, { lookup_ms: number; restore_ms: number; prefill_ms: number }> }>;
      chat10: { turns: number; identical: boolean; cached_tier: string; cold_ms: number; cached_ms: number; cached_decode_ms: number; cached_cache_ms: number; ceiling_x: number };
      shared_redis: { prefix_tokens: number; restored_tokens: number; identical: boolean };
    };
    const row = output.prefix['64'];
    assert.equal(row.identical, true);
    for (const value of [row.cold_ttft_ms, row.ram_ttft_ms, row.disk_ttft_ms, row.redis_ttft_ms]) assert.ok(value > 0);
    assert.ok(row.restored_tokens >= 64 && row.restored_tokens < 64 + 8, `every tier restored the prefix, and of the new question only what it shares with the earlier one (${row.restored_tokens})`);
    for (const tier of ['ram', 'disk', 'redis']) {
      const { lookup_ms, restore_ms, prefill_ms } = row.breakdown[tier];
      assert.ok(lookup_ms > 0 && restore_ms > 0 && prefill_ms > 0, `${tier}: where a hit's time goes`);
      assert.ok(lookup_ms + restore_ms + prefill_ms <= row[`${tier}_ttft_ms` as 'ram_ttft_ms'] * 1.01, `${tier}: the parts add up to at most the TTFT`);
    }
    const fastest = Math.min(row.ram_ttft_ms, row.disk_ttft_ms, row.redis_ttft_ms);
    assert.ok(row.ceiling_x >= (0.95 * row.cold_ttft_ms) / fastest, 'a free cache gains at least what the fastest tier did');
    const { chat10 } = output;
    assert.ok(chat10.cached_decode_ms > 0 && chat10.cached_decode_ms < chat10.cached_ms, 'the chat\'s decoding is part of its total');
    assert.ok(chat10.cached_cache_ms > 0 && chat10.cached_cache_ms < chat10.cached_ms - chat10.cached_decode_ms, 'the cache\'s own work is part of the rest');
    // ceiling_x is rounded to 2 decimals: where the cache's own work is small, it may round below the ratio.
    assert.ok(chat10.ceiling_x >= chat10.cold_ms / chat10.cached_ms - 0.005, 'a free cache gains at least what this one did');
    assert.deepEqual(output.shared_redis, { ...output.shared_redis, prefix_tokens: 64, restored_tokens: row.restored_tokens, identical: true }, 'a second process restores what the first stored');
    assert.deepEqual(output.chat10 && [output.chat10.turns, output.chat10.identical, output.chat10.cached_tier], [2, true, 'ram']);
    assert.match(await readFile(join(report, 'bench-kvcache.svg'), 'utf8'), /^<svg[\s\S]*64-token prefix[\s\S]*2-turn chat/);
  });

  test('the default folder is under the user cache folder', () => {
    assert.equal(defaultCacheFolder({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/tachyon/kv');
    assert.match(defaultCacheFolder({}), /\.cache\/tachyon\/kv$/);
  });
});
