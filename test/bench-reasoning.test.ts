/**
 * bench reasoning on the testbed pair (two evaluation prompts): each effort level's speculative
 * runs write what its plain runs write, the end-to-end speedups are the ratios of the measured
 * times, and the report files agree with the result.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { defaultReasoningPrompts, formatReasoningBench, runReasoningBench, type ReasoningBenchResult } from '../src/bench/reasoning.js';
import { Engine } from '../src/engine/engine.js';
import { REASONING_EFFORTS } from '../src/reasoning/controller.js';
import { scratchDir, testbedDraft } from './helpers/models.js';

const scratch = scratchDir();
let engine: Engine;
let result: ReasoningBenchResult;

before(async () => {
  engine = await Engine.load({ gpu: 'cpu', threads: 1, draftModel: testbedDraft });
  result = await runReasoningBench({ engine, draftModel: testbedDraft, promptsFile: defaultReasoningPrompts, n: 2, maxTokens: 600, budgets: [], reportDir: scratch });
});
after(async () => {
  await engine?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

test('early exit with speculation writes what it writes plainly, and thinks less than full thinking', () => {
  assert.equal(result.n, 2);
  assert.equal(result.model, 'target.gguf');
  assert.equal(result.draft_model, 'draft.gguf');
  assert.ok(result.ms_per_decode > 0);
  for (const level of REASONING_EFFORTS) {
    const measured = result.levels[level];
    assert.equal(measured.identical_with_speculation, 1, `${level}: speculation changed an early-exit output`);
    assert.ok(measured.thinking_tokens <= result.full.thinking_tokens, `${level}: ${measured.thinking_tokens} thinking tokens > full ${result.full.thinking_tokens}`);
  }
  // The testbed's medium and high presets are the same thresholds: one configuration, run once.
  assert.deepEqual(result.levels.high.thresholds, result.levels.medium.thresholds);
  assert.equal(result.levels.high.same_thresholds_as, 'medium');
  assert.equal(result.levels.high.ms_with_speculation, result.levels.medium.ms_with_speculation);
  // The oracle exits at a boundary of the full trace, never after its end.
  assert.ok(result.oracle.thinking_tokens <= result.full.thinking_tokens);
});

test('speedups are plain full thinking\'s mean time over each configuration\'s', () => {
  const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) <= 0.002 * expected + 0.001, `${actual} vs ${expected}`);
  close(result.full.speedup_with_speculation, result.full.ms / result.full.ms_with_speculation);
  for (const level of REASONING_EFFORTS) {
    const measured = result.levels[level];
    close(measured.speedup, result.full.ms / measured.ms);
    close(measured.speedup_with_speculation, result.full.ms / measured.ms_with_speculation);
  }
  // One budget per level at least (those matched to the levels' mean thinking tokens).
  assert.ok(result.budgets.length >= 1 && result.budgets.every((b) => b.matches && b.matches.length > 0));
  assert.match(formatReasoningBench(result), /target\.gguf \+ draft draft\.gguf · plain decoding [\d.]+ ms per token · n = 2/);
});

test('the report holds the result and draws both charts', async () => {
  const saved = JSON.parse(await readFile(join(scratch, 'bench-reasoning.json'), 'utf8')) as ReasoningBenchResult;
  assert.deepEqual(saved.levels.low.speedup_with_speculation, result.levels.low.speedup_with_speculation);
  const svg = await readFile(join(scratch, 'bench-reasoning.svg'), 'utf8');
  assert.match(svg, /accuracy vs thinking tokens/);
  assert.match(svg, /accuracy vs wall time/);
});
