/**
 * `make-model --embed`: the testbed target embedded in a wider, deeper GQA shape computes the
 * same function (same greedy tokens, logits within F16 rounding), and shapes that cannot hold it
 * are refused with a clear error.
 *
 * The test shape is a small custom one (d 512, 8 layers, 8 heads / 4 KV heads, FFN 1024): wider,
 * deeper, with GQA groups of 2 so query heads land at slots 0, 2, 4, 6, yet small enough to
 * build and run in seconds. The CLI's `m` shape (≈0.7 GB at F16) follows the same code path.
 */
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkEmbeddable, embedModel, EMBED_SHAPES, EMBED_VERSION, ensureEmbeddedModel, type ModelShape, querySlots } from '../src/gguf/embed.js';
import { describeModel, GgufError, readGgufHeader, readTensorData } from '../src/gguf/reader.js';
import { TokenBatch } from '../src/llama/batch.js';
import { Context } from '../src/llama/context.js';
import type { Model } from '../src/llama/model.js';
import { PlainDecoder } from '../src/generate/decoder.js';
import { readJsonLines } from '../src/bench/jsonl.js';
import { tachyon } from './helpers/cli.js';
import { runSolo } from './helpers/loop.js';
import { argmax, loadModel, projectRoot, scratchDir, testbedDraft, testbedTarget } from './helpers/models.js';

const WIDER: ModelShape = { embeddingLength: 512, blockCount: 8, headCount: 8, headCountKv: 4, feedForwardLength: 1024 };
/** F16 weights and activations: kernels over a wider row sum the same products in another order. */
const LOGIT_TOLERANCE = 0.02;
const NEW_TOKENS = 40;

let scratch = '';
let embeddedPath = '';
before(async () => {
  scratch = scratchDir();
  embeddedPath = join(scratch, 'target-wider.gguf');
  await embedModel({ source: testbedTarget, shape: WIDER, out: embeddedPath, quant: 'f16' });
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The first prompt of each held-out bench set, chat-formatted as the bench runs them. */
async function benchPrompts(model: Model): Promise<number[][]> {
  const prompts: number[][] = [];
  for (const task of ['reasoning', 'longgen', 'rewrite']) {
    const [{ row }] = await readJsonLines(join(projectRoot, 'bench', 'prompts', `${task}.jsonl`));
    prompts.push(model.tokenizer.tokenize(String(row.chat_prompt)));
  }
  return prompts;
}

async function greedy(model: Model, prompt: number[]): Promise<number[]> {
  const context = Context.create(model, { contextSize: 1024 });
  try {
    return (await runSolo(context, (sampler) => new PlainDecoder(sampler), prompt, { temperature: 0, maxTokens: NEW_TOKENS })).tokens;
  } finally {
    context.dispose();
  }
}

/** Logits at every position of `tokens`, from one batch. */
async function allLogits(model: Model, tokens: number[]): Promise<Float32Array[]> {
  const context = Context.create(model, { contextSize: 1024, batchSize: tokens.length });
  const batch = new TokenBatch(tokens.length, 1);
  try {
    tokens.forEach((token, position) => batch.add(token, position, 0, true));
    await context.decode(batch);
    return tokens.map((_, i) => Float32Array.from(context.logits(i)));
  } finally {
    batch.dispose();
    context.dispose();
  }
}

describe('embedding a model in a larger shape', () => {
  test('the embedded target gives the original greedy tokens on bench prompts, logits within F16 tolerance', async () => {
    const original = await loadModel(testbedTarget);
    const embedded = await loadModel(embeddedPath);
    assert.deepEqual([embedded.metadata.embeddingSize, embedded.metadata.layers, embedded.metadata.heads, embedded.metadata.kvHeads], [512, 8, 8, 4]);
    for (const prompt of await benchPrompts(original)) {
      const tokens = await greedy(original, prompt);
      assert.equal(tokens.length, NEW_TOKENS);
      assert.deepEqual(await greedy(embedded, prompt), tokens);
      const expected = await allLogits(original, [...prompt, ...tokens]);
      const actual = await allLogits(embedded, [...prompt, ...tokens]);
      let worst = 0;
      for (const [position, logits] of expected.entries()) {
        for (let i = 0; i < logits.length; i++) worst = Math.max(worst, Math.abs(logits[i] - actual[position][i]));
        assert.equal(argmax(actual[position]), argmax(logits), `argmax at position ${position}`);
      }
      assert.ok(worst < LOGIT_TOLERANCE, `largest logit difference ${worst}`);
    }
  });

  test('layout: scaled norms, ε × d/D, query heads at distinct-KV slots, zero extra layers', async () => {
    const small = await readGgufHeader(testbedTarget);
    const big = await readGgufHeader(embeddedPath);
    const description = describeModel(big);
    assert.equal(description.blockCount, WIDER.blockCount);
    assert.equal(description.headCountKv, WIDER.headCountKv);
    assert.equal(description.vocabSize, describeModel(small).vocabSize);
    assert.equal(description.chatTemplate, describeModel(small).chatTemplate);
    assert.ok(Math.abs(description.rmsNormEpsilon! - describeModel(small).rmsNormEpsilon! / 2) < 1e-12);
    const smallNorm = await readTensorData(small, 'blk.0.attn_norm.weight');
    const bigNorm = await readTensorData(big, 'blk.0.attn_norm.weight');
    assert.ok(Math.abs(bigNorm[3] - smallNorm[3] * Math.sqrt(0.5)) < 1e-6);
    assert.ok(bigNorm.subarray(256).every((value) => value === 0));
    assert.deepEqual(querySlots({ ...WIDER, embeddingLength: 256, headCount: 4, headCountKv: 4 }, WIDER), [0, 2, 4, 6]);
    // Query head 1 sits at slot 2: its rows there equal the small model's, padded with zeros.
    const smallQ = await readTensorData(small, 'blk.0.attn_q.weight');
    const bigQ = await readTensorData(big, 'blk.0.attn_q.weight');
    assert.deepEqual(Array.from(bigQ.subarray(2 * 64 * 512, 2 * 64 * 512 + 256)), Array.from(smallQ.subarray(64 * 256, 64 * 256 + 256)));
    assert.ok(bigQ.subarray(64 * 512, 2 * 64 * 512).every((value) => value === 0), 'slot 1 is empty');
    for (const name of ['attn_norm', 'attn_q', 'ffn_down']) {
      assert.ok((await readTensorData(big, `blk.7.${name}.weight`)).every((value) => value === 0), `blk.7.${name} is zero`);
    }
  });

  test('the draft embeds in the CLI shape s; the target does not, and says why', async () => {
    const draft = describeModel(await readGgufHeader(testbedDraft));
    const shapeOf = (d: typeof draft) => ({
      embeddingLength: d.embeddingLength!, blockCount: d.blockCount!, headCount: d.headCount!, headCountKv: d.headCountKv!,
      feedForwardLength: d.feedForwardLength!, headDim: d.embeddingLength! / d.headCount!, rmsNormEpsilon: d.rmsNormEpsilon!,
    });
    checkEmbeddable(shapeOf(draft), EMBED_SHAPES.s);
    const target = shapeOf(describeModel(await readGgufHeader(testbedTarget)));
    checkEmbeddable(target, EMBED_SHAPES.m);
    // s has 2 KV heads; the target has 4 distinct ones.
    assert.throws(() => checkEmbeddable(target, EMBED_SHAPES.s), /2 KV heads are fewer than 4/);
  });

  for (const [why, shape, message] of [
    ['narrower', { ...WIDER, embeddingLength: 128, headCount: 2, headCountKv: 2 }, /width 128 is narrower than 256/],
    ['fewer layers', { ...WIDER, blockCount: 4 }, /4 layers are fewer than 6/],
    ['smaller feed-forward', { ...WIDER, feedForwardLength: 512 }, /feed-forward size 512 is below 768/],
    ['other head size', { ...WIDER, headCount: 4 }, /head size 128 differs from 64/],
    ['GQA groups too small', { ...WIDER, headCountKv: 2 }, /2 KV heads are fewer than 4/],
  ] as const) {
    test(`refuses a shape that cannot hold the model: ${why}`, async () => {
      const out = join(scratch, 'refused.gguf');
      await assert.rejects(embedModel({ source: testbedTarget, shape: shape, out, quant: 'f16' }), (error: unknown) => {
        assert.ok(error instanceof GgufError);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  test('embedded models are cached under .cache/models, keyed by the source hash and the embedder version', async () => {
    const path = await ensureEmbeddedModel({ source: testbedDraft, shape: 's', quant: 'q8_0' });
    // The testbed MANIFEST's SHA-256 of draft.gguf.
    assert.match(path, new RegExp(`/\\.cache/models/embed-s-q8_0-7c266d177e2ceb46-v${EMBED_VERSION}\\.gguf$`));
    const built = await stat(path);
    assert.equal(await ensureEmbeddedModel({ source: testbedDraft, shape: 's', quant: 'q8_0' }), path);
    assert.equal((await stat(path)).mtimeMs, built.mtimeMs, 'not rebuilt');
    assert.equal(describeModel(await readGgufHeader(path)).embeddingLength, EMBED_SHAPES.s.embeddingLength);
  });

  test('CLI: make-model --embed; a shape too small and a missing --shape are one-line errors', async () => {
    const out = join(scratch, 'draft-s.gguf');
    const built = await tachyon('make-model', '--embed', testbedDraft, '--shape', 's', '--quant', 'q8_0', '--out', out);
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout, /embedded in shape s, 25,174,528 parameters/);
    const refused = await tachyon('make-model', '--embed', testbedTarget, '--shape', 's', '--out', join(scratch, 'no.gguf'));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^tachyon: shape cannot hold .*target\.gguf: 2 KV heads are fewer than 4\n$/);
    const missing = await tachyon('make-model', '--embed', testbedDraft, '--out', join(scratch, 'no.gguf'));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--embed needs --shape/);
  });
});
