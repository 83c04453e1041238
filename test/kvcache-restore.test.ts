/** The prefix cache on real models: restored prefix + greedy decoding equals a full recompute. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Context } from '../src/llama/context.js';
import type { Model } from '../src/llama/model.js';
import { ensureTestModel } from '../src/gguf/make-model.js';
import { PrefixCache } from '../src/kvcache/prefix-cache.js';
import { DiskTier } from '../src/kvcache/tiers/disk.js';
import { RamTier } from '../src/kvcache/tiers/ram.js';
import { RedisTier } from '../src/kvcache/tiers/redis.js';
import { assertSameGreedy, continueGreedy } from './helpers/greedy.js';
import { loadModel, scratchDir, testbedPrompts, testbedTarget } from './helpers/models.js';
import { RedisServer } from './helpers/redis.js';
import { skipWithout } from './helpers/system-tools.js';

const DEST = 0;
const SCRATCH = 1;
const MB = 1024 * 1024;

interface Case {
  readonly name: string;
  readonly modelPath: () => Promise<string>;
  readonly prompt: (model: Model) => number[];
  readonly blockSize: number;
  readonly steps: number;
}

const cases: Case[] = [
  {
    name: 'testbed target',
    modelPath: async () => testbedTarget,
    // Two stories back to back: about 150 tokens, two full 64-token blocks and a tail.
    prompt: (model) => model.tokenizer.tokenize(testbedPrompts.story + 'Once upon a time, Otto lived in a tall oak by the river.'.repeat(6)),
    blockSize: 64,
    steps: 24,
  },
  {
    name: 'random-weight qwen2.5-0.5b shape',
    modelPath: () => ensureTestModel('qwen2.5-0.5b', 'q8_0', 1),
    // Kept short: 0.5B on a shared CPU. Three 16-token blocks and a tail.
    prompt: (model) => model.tokenizer.tokenize('The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire in the old house.'),
    blockSize: 16,
    steps: 6,
  },
];

for (const testCase of cases) {
  describe(`prefix cache restore on the ${testCase.name}`, () => {
    let model: Model;
    let prompt: number[];
    const folder = scratchDir();
    before(async () => {
      model = await loadModel(await testCase.modelPath());
      prompt = testCase.prompt(model);
      assert.ok(prompt.length > 2 * testCase.blockSize, `prompt of ${prompt.length} tokens spans two blocks`);
    });

    test('a restored prefix decodes the same greedy tokens as a full recompute, from RAM and from disk in a new context', async () => {
      const first = Context.create(model, { contextSize: 512, sequences: 2 });
      const disk = await DiskTier.open(join(folder, 'kv'), 64 * MB);
      const cache = await PrefixCache.create(first, SCRATCH, { tiers: [new RamTier(64 * MB), disk], blockSize: testCase.blockSize });
      const reference = await continueGreedy(first, DEST, prompt, 0, testCase.steps);
      // As the engine stores them: the prompt's blocks once it is in, the rest when the request ends.
      const sequence = [...prompt, ...reference.tokens];
      const wholeBlocks = (tokens: number[]) => Math.floor(tokens.length / testCase.blockSize);
      const partial = (tokens: number[]) => (tokens.length % testCase.blockSize > 0 ? 1 : 0);
      assert.equal(cache.storeBlocks(DEST, prompt, '', SCRATCH), wholeBlocks(prompt) + partial(prompt), "the prompt's whole blocks, then its partial one");
      assert.equal(cache.storeBlocks(DEST, sequence, '', SCRATCH), wholeBlocks(sequence) - wholeBlocks(prompt) + partial(sequence), 'then the answer\'s');
      await cache.flush();
      assert.equal(cache.storeBlocks(DEST, sequence, '', SCRATCH), 0, 'stored blocks are not read again');

      // RAM hit in the same context, after the sequence's cells are gone.
      first.seqRemove(DEST);
      const fromRam = await cache.match(prompt);
      assert.equal(fromRam.tokens, prompt.length, 'whole blocks, then the partial one');
      assert.equal(fromRam.blocks.length, wholeBlocks(prompt) + 1);
      assert.ok(fromRam.blocks.every((block) => block.source === 'ram'));
      const restored = cache.restorePrefix(fromRam, SCRATCH, DEST, prompt.length - 1);
      assert.equal(restored, prompt.length - 1, 'all but the last token, decoded again for its logits');
      assert.equal(first.seqPosMax(DEST), prompt.length - 2, 'the cells past the limit are dropped');
      assert.equal(first.seqPosMax(SCRATCH), -1, 'the scratch sequence is empty again');
      assertSameGreedy(await continueGreedy(first, DEST, prompt, restored, testCase.steps), reference);
      assert.equal(cache.stats().tiers.ram?.hits, fromRam.blocks.length);
      await cache.close();
      first.dispose();

      // Disk hit in a fresh context with a fresh cache (as after a restart).
      const second = Context.create(model, { contextSize: 512, sequences: 2 });
      const reopened = await PrefixCache.create(second, SCRATCH, {
        tiers: [new RamTier(64 * MB), await DiskTier.open(join(folder, 'kv'), 64 * MB)],
        blockSize: testCase.blockSize,
      });
      const fromDisk = await reopened.match(prompt);
      assert.ok(fromDisk.blocks.length > 0 && fromDisk.blocks.every((block) => block.source === 'disk'));
      const fromDiskRestored = reopened.restorePrefix(fromDisk, SCRATCH, DEST, prompt.length - 1);
      assert.equal(fromDiskRestored, prompt.length - 1);
      assertSameGreedy(await continueGreedy(second, DEST, prompt, fromDiskRestored, testCase.steps), reference);
      await reopened.flush();
      assert.equal(reopened.stats().tiers.ram?.stores, fromDisk.blocks.length, 'disk hits are promoted to RAM');
      await reopened.close();
      second.dispose();
    });
  });
}

describe('prefix cache bookkeeping on the testbed target', () => {
  let model: Model;
  let context: Context;
  let cache: PrefixCache;
  before(async () => {
    model = await loadModel(testbedTarget);
    context = Context.create(model, { contextSize: 512, sequences: 3 });
    cache = await PrefixCache.create(context, SCRATCH, { tiers: [new RamTier(64 * MB)], blockSize: 16 });
  });
  after(() => context.dispose());

  test('a fully cached prompt keeps its last token for decoding; a salt separates tenants', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.story).slice(0, 32);
    await continueGreedy(context, DEST, prompt, 0, 0);
    assert.equal(cache.storeBlocks(DEST, prompt, 'tenant-a', SCRATCH), 2);
    context.seqRemove(DEST);
    const match = await cache.match(prompt, 'tenant-a');
    assert.equal(match.tokens, 32);
    assert.ok(match.blocks.every((block) => block.source === 'queued'), 'stores not written yet are found in the queue');
    assert.equal(cache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1), 31);
    assert.equal(context.seqPosMax(DEST), 30);
    assert.equal((await cache.match(prompt, 'tenant-b')).tokens, 0, 'another salt sees nothing');
    assert.equal((await cache.match(prompt)).tokens, 0, 'no salt sees nothing');
    context.seqRemove(DEST);
    const stats = cache.stats();
    assert.deepEqual([stats.lookups, stats.hitBlocks, stats.missBlocks, stats.queuedHits, stats.storedBlocks], [3, 2, 2, 2, 2]);
  });

  test('a stored partial block is reused as far as its tokens match, losslessly', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.story + ' Otto flew home over the hills and the river.'.repeat(3)).slice(0, 40);
    await continueGreedy(context, DEST, prompt, 0, 0);
    assert.equal(cache.storeBlocks(DEST, prompt, 'partial', SCRATCH), 3, 'two whole blocks and the partial one');
    context.seqRemove(DEST);
    const before = cache.stats().hitContinuations;
    // Shares 36 tokens with the stored prompt: two blocks and 4 of the partial block's 8.
    const next = [...prompt.slice(0, 36), ...model.tokenizer.tokenize(' Then the crow sang a song about the sea.')];
    assert.notEqual(next[36], prompt[36]);
    const match = await cache.match(next, 'partial');
    assert.equal(match.tokens, 36);
    assert.equal(cache.stats().hitContinuations, before + 1);
    assert.equal(cache.restorePrefix(match, SCRATCH, DEST, next.length - 1), 36);
    assert.equal(context.seqPosMax(DEST), 35, 'the partial block\'s cells past the match are dropped');
    const recompute = await continueGreedy(context, 2, next, 0, 8);
    context.seqRemove(2);
    assertSameGreedy(await continueGreedy(context, DEST, next, 36, 8), recompute);
    context.seqRemove(DEST);
    // Diverging at the block boundary: the partial block has nothing to give.
    const diverging = [...prompt.slice(0, 32), ...next.slice(36)];
    assert.equal((await cache.match(diverging, 'partial')).tokens, 32);
  });

  test('restoring skips blocks the destination already holds and never touches other sequences', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.story + ' Otto flew home over the hills and the river.'.repeat(3)).slice(0, 48);
    assert.equal(prompt.length, 48);
    const other = 2;
    await continueGreedy(context, other, prompt.slice(0, 20), 0, 0);
    await continueGreedy(context, DEST, prompt, 0, 0);
    cache.storeBlocks(DEST, prompt, '', SCRATCH);
    context.seqRemove(DEST, 16, -1);
    const match = await cache.match(prompt);
    assert.equal(match.tokens, 48);
    const before = cache.stats();
    assert.equal(cache.restorePrefix(match, SCRATCH, DEST), 48);
    assert.equal(context.seqPosMin(DEST), 0);
    assert.equal(cache.stats().residentTokens - before.residentTokens, 16, 'the resident block is reported apart');
    assert.equal(cache.stats().restoredTokens - before.restoredTokens, 32);
    assert.equal(context.seqPosMax(other), 19, 'the other sequence is untouched');
    context.seqRemove(DEST);
    context.seqRemove(other);
  });
});

describe('prefix cache shared through Redis on the testbed target', { skip: skipWithout('redis-server', 'redis-server') }, () => {
  let server: RedisServer;
  before(async () => {
    server = await RedisServer.start();
  });
  after(() => server.stop());

  test('a second cache on another context restores what the first stored, losslessly', async () => {
    const model = await loadModel(testbedTarget);
    const prompt = model.tokenizer.tokenize(testbedPrompts.story + ' Otto looked at the moon.'.repeat(4));
    const writer = Context.create(model, { contextSize: 256, sequences: 2 });
    const first = await PrefixCache.create(writer, SCRATCH, { tiers: [await RedisTier.open({ url: server.url })], blockSize: 32 });
    const reference = await continueGreedy(writer, DEST, prompt, 0, 16);
    first.storeBlocks(DEST, prompt, 'tenant', SCRATCH);
    await first.close();
    writer.dispose();

    const reader = Context.create(model, { contextSize: 256, sequences: 2 });
    const second = await PrefixCache.create(reader, SCRATCH, { tiers: [new RamTier(64 * MB), await RedisTier.open({ url: server.url })], blockSize: 32 });
    const match = await second.match(prompt, 'tenant');
    assert.ok(prompt.length % 32 > 0);
    assert.equal(match.tokens, prompt.length, 'whole blocks and the partial one');
    assert.ok(match.blocks.every((block) => block.source === 'redis'));
    const restored = second.restorePrefix(match, SCRATCH, DEST, prompt.length - 1);
    assertSameGreedy(await continueGreedy(reader, DEST, prompt, restored, 16), reference);
    assert.ok((second.stats().tiers.redis?.bytesLoaded ?? 0) > 0);
    await second.close();
    reader.dispose();
  });
});
