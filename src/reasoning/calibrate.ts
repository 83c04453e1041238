/**
 * Calibration of the early-exit presets, and the thinking traces it (and the benchmark) rest on.
 *
 * A trace is one full-thinking greedy generation with every step boundary recorded (its logits
 * signals and the thinking's conclusions) and, at each boundary, an answer probe: the answer the
 * model gives if the thinking is cut there. Any exit policy can then be replayed on the traces
 * without generating again (a cut at a boundary leaves the tokens before it as they were), which
 * makes a grid search over thresholds cheap. Prompts are split deterministically in two halves:
 * presets are fitted on one and evaluated on the other.
 */
import type { Engine, GenerateOptions } from '../engine/engine.js';
import { answerMatches, parseFinalAnswer } from './answers.js';
import { probeAgreement, probeDue, shouldExit, type BoundaryRecord, type ExitThresholds, type ProbeThresholds, type ReasoningEffort } from './controller.js';
import { probedAnswer, probeRequest, scoreProbeAlone } from './probe.js';
import { DEFAULT_THINKING_TAGS, type ThinkingTagTokens } from './segments.js';
import { Ewma } from '../stats.js';
import { CostCurve, type CostPoint } from '../speculative/cost-model.js';

export interface ProbedBoundary extends BoundaryRecord {
  /** The answer the model gives when the thinking is cut here (undefined: the probe did not show it whole). */
  probed: string | undefined;
  confidence: number;
}

export interface ThinkingTrace {
  thinkingTokens: number;
  /** The final answer of the full-thinking generation. */
  answer: string | undefined;
  boundaries: ProbedBoundary[];
  /** The generation's wall time, end to end (its probes, scored afterwards, not included). */
  ms: number;
  /** Its time per decode step after the first token (plain decoding: one token a step). */
  msPerDecode: number;
}

/** One prompt of a reasoning set: `answer` is what scoring compares with. */
export interface ReasoningItem {
  id: string;
  prompt: string;
  answer: string | number;
}

/** Which half of a prompt set: the calibration half is every odd position (0-based), evaluation every even one. */
export type PromptHalf = 'calibration' | 'evaluation';

export function promptHalf<T>(items: readonly T[], half: PromptHalf): T[] {
  return items.filter((_, index) => index % 2 === (half === 'calibration' ? 1 : 0));
}

/** The engine's tokenizer for text inside a sequence (no BOS), and the thinking tags probes close. */
async function probeTokenizer(engine: Engine): Promise<{ tokenize: (text: string) => Promise<number[]>; tags: ThinkingTagTokens }> {
  const tokenize = async (text: string) => (await engine.tokenize(text)).slice(engine.info.model.specialTokens.addBos ? 1 : 0);
  const [open, close] = [await tokenize(DEFAULT_THINKING_TAGS.open), await tokenize(DEFAULT_THINKING_TAGS.close)];
  if (open.length !== 1 || close.length !== 1) throw new Error('the model has no <think>/</think> tokens: nothing to calibrate');
  return { tokenize, tags: { open: open[0], close: close[0] } };
}

/** Generates with full thinking, then probes every boundary it passed (each probe a branch off one scratch evaluation of the sequence). */
export async function traceThinking(engine: Engine, prompt: readonly number[], maxTokens: number, options: Pick<GenerateOptions, 'cacheSalt'> = {}): Promise<ThinkingTrace> {
  const { tokenize, tags } = await probeTokenizer(engine);
  const period = await tokenize('.');
  const result = await engine.complete(prompt, { ...options, maxTokens, speculation: 'off', recordBoundaries: true });
  const sequence = [...prompt, ...result.tokens];
  const boundaries = result.stats.boundaries ?? [];
  const candidates = boundaries.map((boundary) => boundary.concluded ?? '0');
  const probes = await Promise.all(candidates.map((candidate) => probeRequest(tokenize, tags, candidate)));
  const rows = await engine.branchRows(sequence, boundaries.map((boundary, i) => ({ at: boundary.sequenceLength, tokens: probes[i].tokens })));
  const probed = boundaries.map((boundary, i): ProbedBoundary => {
    const score = scoreProbeAlone(probes[i], sequence[boundary.sequenceLength - 1], rows[i]);
    return { ...boundary, probed: probedAnswer(score, candidates[i], period[0]), confidence: score.confidence };
  });
  return { thinkingTokens: result.stats.thinkingTokens, answer: parseFinalAnswer(result.content), boundaries: probed, ms: result.stats.totalMs, msPerDecode: result.stats.decodeMs / Math.max(1, result.stats.steps) };
}

export interface ReplayedExit {
  thinkingTokens: number;
  answer: string | undefined;
  /** Index of the boundary it exited at (undefined: thinking ran to its natural end). */
  boundary?: number;
  /** Answer probes the policy placed (its probe rule's schedule; 0 without one). */
  probes?: number;
}

/**
 * The policy replayed on a trace: its EWMA recomputed with the thresholds' factor, and its probes
 * placed where the running controller would place them in plain decoding (every boundary there
 * is a step's root): where one is due and the thinking has concluded a result.
 */
export function replayExit(trace: ThinkingTrace, thresholds: ExitThresholds): ReplayedExit {
  const endProbability = new Ewma(thresholds.alpha);
  const endMargin = new Ewma(thresholds.alpha);
  const probedAnswers: (string | undefined)[] = [];
  let lastProbeAt = -Infinity;
  for (const [index, boundary] of trace.boundaries.entries()) {
    const probed = boundary.concluded !== undefined && probeDue(thresholds, boundary.thinkingTokens, lastProbeAt);
    if (probed) {
      probedAnswers.push(boundary.probed);
      lastProbeAt = boundary.thinkingTokens;
    }
    const record: BoundaryRecord = {
      ...boundary,
      smoothedEndProbability: endProbability.push(boundary.endProbability),
      smoothedEndMargin: endMargin.push(boundary.endMargin),
      ...(probed ? { probe: { answer: boundary.probed, confidence: boundary.confidence } } : {}),
      probeAgreement: probed ? probeAgreement(probedAnswers) : 0,
    };
    if (shouldExit(record, thresholds)) return { thinkingTokens: boundary.thinkingTokens, answer: boundary.probed, boundary: index, probes: probedAnswers.length };
  }
  return { thinkingTokens: trace.thinkingTokens, answer: trace.answer, probes: probedAnswers.length };
}

/**
 * The oracle: exit at the first boundary that concluded a result and after which the probe at
 * every later concluding boundary gives the final answer. Boundaries in the middle of a check's
 * column arithmetic probe half-computed numbers; counting them would push the oracle to the end.
 */
export function oracleExit(trace: ThinkingTrace): ReplayedExit {
  let exit: ReplayedExit = { thinkingTokens: trace.thinkingTokens, answer: trace.answer };
  for (let index = trace.boundaries.length - 1; index >= 0; index--) {
    const boundary = trace.boundaries[index];
    if (!concludesHere(trace, index)) continue;
    if (boundary.probed !== trace.answer) break;
    exit = { thinkingTokens: boundary.thinkingTokens, answer: trace.answer, boundary: index };
  }
  return exit;
}

/** The line before this boundary concluded a new result (the conclusion count grew). */
function concludesHere(trace: ThinkingTrace, index: number): boolean {
  const previous = trace.boundaries[index - 1];
  const current = trace.boundaries[index];
  return current.concluded !== undefined && (previous === undefined || previous.agreement !== current.agreement || previous.concluded !== current.concluded);
}

export interface PolicyOutcome {
  accuracy: number;
  thinkingTokens: number;
  /** Mean answer probes per generation. */
  probes: number;
}

export function evaluatePolicy(traces: readonly ThinkingTrace[], expected: readonly (string | number)[], exitOf: (trace: ThinkingTrace) => ReplayedExit): PolicyOutcome {
  let correct = 0;
  let tokens = 0;
  let probes = 0;
  traces.forEach((trace, i) => {
    const exit = exitOf(trace);
    if (answerMatches(exit.answer, expected[i])) correct++;
    tokens += exit.thinkingTokens;
    probes += exit.probes ?? 0;
  });
  const n = Math.max(1, traces.length);
  return { accuracy: correct / n, thinkingTokens: tokens / n, probes: probes / n };
}

/**
 * What an answer probe of `probeTokens` adds to a plain step, in decodes, on the model's measured
 * cost curve: c(1 + P) − c(1). A probe riding a speculative tree costs less (the curve flattens),
 * so this is the price calibration charges, an upper bound.
 */
export function probeCost(points: readonly CostPoint[], probeTokens: number): number {
  const curve = new CostCurve(points);
  return curve.cost(1 + probeTokens) - curve.cost(1);
}

/** `probeCost` of a probe as long as the median one for these answers, on the engine's measured curve. */
export async function measuredProbeCost(engine: Engine, answers: readonly string[]): Promise<number> {
  const { tokenize, tags } = await probeTokenizer(engine);
  const lengths = await Promise.all(answers.map(async (answer) => (await probeRequest(tokenize, tags, answer)).tokens.length));
  const median = [...lengths].sort((a, b) => a - b)[Math.floor(lengths.length / 2)];
  return probeCost(await engine.costCurve(), median);
}

/** Accuracy each level may give up against full thinking on the calibration half (fractions). */
export const ALLOWED_ACCURACY_LOSS: Record<ReasoningEffort, number> = { high: 0, medium: 0.01, low: 0.04 };

/**
 * The threshold grid the calibration searches: the logits signals with the conclusions'
 * agreement, and answer probes beside the end-of-thinking probability alone.
 */
export function thresholdGrid(): ExitThresholds[] {
  const grid: ExitThresholds[] = [];
  for (const minThinkingTokens of [0, 40, 80, 120])
    for (const alpha of [0.1, 0.3, 1]) {
      for (const endProbability of [0.02, 0.05, 0.1, 0.2, 0.4, 2])
        for (const agreement of [0, 1, 2, 3])
          for (const maxEndMargin of [2, 5, 10, 15, Infinity]) {
            if (agreement === 0 && maxEndMargin !== Infinity) continue;
            grid.push({ minThinkingTokens, alpha, endProbability, agreement, maxEndMargin });
          }
      for (const endProbability of [0.1, 0.2, 0.4, 2])
        for (const probe of probeRules()) grid.push({ minThinkingTokens, alpha, endProbability, agreement: 0, maxEndMargin: Infinity, probe });
    }
  return grid;
}

function probeRules(): ProbeThresholds[] {
  const rules: ProbeThresholds[] = [];
  for (const every of [8, 24, 64])
    for (const confidence of [0.9, 0.99, 0.999])
      for (const agreement of [1, 2, 3]) rules.push({ every, confidence, agreement });
  return rules;
}

export interface FittedLevel {
  thresholds: ExitThresholds;
  outcome: PolicyOutcome;
}

/**
 * For each level, the thresholds of least cost whose accuracy stays within the level's allowance
 * of full thinking (ties: the higher accuracy). The cost is the mean thinking tokens plus the
 * probes' price: `probeCost` decodes each (what a probe adds to a plain step on the model's cost
 * curve), a decode being a thinking token's price in plain decoding. High always has a solution
 * that never exits (the full-thinking accuracy itself).
 */
export function fitLevels(traces: readonly ThinkingTrace[], expected: readonly (string | number)[], probeCost = 0): { full: PolicyOutcome; levels: Record<ReasoningEffort, FittedLevel> } {
  const full = evaluatePolicy(traces, expected, (trace) => ({ thinkingTokens: trace.thinkingTokens, answer: trace.answer }));
  const scored = thresholdGrid().map((thresholds) => ({ thresholds, outcome: evaluatePolicy(traces, expected, (trace) => replayExit(trace, thresholds)) }));
  const cost = (outcome: PolicyOutcome) => outcome.thinkingTokens + outcome.probes * probeCost;
  const pick = (level: ReasoningEffort): FittedLevel => {
    const allowed = scored.filter((s) => s.outcome.accuracy >= full.accuracy - ALLOWED_ACCURACY_LOSS[level] - 1e-9);
    allowed.sort((a, b) => cost(a.outcome) - cost(b.outcome) || b.outcome.accuracy - a.outcome.accuracy);
    return allowed[0] ?? { thresholds: { minThinkingTokens: 0, alpha: 1, endProbability: 2, agreement: 0, maxEndMargin: Infinity }, outcome: full };
  };
  return { full, levels: { low: pick('low'), medium: pick('medium'), high: pick('high') } };
}
