/**
 * Planted bad entries: each is a counted miss, the output is exactly the recompute's, nothing
 * crashes and nothing is left in the context.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Context } from '../src/llama/context.js';
import type { Model } from '../src/llama/model.js';
import { readGgufHeader } from '../src/gguf/reader.js';
import { CACHE_FORMAT_VERSION, continuationName } from '../src/kvcache/keys.js';
import { decodeEntry, encodeEntry, type RejectReason } from '../src/kvcache/entry.js';
import { readBlockState } from '../src/kvcache/blocks.js';
import { PrefixCache } from '../src/kvcache/prefix-cache.js';
import { DiskTier } from '../src/kvcache/tiers/disk.js';
import { assertSameGreedy, continueGreedy, type GreedyRun } from './helpers/greedy.js';
import { loadModel, scratchDir, testbedPrompts, testbedTarget } from './helpers/models.js';

const DEST = 0;
const SCRATCH = 1;
const BLOCK = 16;
const STEPS = 12;

/** A copy of the testbed target with one weight byte changed: same shapes, other model. */
async function alteredTestbedCopy(folder: string): Promise<string> {
  const path = join(folder, 'altered.gguf');
  await copyFile(testbedTarget, path);
  const info = await readGgufHeader(path);
  const tensor = info.tensors.find((candidate) => candidate.name.startsWith('blk.0.attn_k')) ?? info.tensors[0];
  const handle = await open(path, 'r+');
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, tensor.fileOffset + 7);
  byte[0] ^= 0x40;
  await handle.write(byte, 0, 1, tensor.fileOffset + 7);
  await handle.close();
  return path;
}

/** Block 0's entry made in another context (model or KV type) for the same tokens, under its own keys. */
async function entryFromOtherContext(context: Context, prompt: number[], fingerprintFolder: string): Promise<Uint8Array> {
  const folder = join(scratchDir(), 'other');
  const cache = await PrefixCache.create(context, SCRATCH, { tiers: [await DiskTier.open(folder, 1 << 30)], blockSize: BLOCK, fingerprintFolder });
  await continueGreedy(context, DEST, prompt, 0, 0);
  cache.storeBlocks(DEST, prompt, '', SCRATCH);
  await cache.close();
  return readFile(join(folder, `${cache.keysFor(prompt)[0]}.kv`));
}

describe('planted bad cache entries on the testbed target', () => {
  let model: Model;
  let context: Context;
  let cache: PrefixCache;
  let disk: DiskTier;
  let prompt: number[];
  let reference: GreedyRun;
  let goodEntry: Uint8Array;
  let entryPath: string;
  const folder = scratchDir();
  const fingerprintFolder = join(folder, 'fingerprints');

  before(async () => {
    model = await loadModel(testbedTarget);
    context = Context.create(model, { contextSize: 256, sequences: 2 });
    disk = await DiskTier.open(join(folder, 'kv'), 1 << 30);
    cache = await PrefixCache.create(context, SCRATCH, { tiers: [disk], blockSize: BLOCK, fingerprintFolder });
    prompt = model.tokenizer.tokenize(testbedPrompts.story).slice(0, 2 * BLOCK + 5);
    reference = await continueGreedy(context, DEST, prompt, 0, STEPS);
    cache.storeBlocks(DEST, prompt, '', SCRATCH);
    await cache.flush();
    context.seqRemove(DEST);
    entryPath = join(disk.folder, `${cache.keysFor(prompt)[0]}.kv`);
    goodEntry = await readFile(entryPath);
  });
  after(() => context.dispose());

  /** Plants `bytes` as block 0's entry; the lookup must miss for `reason` and the output equal the recompute's. */
  async function assertPlantedMiss(bytes: Uint8Array, reason: RejectReason): Promise<void> {
    await writeFile(entryPath, bytes);
    try {
      const before = cache.stats().rejected[reason] ?? 0;
      const match = await cache.match(prompt);
      assert.equal(match.tokens, 0, 'no block is used');
      assert.equal(cache.stats().rejected[reason], before + 1, `counted as ${reason}`);
      assert.equal(cache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1), 0);
      assert.equal(context.seqPosMax(DEST), -1, 'nothing entered the destination');
      assert.equal(context.seqPosMax(SCRATCH), -1, 'nothing is left in the scratch sequence');
      assert.deepEqual((await continueGreedy(context, DEST, prompt, 0, STEPS)).tokens, reference.tokens);
    } finally {
      context.seqRemove(DEST);
      await writeFile(entryPath, goodEntry);
    }
  }

  test('the good entry is a hit and restores losslessly', async () => {
    const match = await cache.match(prompt);
    assert.equal(match.tokens, prompt.length, 'two blocks and the partial one');
    const restored = cache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1);
    assertSameGreedy(await continueGreedy(context, DEST, prompt, restored, STEPS), reference);
    context.seqRemove(DEST);
  });

  test('a flipped bit fails the checksum', async () => {
    const flipped = Uint8Array.from(goodEntry);
    flipped[Math.floor(flipped.length / 2)] ^= 0x04;
    await assertPlantedMiss(flipped, 'checksum');
  });

  test('a truncated entry and an empty one', async () => {
    await assertPlantedMiss(goodEntry.subarray(0, goodEntry.length - 1000), 'checksum');
    await assertPlantedMiss(goodEntry.subarray(0, 50), 'truncated');
    await assertPlantedMiss(new Uint8Array(0), 'empty');
  });

  test('an entry of an older format', async () => {
    const entry = decodeEntry(goodEntry);
    const older = encodeEntry(entry);
    new DataView(older.buffer).setUint32(4, CACHE_FORMAT_VERSION - 1, true);
    await assertPlantedMiss(older, 'format');
  });

  test('another model with the same shapes: its entry under our key', async () => {
    const otherModel = await loadModel(await alteredTestbedCopy(folder));
    const otherContext = Context.create(otherModel, { contextSize: 256, sequences: 2 });
    const foreign = await entryFromOtherContext(otherContext, prompt, fingerprintFolder);
    otherContext.dispose();
    await assertPlantedMiss(foreign, 'namespace');
  });

  test('another KV type: its entry under our key, and its state behind a forged entry of ours', async () => {
    const f32Context = Context.create(model, { contextSize: 256, sequences: 2, kvType: 'f32' });
    const foreign = await entryFromOtherContext(f32Context, prompt, fingerprintFolder);
    f32Context.dispose();
    await assertPlantedMiss(foreign, 'namespace');
    const ours = decodeEntry(goodEntry);
    await assertPlantedMiss(encodeEntry({ ...ours, state: decodeEntry(foreign).state }), 'layout');
  });

  test('wrong tokens behind a forged key, and the right tokens over another block’s state', async () => {
    const ours = decodeEntry(goodEntry);
    const otherTokens = Int32Array.from(ours.tokens, (token) => (token + 1) % model.metadata.vocabularySize);
    await assertPlantedMiss(encodeEntry({ ...ours, tokens: otherTokens }), 'key');
    await continueGreedy(context, DEST, prompt, 0, 0);
    const secondBlockState = readBlockState(context, DEST, SCRATCH, { first: BLOCK, end: 2 * BLOCK });
    context.seqRemove(DEST);
    await assertPlantedMiss(encodeEntry({ ...ours, state: secondBlockState }), 'layout');
  });

  test('a partial block: flipped, or under the continuation name of another prefix', async () => {
    const [first, second] = cache.keysFor(prompt);
    const pathOf = (parentHex: string) => join(disk.folder, `${continuationName(Buffer.from(parentHex, 'hex')).toString('hex')}.kv`);
    const partial = await readFile(pathOf(second));
    // The prompt's first block, then other tokens: the lookup asks for the partial block after block 0.
    const diverging = [...prompt.slice(0, BLOCK), ...prompt.slice(BLOCK).map((token) => (token + 7) % model.metadata.vocabularySize)];
    const expectMiss = async (tokens: number[], path: string, bytes: Uint8Array, matched: number, reason: RejectReason) => {
      await writeFile(path, bytes);
      const before = cache.stats().rejected[reason] ?? 0;
      const match = await cache.match(tokens);
      assert.equal(match.tokens, matched, 'only the whole blocks are used');
      assert.equal(cache.stats().rejected[reason], before + 1, `counted as ${reason}`);
      const restored = cache.restorePrefix(match, SCRATCH, DEST, tokens.length - 1);
      assert.equal(context.seqPosMax(DEST), restored - 1, 'the destination holds exactly the restored blocks');
      const recompute = await continueGreedy(context, SCRATCH, tokens, 0, STEPS);
      context.seqRemove(SCRATCH);
      assertSameGreedy(await continueGreedy(context, DEST, tokens, restored, STEPS), recompute);
      context.seqRemove(DEST);
    };
    const flipped = Uint8Array.from(partial);
    flipped[flipped.length - 40] ^= 0x10;
    await expectMiss(prompt, pathOf(second), flipped, 2 * BLOCK, 'checksum');
    await expectMiss(diverging, pathOf(first), partial, BLOCK, 'key');
    await writeFile(pathOf(second), partial);
  });

  test('a restore llama.cpp refuses (no free cells) is a counted miss and poisons nothing', async () => {
    const crowded = Context.create(model, { contextSize: 256, sequences: 3 });
    const crowdedCache = await PrefixCache.create(crowded, SCRATCH, { tiers: [disk], blockSize: BLOCK, fingerprintFolder });
    const match = await crowdedCache.match(prompt);
    assert.equal(match.tokens, prompt.length);
    const filler = model.tokenizer.tokenize(testbedPrompts.story.repeat(12)).slice(0, crowded.contextSize - BLOCK / 2);
    const crowd = 2;
    await continueGreedy(crowded, crowd, filler, 0, 0);
    assert.equal(crowdedCache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1), 0);
    assert.equal(crowdedCache.stats().rejected.restore, 1);
    assert.equal(crowded.seqPosMax(DEST), -1);
    assert.equal(crowded.seqPosMax(SCRATCH), -1);
    assert.equal(crowded.seqPosMax(crowd), filler.length - 1, 'the crowding sequence is intact');
    crowded.seqRemove(crowd);
    const restored = crowdedCache.restorePrefix(await crowdedCache.match(prompt), SCRATCH, DEST, prompt.length - 1);
    assert.equal(restored, 2 * BLOCK, 'the entry is still there and restores once there is room');
    assertSameGreedy(await continueGreedy(crowded, DEST, prompt, restored, STEPS), reference);
    crowded.dispose();
  });
});
