/**
 * The engine loop through the public Engine (worker thread): concurrent requests equal their solo
 * runs (speculation on and off, greedy and seeded sampling, under preemption), cancellation
 * frees KV cells and sequence ids, bad requests fail alone, and the main thread stays free.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type GenerateOptions } from '../src/engine/engine.js';
import { QueueFullError } from '../src/engine/errors.js';
import { PromptTooLongError } from '../src/generate/decoder.js';
import { argmax, testbedDraft, testbedPrompts } from './helpers/models.js';
import { benchPrompts, solo, together } from './helpers/engine.js';

describe('many requests in one engine loop', () => {
  let engine: Engine;
  let prompts: string[];
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu', maxSequences: 8 });
    prompts = await benchPrompts();
  });
  after(() => engine.dispose());

  for (const speculation of ['off', 'auto'] as const) {
    test(`concurrent greedy requests equal their solo runs (speculation ${speculation})`, async () => {
      const options = { maxTokens: 48, speculation };
      const alone = await solo(engine, prompts, options);
      const batched = await together(engine, [...prompts, ...prompts], () => options);
      assert.deepEqual(batched, [...alone, ...alone]);
      assert.deepEqual(await engine.kvAudit(), [], 'every request freed its cells');
    });
  }

  test('a new request shares the prompt cells of one already running (seq_cp); outputs do not change', async () => {
    const base = prompts[4]; // a rewrite prompt: a few hundred tokens
    const variants = [base, `${base} Please be brief.`, `${base} Thank you.`];
    for (const speculation of ['off', 'auto'] as const) {
      const options = { maxTokens: 24, speculation };
      const alone = await solo(engine, variants, options);
      const sharedBefore = engine.status().sharedPrefixTokens;
      // The first request's prompt is in the context once its first chunk arrives.
      const first = engine.generate(variants[0], options);
      const firstTokens = [...((await first.next()).value as { tokens: number[] }).tokens];
      const others = together(engine, variants.slice(1), () => options);
      for (let next = await first.next(); !next.done; next = await first.next()) firstTokens.push(...next.value.tokens);
      assert.deepEqual([firstTokens, ...(await others)], alone, `speculation ${speculation}`);
      const prompt = (await engine.tokenize(base)).length;
      assert.ok(engine.status().sharedPrefixTokens - sharedBefore >= 2 * (prompt - 2), `shared ${engine.status().sharedPrefixTokens - sharedBefore} tokens of a ${prompt}-token prompt`);
      assert.deepEqual(await engine.kvAudit(), [], 'every request freed its cells');
    }
  });

  test('requests that arrive together with one long prompt evaluate it once: the others wait for its prefill, then share it', async () => {
    const base = prompts[4];
    const variants = [base, `${base} Please be brief.`, `${base} Thank you.`, base];
    const options = { maxTokens: 16, speculation: 'off' as const };
    const alone = await solo(engine, variants, options);
    const sharedBefore = engine.status().sharedPrefixTokens;
    assert.deepEqual(await together(engine, variants, () => options), alone);
    const prompt = (await engine.tokenize(base)).length;
    const shared = engine.status().sharedPrefixTokens - sharedBefore;
    assert.ok(shared >= 3 * (prompt - 2), `shared ${shared} tokens of a ${prompt}-token prompt among 4 requests`);
    assert.deepEqual(await engine.kvAudit(), [], 'every request freed its cells');
  });

  test('seeded sampled requests keep their own random stream under batching', async () => {
    const options = (i: number): GenerateOptions => ({ maxTokens: 32, temperature: 0.9, seed: 100 + i, speculation: 'auto' });
    const alone: number[][] = [];
    for (const [i, prompt] of prompts.entries()) alone.push((await engine.complete(prompt, options(i))).tokens);
    assert.deepEqual(await together(engine, prompts, options), alone);
  });

  test('a cancelled stream frees its KV cells and sequence id in the next step; the others go on', async () => {
    const controller = new AbortController();
    const long = { maxTokens: 400, ignoreEos: true, speculation: 'off' as const };
    const others = [engine.complete(prompts[2], long), engine.complete(prompts[3], long)];
    let chunks = 0;
    for await (const _ of engine.generate(prompts[0], { ...long, signal: controller.signal })) if (++chunks === 3) controller.abort();
    const results = await Promise.all(others);
    assert.deepEqual(results.map((r) => r.stats.stopReason), ['length', 'length']);
    assert.deepEqual(await engine.kvAudit(), []);
    const { running, waiting, kvCellsInUse, kvCells } = engine.status();
    assert.deepEqual({ running, waiting, kvCellsInUse, kvCells }, { running: 0, waiting: 0, kvCellsInUse: 0, kvCells: engine.info.kvCells });
  });

  test('a consumer that stops iterating cancels its request', async () => {
    for await (const chunk of engine.generate(prompts[2], { maxTokens: 400, ignoreEos: true })) if (chunk.tokens.length > 0) break;
    await engine.complete(prompts[0], { maxTokens: 2 }); // a step has run since the cancellation
    assert.deepEqual(await engine.kvAudit(), []);
  });

  test('rowAlongTrees evaluates a speculative run again in its own batches, and leaves no cells', async () => {
    // A fixed budget with branches: trees whose rejected nodes and borrowed branches share the batch.
    const speculating = await Engine.load({ gpu: 'cpu', draftModel: testbedDraft, draftBudget: { maxNodes: 16, maxDepth: 8, maxBranches: 3 } });
    try {
      const prompt = await engine.tokenize(prompts[4]);
      const run = await speculating.complete(prompt, { maxTokens: 64, ignoreEos: true, speculation: 'draft', recordTrees: true });
      const trees = run.verifiedTrees!;
      assert.equal(trees.length, run.stats.steps, 'one tree per step');
      const spec = run.stats.speculation!;
      assert.ok(spec.verifiedNodes > spec.emitted - spec.steps, 'some steps verified nodes they rejected');
      assert.ok(trees.some((tree) => new Set(tree.parents).size < tree.parents.length), 'some trees branch');
      const distance = (a: Float32Array, b: Float32Array) => a.reduce((worst, value, i) => Math.max(worst, Math.abs(value - b[i])), 0);
      for (let at = 0; at < run.tokens.length; at += 5) {
        const own = await speculating.rowAlongTrees(prompt, run.tokens, trees, at);
        const alone = await speculating.logitsAfter(prompt, run.tokens.slice(0, at));
        // The row of the run's own batches chose the run's token; it is plain decoding's row up to
        // the kernels' rounding, and far from the next position's.
        assert.equal(argmax(own), run.tokens[at], `token ${at}`);
        assert.ok(distance(own, alone) < 2e-2, `token ${at}: ${distance(own, alone)}`);
        if (at + 1 < run.tokens.length) assert.ok(distance(own, await speculating.logitsAfter(prompt, run.tokens.slice(0, at + 1))) > 0.5);
      }
      const wrongRoot = trees.map((tree, k) => (k === 2 ? { ...tree, tokens: [tree.tokens[0] + 1, ...tree.tokens.slice(1)] } : tree));
      await assert.rejects(speculating.rowAlongTrees(prompt, run.tokens, wrongRoot, run.tokens.length - 1), /does not start with it/);
      await assert.rejects(speculating.rowAlongTrees(prompt, run.tokens, trees.slice(0, 2), run.tokens.length - 1), /cover the output up to token/);
      assert.deepEqual(await speculating.kvAudit(), []);
    } finally {
      await speculating.dispose();
    }
  });

  test('a prompt longer than the context fails alone, with its size', async () => {
    const tooLong = 'x '.repeat(3000);
    const [good, bad] = await Promise.allSettled([engine.complete(prompts[0], { maxTokens: 8 }), engine.complete(tooLong, { maxTokens: 8 })]);
    assert.equal(good.status, 'fulfilled');
    assert.equal(bad.status, 'rejected');
    const error = (bad as PromiseRejectedResult).reason as PromptTooLongError;
    assert.ok(error instanceof PromptTooLongError, String(error));
    assert.equal(error.contextSize, engine.info.contextSize);
    assert.ok(error.promptTokens > engine.info.contextSize);
  });

  test('the engine survives a request that throws', async () => {
    await assert.rejects(engine.complete(prompts[0], { maxTokens: 4, speculation: 'draft' }), /needs a draft model/);
    const result = await engine.complete(testbedPrompts.reasoning, { maxTokens: 300 });
    assert.match(result.text, /The answer is 132\./);
  });

  test("the main thread's event loop stays free while the model decodes", async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let ticksAtFirstChunk = -1;
    let chunks = 0;
    for await (const _ of engine.generate(testbedPrompts.story, { maxTokens: 600, ignoreEos: true, speculation: 'off' })) {
      if (chunks++ === 0) ticksAtFirstChunk = ticks;
    }
    clearInterval(timer);
    // Chunks leave the worker together at most every 4 ms (EventOutbox): 600 tiny-model tokens still come in dozens of pieces, not at the end.
    assert.ok(chunks >= 20, `${chunks} chunks streamed`);
    assert.ok(ticks - ticksAtFirstChunk >= 10, `${ticks - ticksAtFirstChunk} timer ticks while 600 tokens were decoded`);
  });
});

describe('admission limits', () => {
  test('a flood beyond maxQueued is refused with QueueFullError; the admitted requests finish', async () => {
    const engine = await Engine.load({ gpu: 'cpu', maxSequences: 1, maxQueued: 1 });
    try {
      const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => engine.complete(testbedPrompts.story, { maxTokens: 64, ignoreEos: true, speculation: 'off' })));
      const refused = outcomes.filter((o) => o.status === 'rejected');
      assert.ok(refused.length >= 1, 'some requests were refused');
      for (const o of refused) assert.ok((o as PromiseRejectedResult).reason instanceof QueueFullError);
      for (const o of outcomes) if (o.status === 'fulfilled') assert.equal(o.value.tokens.length, 64);
    } finally {
      await engine.dispose();
    }
  });

  test('when KV room runs out, the newest request is preempted and recomputed; outputs do not change', async () => {
    const engine = await Engine.load({ gpu: 'cpu', maxSequences: 4, contextSize: 512, kvCells: 512 });
    try {
      const prompts = (await benchPrompts()).slice(0, 4);
      const options = { maxTokens: 120, ignoreEos: true, speculation: 'off' as const };
      const alone = await solo(engine, prompts, options);
      // Four prompts of 20–40 tokens growing by 120 each need more than 512 cells at once.
      assert.deepEqual(await together(engine, prompts, () => options), alone);
      assert.deepEqual(await engine.kvAudit(), []);
    } finally {
      await engine.dispose();
    }
  });
});

describe('a KV buffer per sequence (unifiedKv: false)', () => {
  let engine: Engine;
  let prompts: string[];
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu', maxSequences: 4, contextSize: 1024, unifiedKv: false });
    prompts = await benchPrompts();
  });
  after(() => engine.dispose());

  test('concurrent greedy requests equal their solo runs, as sequence ids free up out of order', async () => {
    // Different lengths end requests at different steps: later ones take the freed ids, so the
    // batch's ids are not consecutive and its prompt chunks sit between running streams.
    const options = (i: number): GenerateOptions => ({ maxTokens: 16 + 12 * (i % 4), ignoreEos: true });
    const all = [...prompts, ...prompts];
    const alone: number[][] = [];
    for (const [i, prompt] of all.entries()) alone.push((await engine.complete(prompt, options(i))).tokens);
    assert.deepEqual(await together(engine, all, options), alone);
    assert.deepEqual(await engine.kvAudit(), [], 'every request freed its cells');
  });

  test('a new request copies the prompt of one already running (whole buffer, then cut); outputs do not change', async () => {
    const base = prompts[4];
    const variants = [base, `${base} Please be brief.`];
    const options = { maxTokens: 24 };
    const alone = await solo(engine, variants, options);
    const sharedBefore = engine.status().sharedPrefixTokens;
    const first = engine.generate(variants[0], options);
    const firstTokens = [...((await first.next()).value as { tokens: number[] }).tokens];
    const second = engine.complete(variants[1], options);
    for (let next = await first.next(); !next.done; next = await first.next()) firstTokens.push(...next.value.tokens);
    assert.deepEqual([firstTokens, (await second).tokens], alone);
    assert.ok(engine.status().sharedPrefixTokens > sharedBefore, 'the second prompt took the first one\'s cells');
    assert.deepEqual(await engine.kvAudit(), []);
  });

  test('speculation verifies single chains there (a branch would need cells shared with its trunk): each drafter equals plain decoding; a cache is refused at load', async () => {
    // A fixed budget asks for branches on every step: the loop must cut them, not borrow ids.
    const speculating = await Engine.load({ gpu: 'cpu', maxSequences: 4, contextSize: 1024, unifiedKv: false, draftModel: testbedDraft, draftBudget: { maxNodes: 16, maxDepth: 8, maxBranches: 3 } });
    try {
      const chosen = prompts.slice(0, 4);
      const plainRuns = await solo(speculating, chosen, { maxTokens: 48, speculation: 'off' });
      for (const speculation of ['ngram', 'draft', 'auto'] as const) {
        const results = await Promise.all(chosen.map((prompt) => speculating.complete(prompt, { maxTokens: 48, speculation })));
        assert.deepEqual(results.map((result) => result.tokens), plainRuns, speculation);
        const verified = results.reduce((sum, result) => sum + (result.stats.speculation?.verifiedNodes ?? 0), 0);
        if (speculation !== 'ngram') assert.ok(verified > 0, `${speculation}: drafts were verified`);
      }
      assert.deepEqual(await speculating.kvAudit(), []);
    } finally {
      await speculating.dispose();
    }
    await assert.rejects(Engine.load({ gpu: 'cpu', unifiedKv: false, cache: { tiers: ['ram'] } }), /prefix cache needs the unified KV cache/);
  });
});
