/** Early-exit presets: replayed policies, the oracle, the fit per level, storage keyed by the model, and the CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fitLevels, oracleExit, promptHalf, replayExit, type ProbedBoundary, type ThinkingTrace } from '../src/reasoning/calibrate.js';
import { loadReasoningPresets, presetFingerprint, saveReasoningPresets, withReasoningPresets, type ReasoningPresets } from '../src/reasoning/presets.js';
import type { ExitThresholds } from '../src/reasoning/controller.js';
import { budgetMatching } from '../src/bench/reasoning.js';
import { loadModel, scratchDir, testbedTarget, tinyModelPath } from './helpers/models.js';
import { tachyon } from './helpers/cli.js';

/** A boundary as a trace records it (signals + the conclusion so far + what a probe there answered). */
function boundary(thinkingTokens: number, endProbability: number, concluded: string | undefined, agreement: number, probed: string | undefined): ProbedBoundary {
  const endMargin = -Math.log(endProbability);
  return { thinkingTokens, sequenceLength: thinkingTokens + 20, endProbability, endMargin, entropy: 1, smoothedEndProbability: endProbability, smoothedEndMargin: endMargin, concluded, agreement, probeAgreement: 0, probed, confidence: 1 };
}

/** The slip shape: the first conclusion (81) is wrong, a check concludes 91 twice, then thinking ends. */
const slipTrace: ThinkingTrace = {
  thinkingTokens: 150,
  answer: '91',
  ms: 1,
  msPerDecode: 1,
  boundaries: [
    boundary(20, 1e-6, undefined, 0, undefined),
    boundary(60, 0.05, '81', 1, '81'),
    boundary(90, 1e-6, '81', 1, '3'),
    boundary(120, 0.1, '91', 1, '91'),
    boundary(140, 0.3, '91', 2, '91'),
  ],
};
/** No slip: concluded 135 at once, one confirming check. */
const cleanTrace: ThinkingTrace = {
  thinkingTokens: 100,
  answer: '135',
  ms: 1,
  msPerDecode: 1,
  boundaries: [boundary(30, 0.2, '135', 1, '135'), boundary(70, 1e-6, '135', 1, '7'), boundary(95, 0.3, '135', 2, '135')],
};
const never: ExitThresholds = { minThinkingTokens: 0, alpha: 1, endProbability: 2, agreement: 0, maxEndMargin: Infinity };

test('a replayed policy exits at its first qualifying boundary with the answer probed there', () => {
  assert.deepEqual(replayExit(slipTrace, never), { thinkingTokens: 150, answer: '91', probes: 0 });
  assert.deepEqual(replayExit(slipTrace, { ...never, endProbability: 0.04 }), { thinkingTokens: 60, answer: '81', boundary: 1, probes: 0 });
  assert.deepEqual(replayExit(slipTrace, { ...never, endProbability: 0.04, minThinkingTokens: 61 }), { thinkingTokens: 120, answer: '91', boundary: 3, probes: 0 });
  assert.deepEqual(replayExit(slipTrace, { ...never, agreement: 2 }), { thinkingTokens: 140, answer: '91', boundary: 4, probes: 0 });
  // EWMA: with alpha 0.5 the smoothed p(</think>) at 120 is (0.05/2 + 1e-6/2)/2 + 0.1/2 ≈ 0.0625, below 0.07; at 140 it passes.
  assert.equal(replayExit(slipTrace, { ...never, endProbability: 0.07, alpha: 0.5 }).boundary, 4);
});

test('a replayed probe rule probes concluding boundaries on its schedule and exits when sure probes agree', () => {
  const probing = (every: number, agreement: number): ExitThresholds => ({ ...never, probe: { every, confidence: 0.9, agreement } });
  // Probed answers at 60, 90, 120, 140: 81, none whole ("3"), 91, 91.
  assert.deepEqual(replayExit(slipTrace, probing(0, 2)), { thinkingTokens: 140, answer: '91', boundary: 4, probes: 4 });
  assert.deepEqual(replayExit(slipTrace, probing(0, 1)), { thinkingTokens: 60, answer: '81', boundary: 1, probes: 1 });
  // Every 50 tokens: 60 and 120 only, which never agree twice.
  assert.deepEqual(replayExit(slipTrace, probing(50, 2)), { thinkingTokens: 150, answer: '91', probes: 2 });
  assert.deepEqual(replayExit(slipTrace, { ...probing(0, 1), minThinkingTokens: 100 }), { thinkingTokens: 120, answer: '91', boundary: 3, probes: 1 });
  assert.deepEqual(replayExit(slipTrace, { ...never, probe: { every: 0, confidence: 1.5, agreement: 1 } }).probes, 4, 'unsure probes are still paid for');
});

test('the oracle exits at the first conclusion after which every probe gives the final answer', () => {
  assert.equal(oracleExit(slipTrace).thinkingTokens, 120);
  assert.equal(oracleExit(cleanTrace).thinkingTokens, 30, 'a mid-check probe ("7") does not count against it');
});

test('each level takes the fewest thinking tokens within its accuracy allowance', () => {
  const traces = [slipTrace, cleanTrace];
  const fitted = fitLevels(traces, ['91', 135]);
  assert.deepEqual(fitted.full, { accuracy: 1, thinkingTokens: 125, probes: 0 });
  assert.equal(fitted.levels.high.outcome.accuracy, 1);
  assert.ok(fitted.levels.high.outcome.thinkingTokens < 125, 'an exit that keeps both answers exists');
  for (const level of ['low', 'medium'] as const) assert.ok(fitted.levels[level].outcome.thinkingTokens <= fitted.levels.high.outcome.thinkingTokens);
  // Probes priced at 1,000 decodes each never pay; free ones may.
  const dear = fitLevels(traces, ['91', 135], 1000);
  for (const level of ['low', 'medium', 'high'] as const) assert.equal(dear.levels[level].thresholds.probe, undefined, level);
});

test('prompt halves are disjoint and deterministic; budgets are matched to a mean thinking length', () => {
  const items = Array.from({ length: 7 }, (_, i) => i);
  assert.deepEqual(promptHalf(items, 'calibration'), [1, 3, 5]);
  assert.deepEqual(promptHalf(items, 'evaluation'), [0, 2, 4, 6]);
  assert.equal(budgetMatching([slipTrace, cleanTrace], 125), 150);
  assert.equal(budgetMatching([slipTrace, cleanTrace], 80), 80);
});

test('presets are stored per model fingerprint; a model without presets gets a clear error', async () => {
  const dir = scratchDir();
  const tiny = await loadModel(await tinyModelPath());
  await assert.rejects(withReasoningPresets(tiny.path, { reasoningEffort: 'low' }, dir), /no reasoning-effort presets for .*calibrate reasoning/);
  const presets: ReasoningPresets = {
    fingerprint: await presetFingerprint(tiny.path),
    model: 'tiny',
    levels: { low: { ...never, agreement: 1 }, medium: { ...never, agreement: 2 }, high: never },
    calibration: {},
  };
  await saveReasoningPresets(presets, dir);
  assert.deepEqual(readdirSync(dir), [`${presets.fingerprint}.json`], 'written atomically: no temporary file left');
  assert.deepEqual(await loadReasoningPresets(tiny.path, dir), presets, 'Infinity survives the JSON round trip');
  assert.deepEqual((await withReasoningPresets(tiny.path, { reasoningEffort: 'medium' }, dir)).exitThresholds, presets.levels.medium);
  assert.notEqual(await presetFingerprint(testbedTarget), presets.fingerprint);
  await assert.rejects(withReasoningPresets(tiny.path, { reasoningEffort: 'extreme' as 'low' }, dir), /must be one of low, medium, high/);
});

test('the testbed ships presets, and run --reasoning-effort exits early with them', async () => {
  await loadReasoningPresets(testbedTarget);
  const result = await tachyon('run', 'Compute 2 × 69.', '--reasoning-effort', 'medium', '--json', '--gpu', 'cpu', '-t', '1');
  assert.equal(result.code, 0, result.stderr);
  const output = JSON.parse(result.stdout) as { content: string; stats: { thinkingEnd: string } };
  assert.equal(output.stats.thinkingEnd, 'early-exit');
  assert.match(output.content, /The answer is 138\./);
  const budget = await tachyon('run', 'Compute 2 × 69.', '--max-thinking-tokens', '10', '--json', '--gpu', 'cpu', '--spec', 'off');
  assert.equal((JSON.parse(budget.stdout) as { stats: { thinkingTokens: number; thinkingEnd: string } }).stats.thinkingEnd, 'budget');
});

test('calibrate reasoning fits presets for the model, charging each answer probe its price on the measured cost curve', async () => {
  const dir = scratchDir();
  const result = await tachyon('calibrate', 'reasoning', '-n', '6', '--out', dir, '--json', '--gpu', 'cpu', '-t', '1');
  assert.equal(result.code, 0, result.stderr);
  const presets = JSON.parse(result.stdout) as ReasoningPresets;
  assert.equal(presets.fingerprint, await presetFingerprint(testbedTarget));
  assert.deepEqual(readdirSync(dir), [`${presets.fingerprint}.json`]);
  // Read off this machine's curve (no bound on its size here: timings are the benchmarks' business).
  const price = presets.calibration.probe_cost_decodes as number;
  assert.ok(Number.isFinite(price) && price > 0, `probe price ${price}`);
  for (const level of ['low', 'medium', 'high'] as const) assert.ok(presets.levels[level].minThinkingTokens >= 0);
  assert.match(result.stderr, /calibrating 6\/6/);
});
