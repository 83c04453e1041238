/** The binding against real llama.cpp on real models: batches, KV memory ops, sequence state. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBatch } from '../src/llama/batch.js';
import { Context } from '../src/llama/context.js';
import type { Model } from '../src/llama/model.js';
import { argmax, loadModel, testbedPrompts, testbedTarget, tinyModelPath, top2Gap } from './helpers/models.js';

/** Greedy continuation of `prompt` decoded one token at a time; returns the tokens and each step's logits. */
async function greedySingleSteps(context: Context, prompt: number[], steps: number) {
  const batch = new TokenBatch(512, 1);
  context.seqRemove(-1);
  batch.addSequence(prompt, 0);
  await context.decode(batch);
  const tokens: number[] = [];
  const logits: Float32Array[] = [context.logits(batch.size - 1).slice()];
  for (let i = 0; i < steps; i++) {
    const token = argmax(logits[i]);
    tokens.push(token);
    batch.clear().add(token, prompt.length + i, 0, true);
    await context.decode(batch);
    logits.push(context.logits(0).slice());
  }
  batch.dispose();
  return { tokens, logits };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe('llama.cpp binding on the testbed target', () => {
  let model: Model;
  let context: Context;
  before(async () => {
    model = await loadModel(testbedTarget);
    context = Context.create(model, { contextSize: 1024, sequences: 4 });
  });
  after(() => context.dispose());

  test('metadata comes from the GGUF', () => {
    const m = model.metadata;
    assert.equal(m.architecture, 'llama');
    assert.equal(m.vocabularySize, 1024);
    assert.equal(m.contextLength, 1024);
    assert.equal(m.embeddingSize, 256);
    assert.equal(m.layers, 6);
    assert.equal(m.specialTokens.eos, 5);
    assert.equal(m.specialTokens.bos, 1);
    assert.match(m.chatTemplate ?? '', /<\|assistant\|>/);
  });

  test('tokenizer round trip, control tokens and UTF-8 split across byte tokens', () => {
    const text = 'Ella met a gentle lamb named Toby. 47 + 85 = 132.\nCafé ☕ naïve';
    const tokens = model.tokenizer.tokenize(text, { addSpecial: false });
    assert.equal(model.tokenizer.detokenize(tokens), text);
    const withBos = model.tokenizer.tokenize(text);
    assert.equal(withBos[0], 1);
    assert.deepEqual(model.tokenizer.tokenize('<|end|>', { addSpecial: false }), [5]);
    // "☕" is three bytes, each its own byte-fallback token: no partial character may be emitted.
    const cup = model.tokenizer.tokenize('☕', { addSpecial: false });
    assert.ok(cup.length > 1, 'the cup is split into byte tokens');
    assert.equal(model.tokenizer.detokenize(cup), '☕');
  });

  test('n tokens in one batch give the same argmax at every position as n single-token decodes', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.story);
    const single = await greedySingleSteps(context, prompt, 64);
    const all = [...prompt, ...single.tokens];
    const batch = new TokenBatch(512, 1);
    context.seqRemove(-1);
    batch.addSequence(all, 0, 0, true);
    await context.decode(batch);
    for (let i = 0; i <= single.tokens.length; i++) {
      const batched = context.logits(prompt.length - 1 + i);
      const reference = single.logits[i];
      if (argmax(batched) !== argmax(reference)) {
        assert.ok(top2Gap(reference) < 1e-3, `argmax differs at step ${i} without a near-tie`);
      }
      assert.ok(maxAbsDiff(batched, reference) < 1e-2, `logits close at step ${i}`);
    }
    batch.dispose();
  });

  test('seq_rm rollback then re-decode reproduces the logits', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.reasoning);
    const { tokens, logits } = await greedySingleSteps(context, prompt, 12);
    // Forget the last 6 generated tokens, then decode them again one at a time.
    const keep = prompt.length + 6;
    assert.equal(context.seqRemove(0, keep, -1), true);
    assert.equal(context.seqPosMax(0), keep - 1);
    const batch = new TokenBatch(8, 1);
    for (let i = 6; i < 12; i++) {
      batch.clear().add(tokens[i], prompt.length + i, 0, true);
      await context.decode(batch);
      assert.deepEqual(context.logits(0), logits[i + 1], `step ${i} reproduces exactly`);
    }
    batch.dispose();
  });

  test('a two-branch token tree in one batch gives the logits of each branch decoded alone', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.story);
    const branchA = model.tokenizer.tokenize(' Once upon a time', { addSpecial: false });
    const branchB = model.tokenizer.tokenize(' There was a crow', { addSpecial: false });
    const shared = model.tokenizer.tokenize('Title:', { addSpecial: false });
    const alone: Float32Array[][] = [];
    const batch = new TokenBatch(512, 2);
    for (const branch of [branchA, branchB]) {
      context.seqRemove(-1);
      batch.clear().addSequence([...prompt, ...shared, ...branch], 0, 0, true);
      await context.decode(batch);
      alone.push(branch.map((_, i) => context.logits(prompt.length + shared.length + i).slice()));
    }
    // Prompt in sequence 0, copied to sequence 1; the shared node carries both ids; each branch its own.
    context.seqRemove(-1);
    batch.clear().addSequence(prompt, 0, 0, false);
    await context.decode(batch);
    context.seqCopy(0, 1);
    batch.clear();
    let position = prompt.length;
    for (const token of shared) batch.add(token, position++, [0, 1], false);
    const indexA = branchA.map((token, i) => batch.add(token, position + i, 0, true));
    const indexB = branchB.map((token, i) => batch.add(token, position + i, 1, true));
    await context.decode(batch);
    indexA.forEach((index, i) => assert.ok(maxAbsDiff(context.logits(index), alone[0][i]) < 1e-3, `branch A node ${i}`));
    indexB.forEach((index, i) => assert.ok(maxAbsDiff(context.logits(index), alone[1][i]) < 1e-3, `branch B node ${i}`));
    // Keep branch B only: no cell of A may survive.
    context.seqKeep(1);
    assert.equal(context.seqPosMax(0), -1);
    assert.equal(context.seqPosMax(1), position + branchB.length - 1);
    batch.dispose();
  });

  test('sequence state save, clear, restore reproduces the next-token logits exactly', async () => {
    const prompt = model.tokenizer.tokenize(testbedPrompts.reasoning);
    const batch = new TokenBatch(512, 1);
    context.seqRemove(-1);
    batch.addSequence(prompt, 0);
    await context.decode(batch);
    const bytes = context.saveSequence(0);
    assert.ok(bytes.length > 0);
    batch.clear().add(argmax(context.logits(batch.size - 1)), prompt.length, 0, true);
    await context.decode(batch);
    const expected = context.logits(0).slice();

    context.clearMemory();
    assert.equal(context.seqPosMax(0), -1);
    context.restoreSequence(0, bytes);
    assert.equal(context.seqPosMax(0), prompt.length - 1);
    await context.decode(batch);
    assert.deepEqual(context.logits(0), expected);
    batch.dispose();
  });

  test('positions can be shifted with seq_add', async () => {
    const batch = new TokenBatch(16, 1);
    context.seqRemove(-1);
    batch.addSequence([1, 3, 18, 650], 0);
    await context.decode(batch);
    context.seqShift(0, 0, -1, 10);
    assert.equal(context.seqPosMin(0), 10);
    assert.equal(context.seqPosMax(0), 13);
    batch.dispose();
  });
});

describe('llama.cpp binding on a generated model', () => {
  test('a seeded random-weight model loads, tokenizes English into pieces and decodes finite logits', async () => {
    const model = await loadModel(await tinyModelPath());
    const text = 'Hello world, the cat sat on the mat.';
    const tokens = model.tokenizer.tokenize(text, { addSpecial: false });
    assert.ok(tokens.length < text.length, 'multi-character pieces');
    assert.equal(model.tokenizer.detokenize(tokens), text);
    const context = Context.create(model, { contextSize: 128 });
    const batch = new TokenBatch(64, 1);
    batch.addSequence(tokens, 0, 0, true);
    await context.decode(batch);
    for (let i = 0; i < tokens.length; i++) assert.ok(context.logits(i).every(Number.isFinite));
    batch.dispose();
    context.dispose();
  });

  test('1,000 context create/dispose cycles do not grow memory', async () => {
    const model = await loadModel(await tinyModelPath());
    const cycle = () => Context.create(model, { contextSize: 256 }).dispose();
    for (let i = 0; i < 50; i++) cycle(); // allocator warm-up
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 1000; i++) cycle();
    const grown = process.memoryUsage().rss - before;
    assert.ok(grown < 32 * 2 ** 20, `RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB over 1,000 cycles`);
  });

  test('a disposed context refuses work instead of crashing', async () => {
    const model = await loadModel(await tinyModelPath());
    const context = Context.create(model, { contextSize: 64 });
    context.dispose();
    const batch = new TokenBatch(4, 1);
    batch.add(1, 0, 0, true);
    await assert.rejects(context.decode(batch), /disposed/);
    assert.throws(() => context.logits(0), /disposed/);
    batch.dispose();
  });
});
