/** Answers, boundary signals, the thinking budget and the early-exit policy, on the testbed. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { answerMatches, lastConcludedResult, parseFinalAnswer, scoreAnswers } from '../src/reasoning/answers.js';
import { boundarySignals } from '../src/reasoning/signals.js';
import { Ewma } from '../src/stats.js';
import { trailingAgreement, type ExitThresholds } from '../src/reasoning/controller.js';
import { traceThinking } from '../src/reasoning/calibrate.js';
import type { GenerationResult } from '../src/generate/generate.js';
import { testbedDraft, testbedPrompts } from './helpers/models.js';

test('final answers are parsed after the answer prefix and scored by value', () => {
  assert.equal(parseFinalAnswer('\nThe answer is 132.'), '132');
  assert.equal(parseFinalAnswer('The answer is 7. No wait. The answer is 1,320.'), '1320');
  assert.equal(parseFinalAnswer('I think it is 132.'), undefined);
  assert.equal(parseFinalAnswer('The answer is unclear.'), undefined);
  assert.equal(answerMatches('132', 132), true);
  assert.equal(answerMatches('132.0', '132'), true);
  assert.equal(answerMatches('131', 132), false);
  assert.equal(answerMatches(undefined, 132), false);
  assert.deepEqual(scoreAnswers([
    { content: '\nThe answer is 132.', expected: 132 },
    { content: '\nThe answer is 81.', expected: 91 },
    { content: '', expected: 5 },
    { content: 'The answer is -4.', expected: '-4' },
  ]), { correct: 2, total: 4, accuracy: 0.5 });
});

test('the concluded result is the last "So … = N" or "gives N", never a column step', () => {
  assert.equal(lastConcludedResult('Ones: 7 + 5 = 12. Write 2, carry 1.\n'), undefined);
  assert.equal(lastConcludedResult('Tens: 4 + 8 = 12, 12 + 1 = 13. Write 13.\nSo 47 + 85 = 132.\n'), '132');
  assert.equal(lastConcludedResult('So 47 + 85 = 132.\nThat gives 122, but before I got 132.\n'), '122');
});

test('boundary signals are the softmax of the row; agreement counts the trailing run; EWMA smooths', () => {
  const logits = new Float32Array([2, 0, 1, -1]);
  const z = Math.exp(2) + 1 + Math.exp(1) + Math.exp(-1);
  const signals = boundarySignals(logits, 2);
  assert.ok(Math.abs(signals.endProbability - Math.exp(1) / z) < 1e-9);
  assert.ok(Math.abs(signals.endMargin - 1) < 1e-9);
  const p = [Math.exp(2), 1, Math.exp(1), Math.exp(-1)].map((v) => v / z);
  assert.ok(Math.abs(signals.entropy - -p.reduce((s, q) => s + q * Math.log(q), 0)) < 1e-9);
  assert.equal(trailingAgreement(['81', '91', '91']), 2);
  assert.equal(trailingAgreement([]), 0);
  const ewma = new Ewma(0.25);
  assert.equal(ewma.push(4), 4);
  assert.equal(ewma.push(0), 3);
  assert.throws(() => new Ewma(0), /EWMA factor/);
});

const NEVER: ExitThresholds = { minThinkingTokens: 0, alpha: 0.5, endProbability: 2, agreement: 0, maxEndMargin: Infinity };

describe('thinking budget and early exit on the testbed', () => {
  let engine: Engine;
  let full: GenerationResult;
  /** A slip problem: the first computation is wrong (81), the first check repairs it (91). */
  const slip = '<|user|>\nWhat is 22 + 69?<|end|>\n<|assistant|>\n';
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu' });
    full = await engine.complete(slip, { maxTokens: 500, speculation: 'off' });
  });
  after(() => engine.dispose());

  test('the budget closes the thinking at exactly N tokens and the model answers from there, speculative or not', async () => {
    assert.equal(full.stats.thinkingEnd, 'natural');
    assert.equal(parseFinalAnswer(full.content), '91');
    const budget = 60;
    const plain = await engine.complete(slip, { maxTokens: 500, speculation: 'off', maxThinkingTokens: budget });
    assert.equal(plain.stats.thinkingTokens, budget);
    assert.equal(plain.stats.thinkingEnd, 'budget');
    const openAt = full.tokens.indexOf((await engine.tokenize('<think>')).at(-1)!);
    assert.deepEqual(plain.tokens.slice(0, openAt + 1 + budget), full.tokens.slice(0, openAt + 1 + budget));
    assert.equal(plain.reasoning, full.reasoning.slice(0, plain.reasoning.length));
    assert.equal(parseFinalAnswer(plain.content), '81', 'cut before the check, the model answers its first (slipped) result');
    const speculative = await engine.complete(slip, { maxTokens: 500, speculation: 'ngram', maxThinkingTokens: budget });
    assert.deepEqual(speculative.tokens, plain.tokens);
    const zero = await engine.complete(slip, { maxTokens: 500, speculation: 'off', maxThinkingTokens: 0 });
    assert.equal(zero.stats.thinkingTokens, 0);
    assert.match(zero.text, /^<think><\/think>/);
  });

  test('early exit happens only right after a boundary, never before the minimum length', async () => {
    const eager: ExitThresholds = { ...NEVER, endProbability: 0 };
    for (const minThinkingTokens of [0, 40, 100]) {
      const cut = await engine.complete(slip, { maxTokens: 500, speculation: 'off', exitThresholds: { ...eager, minThinkingTokens } });
      assert.equal(cut.stats.thinkingEnd, 'early-exit');
      assert.ok(cut.stats.thinkingTokens >= minThinkingTokens);
      assert.ok(cut.reasoning.endsWith('\n'), `exit at ${cut.stats.thinkingTokens} tokens is not after a newline: ${JSON.stringify(cut.reasoning.slice(-20))}`);
      assert.equal(full.reasoning.slice(0, cut.reasoning.length), cut.reasoning);
    }
    // 2 × 69 slips (128), its first check repairs it (138), a second check confirms: agreement exits before that one.
    const twoChecks = '<|user|>\nCompute 2 × 69.<|end|>\n<|assistant|>\n';
    const agreed = await engine.complete(twoChecks, { maxTokens: 500, speculation: 'off', exitThresholds: { ...NEVER, agreement: 2 } });
    assert.equal(agreed.stats.thinkingEnd, 'early-exit');
    assert.match(agreed.reasoning, /That gives 138, but before I got 128\.[^\n]*\nSo 2 × 69 = 138\.\n$/);
    assert.equal(parseFinalAnswer(agreed.content), '138');
  });

  test('early exit and the budget give the same output with speculation as without', async () => {
    const exit: ExitThresholds = { ...NEVER, agreement: 2 };
    const twoChecks = '<|user|>\nCompute 2 × 69.<|end|>\n<|assistant|>\n';
    for (const options of [{ exitThresholds: exit }, { maxThinkingTokens: 45 }]) {
      const plain = await engine.complete(twoChecks, { maxTokens: 500, speculation: 'off', ...options });
      const speculative = await engine.complete(twoChecks, { maxTokens: 500, speculation: 'ngram', ...options });
      assert.deepEqual(speculative.tokens, plain.tokens);
      assert.equal(speculative.stats.thinkingEnd, plain.stats.thinkingEnd);
    }
    assert.deepEqual(await engine.kvAudit(), [], 'dropped and forced tokens leave no KV cells behind');
  });

  test('answer probes ride the verification trees: scored as a probe alone scores them, output unchanged, no KV left behind', async () => {
    const prompt = await engine.tokenize(slip);
    const trace = await traceThinking(engine, prompt, 500);
    // Every recorded boundary after a conclusion (a boundary whose next token closes the thinking has no record).
    const concluding = trace.boundaries.filter((boundary) => boundary.concluded !== undefined);
    assert.ok(concluding.length >= 4, `${concluding.length} concluding boundaries`);
    const probing: ExitThresholds = { ...NEVER, probe: { every: 0, confidence: 2, agreement: 1 } };
    for (const speculation of ['off', 'ngram', 'auto'] as const) {
      const probed = await engine.complete(prompt, { maxTokens: 500, speculation, exitThresholds: probing, recordBoundaries: true });
      assert.deepEqual(probed.tokens, full.tokens, `${speculation}: probes change nothing the model emits`);
      // … and one at the last boundary, where the model then closes the thinking itself.
      assert.equal(probed.stats.answerProbes, concluding.length + 1, `${speculation}: a probe at every concluding boundary`);
      const riding = probed.stats.boundaries!.filter((boundary) => boundary.probe);
      assert.deepEqual(riding.map((b) => b.thinkingTokens), concluding.map((b) => b.thinkingTokens));
      for (const boundary of riding) {
        const alone = concluding.find((b) => b.thinkingTokens === boundary.thinkingTokens)!;
        assert.equal(boundary.probe!.answer, alone.probed, `${speculation}: the answer probed at ${boundary.thinkingTokens}`);
        assert.ok(Math.abs(boundary.probe!.confidence - alone.confidence) < 0.01, `${speculation}: confidence ${boundary.probe!.confidence} vs ${alone.confidence} alone`);
      }
      assert.deepEqual(riding.map((b) => b.probeAgreement).slice(0, 4), [1, 2, 0, 0], 'the slip (81) probed twice, then no whole answer');
    }
    const spaced = await engine.complete(prompt, { maxTokens: 500, speculation: 'off', exitThresholds: { ...probing, probe: { every: 40, confidence: 2, agreement: 1 } }, recordBoundaries: true });
    const at = spaced.stats.boundaries!.filter((b) => b.probe).map((b) => b.thinkingTokens);
    assert.ok(at.every((t, i) => i === 0 || t - at[i - 1] >= 40), `probes at ${at}`);
    assert.ok(at.length > 0 && at.length < concluding.length);
    assert.deepEqual(await engine.kvAudit(), [], 'probe branches leave no KV cells behind');
  });

  test('probes ride inside draft-model trees (verified in full) and score there as alone', async () => {
    const deep = await Engine.load({ gpu: 'cpu', draftModel: testbedDraft, draftBudget: { maxNodes: 24, maxDepth: 24, maxBranches: 2 } });
    try {
      const prompt = await deep.tokenize(slip);
      const trace = await traceThinking(deep, prompt, 500);
      const probing: ExitThresholds = { ...NEVER, probe: { every: 0, confidence: 2, agreement: 1 } };
      const probed = await deep.complete(prompt, { maxTokens: 500, speculation: 'draft', exitThresholds: probing, recordBoundaries: true });
      assert.deepEqual(probed.tokens, full.tokens);
      // Most boundaries then lie inside a verified chain, not at a step's root.
      assert.ok(probed.stats.speculation!.tau > 4, `tau ${probed.stats.speculation!.tau}`);
      const riding = probed.stats.boundaries!.filter((boundary) => boundary.probe);
      const concluding = trace.boundaries.filter((boundary) => boundary.concluded !== undefined);
      assert.deepEqual(riding.map((b) => [b.thinkingTokens, b.probe!.answer]), concluding.map((b) => [b.thinkingTokens, b.probed]));
      for (const [i, boundary] of riding.entries()) assert.ok(Math.abs(boundary.probe!.confidence - concluding[i].confidence) < 0.01);
      // Where probes land never depends on the trees: exits with probe rules are the same as in plain decoding.
      const twoChecks = await deep.tokenize('<|user|>\nCompute 2 × 69.<|end|>\n<|assistant|>\n');
      for (const probe of [{ every: 0, confidence: 0.9, agreement: 2 }, { every: 24, confidence: 0.5, agreement: 1 }, { every: 8, confidence: 0.999, agreement: 3 }]) {
        for (const start of [prompt, twoChecks]) {
          const options = { maxTokens: 500, exitThresholds: { ...NEVER, probe } };
          const plain = await deep.complete(start, { ...options, speculation: 'off' });
          const drafted = await deep.complete(start, { ...options, speculation: 'draft' });
          assert.deepEqual(drafted.tokens, plain.tokens, JSON.stringify(probe));
          assert.equal(drafted.stats.answerProbes, plain.stats.answerProbes);
          assert.equal(drafted.stats.thinkingEnd, plain.stats.thinkingEnd);
        }
      }
      assert.deepEqual(await deep.kvAudit(), []);
    } finally {
      await deep.dispose();
    }
  });

  test('sure probes that agree end the thinking at their boundary, with speculation as without', async () => {
    // On the testbed, sure probes agree on the slip: this rule answers 81, which is why the fitted presets do not probe.
    const sure: ExitThresholds = { ...NEVER, probe: { every: 0, confidence: 0.9, agreement: 2 } };
    const plain = await engine.complete(slip, { maxTokens: 500, speculation: 'off', exitThresholds: sure });
    assert.equal(plain.stats.thinkingEnd, 'early-exit');
    assert.match(plain.reasoning, /So 22 \+ 69 = 81\.\n[^\n]*\n$/, 'the second probe, one line after the first');
    assert.equal(full.reasoning.slice(0, plain.reasoning.length), plain.reasoning);
    assert.equal(parseFinalAnswer(plain.content), '81');
    for (const speculation of ['ngram', 'auto'] as const) {
      const speculative = await engine.complete(slip, { maxTokens: 500, speculation, exitThresholds: sure });
      assert.deepEqual(speculative.tokens, plain.tokens, speculation);
    }
  });

  test('a request with an effort level exits early at the model\'s presets', async () => {
    const result = await engine.complete('<|user|>\nCompute 2 × 69.<|end|>\n<|assistant|>\n', { maxTokens: 500, reasoningEffort: 'medium' });
    assert.equal(result.stats.thinkingEnd, 'early-exit');
    assert.equal(parseFinalAnswer(result.content), '138');
  });

  test('with a controller that never acts, output is token-identical to generation without one', async () => {
    const quiet = await engine.complete(slip, { maxTokens: 500, speculation: 'off', exitThresholds: NEVER, maxThinkingTokens: 10_000 });
    assert.deepEqual(quiet.tokens, full.tokens);
    assert.equal(quiet.stats.thinkingEnd, 'natural');
  });

  test('requests the engine cannot honour fail with a clear error', async () => {
    await assert.rejects(engine.complete(slip, { reasoningEffort: 'extreme' as 'low' }), /must be one of low, medium, high/);
    await assert.rejects(engine.complete(slip, { maxThinkingTokens: -1, speculation: 'off' }), /non-negative integer/);
    await assert.rejects(engine.complete(testbedPrompts.story, { thinkingTags: { open: '<r>', close: '</r>' }, maxThinkingTokens: 5 }), /must each be one/);
  });
});
