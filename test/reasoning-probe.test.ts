/** The answer probe as a token-tree branch, verified by the testbed target. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { parseFinalAnswer } from '../src/reasoning/answers.js';
import { addProbeBranch, probeRequest, scoreProbeAlone, PROBE_SOURCE } from '../src/reasoning/probe.js';
import type { ThinkingTagTokens } from '../src/reasoning/segments.js';
import { ROOT, TokenTree } from '../src/speculative/tree.js';
import { argmax, testbedPrompts } from './helpers/models.js';

describe('answer probe on the testbed', () => {
  let engine: Engine;
  let tags: ThinkingTagTokens;
  let sequence: number[];
  let boundaryLength: number;
  let thinkingBefore: number;
  // The engine's tokenizer (a model loaded in this thread too would share llama.cpp's log callback with the worker).
  const tokenize = async (text: string) => (await engine.tokenize(text)).slice(engine.info.model.specialTokens.addBos ? 1 : 0);
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu' });
    const [[open], [close]] = [await tokenize('<think>'), await tokenize('</think>')];
    tags = { open, close };
    const prompt = await engine.tokenize(testbedPrompts.reasoning);
    const pieces: string[] = [];
    const iterator = engine.generate(prompt, { maxTokens: 400, speculation: 'off', tokenPieces: true });
    for (let step = await iterator.next(); !step.done; step = await iterator.next()) pieces.push(...(step.value.pieces ?? []));
    const full = await engine.complete(prompt, { maxTokens: 400, speculation: 'off' });
    sequence = [...prompt, ...full.tokens];
    // The step boundary right after the first computation's conclusion.
    const conclusion = 'So 47 + 85 = 132.\n';
    const cut = full.text.indexOf(conclusion) + conclusion.length;
    let length = 0;
    while (pieces.slice(0, length).join('').length < cut) length++;
    boundaryLength = prompt.length + length;
    thinkingBefore = length - 1; // tokens after <think>
  });
  after(() => engine.dispose());

  test('the probe is one more branch from the root, beside the drafts', async () => {
    const probe = await probeRequest(tokenize, tags, '132');
    assert.deepEqual(probe.tokens, [tags.close, ...(await tokenize('\nThe answer is 132'))]);
    assert.equal(probe.answerStart, 1 + (await tokenize('\nThe answer is')).length);
    const tree = new TokenTree(18);
    tree.addPath([500, 501], [0.9, 0.8], 'ngram');
    const nodes = addProbeBranch(tree, probe);
    assert.deepEqual(nodes.map((n) => tree.depth(n)), probe.tokens.map((_, k) => k + 1));
    assert.equal(tree.parent(nodes[0]), ROOT);
    assert.equal(tree.source(nodes[0]), PROBE_SOURCE);
    assert.equal(tree.branchIds().branchCount, 2);
  });

  test('a verified probe yields the answer the model gives when cut there, and leaves no KV cells', async () => {
    const before = sequence.slice(0, boundaryLength);
    const score = async (candidate: string) => {
      const probe = await probeRequest(tokenize, tags, candidate);
      const [rows] = await engine.branchRows(sequence, [{ at: boundaryLength, tokens: probe.tokens }]);
      return scoreProbeAlone(probe, before.at(-1)!, rows);
    };
    const right = await score('132');
    assert.equal(right.agreed, true);
    assert.ok(right.confidence > 0.9, `confidence ${right.confidence}`);
    const probe = await probeRequest(tokenize, tags, '132');
    assert.deepEqual(right.answerTokens, [...probe.tokens.slice(probe.answerStart), ...(await tokenize('.'))], 'the model writes 132 and ends it');
    const wrong = await score('999');
    assert.equal(wrong.agreed, false);
    assert.ok(wrong.confidence < 0.01, `confidence ${wrong.confidence}`);
    assert.deepEqual(wrong.answerTokens, right.answerTokens.slice(0, wrong.answerTokens.length), 'the model would start its answer as 132 does, not with 9');
    assert.deepEqual(await engine.kvAudit(), [], 'probes leave no KV cells');

    const prompt = await engine.tokenize(testbedPrompts.reasoning);
    const budgeted = await engine.complete(prompt, { maxTokens: 400, speculation: 'off', maxThinkingTokens: thinkingBefore });
    assert.ok(budgeted.reasoning.endsWith('So 47 + 85 = 132.\n'));
    assert.equal(parseFinalAnswer(budgeted.content), '132', 'the answer the probe showed');
  });

  test('branches scored off one evaluation of the sequence match each branch scored alone, and the sequence read plainly', async () => {
    const probe = await probeRequest(tokenize, tags, '132');
    const early = { at: boundaryLength - 12, tokens: probe.tokens };
    const late = { at: boundaryLength, tokens: probe.tokens };
    const [together, [earlyAlone], [lateAlone]] = [await engine.branchRows(sequence, [late, early]), await engine.branchRows(sequence, [early]), await engine.branchRows(sequence, [late])];
    const maxDifference = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((row, m) => Math.max(...row.map((v, i) => Math.abs(v - b[m][i])))));
    // Alone, the early branch's trunk ends sooner (other decode batches): kernels may move the last bits.
    assert.ok(maxDifference(together[1], earlyAlone) < 1e-3, `early branch differs by ${maxDifference(together[1], earlyAlone)}`);
    assert.ok(maxDifference(together[0], lateAlone) < 1e-3);
    assert.deepEqual(together[1].map(argmax), earlyAlone.map(argmax));
    // Row 0 of a branch is the row after the sequence's first `at` tokens: it chooses the sequence's next token.
    assert.equal(argmax(together[1][0]), sequence[early.at]);
    assert.equal(argmax(together[0][0]), sequence[late.at]);
    assert.deepEqual(await engine.kvAudit(), [], 'branches leave no KV cells');
  });
});
