/** The answer probe as a token-tree branch, verified by the testbed target. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine.js';
import { TokenBatch } from '../src/llama/batch.js';
import { evaluatePrompt } from '../src/generate/decoder.js';
import { parseFinalAnswer } from '../src/reasoning/answers.js';
import { addProbeBranch, probeAt, probeRequest, PROBE_SOURCE } from '../src/reasoning/probe.js';
import { thinkingTagTokens } from '../src/reasoning/segments.js';
import { ROOT, TokenTree } from '../src/speculative/tree.js';
import { testbedPrompts } from './helpers/models.js';

describe('answer probe on the testbed', () => {
  let engine: Engine;
  let sequence: number[];
  let boundaryLength: number;
  let thinkingBefore: number;
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu' });
    const prompt = engine.tokenize(testbedPrompts.reasoning);
    const full = await engine.complete(prompt, { maxTokens: 400, speculation: 'off' });
    sequence = [...prompt, ...full.tokens];
    // The step boundary right after the first computation's conclusion.
    const conclusion = 'So 47 + 85 = 132.\n';
    const cut = full.text.indexOf(conclusion) + conclusion.length;
    let length = 0;
    while (engine.tokenizer.detokenize(full.tokens.slice(0, length)).length < cut) length++;
    boundaryLength = prompt.length + length;
    thinkingBefore = length - 1; // tokens after <think>
  });
  after(() => engine.dispose());

  test('the probe is one more branch from the root, beside the drafts', () => {
    const tags = thinkingTagTokens(engine.tokenizer)!;
    const probe = probeRequest(engine.tokenizer, tags, '132');
    assert.equal(engine.tokenizer.detokenize(probe.tokens.slice(0, probe.answerStart)), '</think>\nThe answer is');
    assert.equal(engine.tokenizer.detokenize(probe.tokens.slice(probe.answerStart)), ' 132');
    const tree = new TokenTree(18);
    tree.addPath([500, 501], [0.9, 0.8], 'ngram');
    const nodes = addProbeBranch(tree, probe);
    assert.deepEqual(nodes.map((n) => tree.depth(n)), probe.tokens.map((_, k) => k + 1));
    assert.equal(tree.parent(nodes[0]), ROOT);
    assert.equal(tree.source(nodes[0]), PROBE_SOURCE);
    assert.equal(tree.branchIds().branchCount, 2);
  });

  test('a verified probe yields the answer the model gives when cut there, and leaves no KV cells', async () => {
    const tags = thinkingTagTokens(engine.tokenizer)!;
    const { context } = engine;
    const batch = new TokenBatch(512, 1);
    context.seqRemove(-1);
    await evaluatePrompt(context, batch, sequence.slice(0, boundaryLength));
    batch.dispose();

    const right = await probeAt(context, sequence, boundaryLength, probeRequest(engine.tokenizer, tags, '132'));
    assert.equal(right.agreed, true);
    assert.ok(right.confidence > 0.9, `confidence ${right.confidence}`);
    const wrong = await probeAt(context, sequence, boundaryLength, probeRequest(engine.tokenizer, tags, '999'));
    assert.equal(wrong.agreed, false);
    assert.ok(wrong.confidence < 0.01, `confidence ${wrong.confidence}`);
    assert.equal(engine.tokenizer.detokenize(wrong.answerTokens), ' 1', 'the model would start its answer with 1, not 9');
    assert.equal(context.seqPosMax(1), -1, 'the scratch branch is gone');
    assert.equal(context.seqPosMax(0), boundaryLength - 1, 'sequence 0 holds what it held before');

    const prompt = engine.tokenize(testbedPrompts.reasoning);
    const budgeted = await engine.complete(prompt, { maxTokens: 400, speculation: 'off', maxThinkingTokens: thinkingBefore });
    assert.ok(budgeted.reasoning.endsWith('So 47 + 85 = 132.\n'));
    assert.equal(parseFinalAnswer(budgeted.content), parseFinalAnswer(`The answer is${engine.tokenizer.detokenize(right.answerTokens)}`));
  });
});
