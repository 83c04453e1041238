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
import { shouldExit, type BoundaryRecord, type ExitThresholds, type ReasoningEffort } from './controller.js';
import { probeRequest, scoreProbeAlone } from './probe.js';
import { DEFAULT_THINKING_TAGS } from './segments.js';
import { Ewma } from '../stats.js';

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

/** Generates with full thinking, then probes every boundary it passed (each probe a branch off one scratch evaluation of the sequence). */
export async function traceThinking(engine: Engine, prompt: readonly number[], maxTokens: number, options: Pick<GenerateOptions, 'cacheSalt'> = {}): Promise<ThinkingTrace> {
  const tokenize = async (text: string) => (await engine.tokenize(text)).slice(engine.info.model.specialTokens.addBos ? 1 : 0);
  const [open, close] = [await tokenize(DEFAULT_THINKING_TAGS.open), await tokenize(DEFAULT_THINKING_TAGS.close)];
  if (open.length !== 1 || close.length !== 1) throw new Error('the model has no <think>/</think> tokens: nothing to calibrate');
  const tags = { open: open[0], close: close[0] };
  const period = await tokenize('.');
  const result = await engine.complete(prompt, { ...options, maxTokens, speculation: 'off', recordBoundaries: true });
  const sequence = [...prompt, ...result.tokens];
  const boundaries = result.stats.boundaries ?? [];
  const candidates = boundaries.map((boundary) => boundary.concluded ?? '0');
  const probes = await Promise.all(candidates.map((candidate) => probeRequest(tokenize, tags, candidate)));
  const rows = await engine.branchRows(sequence, boundaries.map((boundary, i) => ({ at: boundary.sequenceLength, tokens: probes[i].tokens })));
  const probed = boundaries.map((boundary, i): ProbedBoundary => {
    const score = scoreProbeAlone(probes[i], sequence[boundary.sequenceLength - 1], rows[i]);
    // The model's answer is the candidate when it agreed with every token and then ends the number.
    const answer = score.agreed && score.answerTokens.at(-1) === period[0] ? candidates[i] : undefined;
    return { ...boundary, probed: answer, confidence: score.confidence };
  });
  return { thinkingTokens: result.stats.thinkingTokens, answer: parseFinalAnswer(result.content), boundaries: probed, ms: result.stats.totalMs, msPerDecode: result.stats.decodeMs / Math.max(1, result.stats.steps) };
}

export interface ReplayedExit {
  thinkingTokens: number;
  answer: string | undefined;
  /** Index of the boundary it exited at (undefined: thinking ran to its natural end). */
  boundary?: number;
}

/** The policy replayed on a trace: its EWMA recomputed with the thresholds' factor. */
export function replayExit(trace: ThinkingTrace, thresholds: ExitThresholds): ReplayedExit {
  const endProbability = new Ewma(thresholds.alpha);
  const endMargin = new Ewma(thresholds.alpha);
  for (const [index, boundary] of trace.boundaries.entries()) {
    const smoothed = { ...boundary, smoothedEndProbability: endProbability.push(boundary.endProbability), smoothedEndMargin: endMargin.push(boundary.endMargin) };
    if (shouldExit(smoothed, thresholds)) return { thinkingTokens: boundary.thinkingTokens, answer: boundary.probed, boundary: index };
  }
  return { thinkingTokens: trace.thinkingTokens, answer: trace.answer };
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
}

export function evaluatePolicy(traces: readonly ThinkingTrace[], expected: readonly (string | number)[], exitOf: (trace: ThinkingTrace) => ReplayedExit): PolicyOutcome {
  let correct = 0;
  let tokens = 0;
  traces.forEach((trace, i) => {
    const exit = exitOf(trace);
    if (answerMatches(exit.answer, expected[i])) correct++;
    tokens += exit.thinkingTokens;
  });
  return { accuracy: correct / Math.max(1, traces.length), thinkingTokens: tokens / Math.max(1, traces.length) };
}

/** Accuracy each level may give up against full thinking on the calibration half (fractions). */
export const ALLOWED_ACCURACY_LOSS: Record<ReasoningEffort, number> = { high: 0, medium: 0.01, low: 0.04 };

/** The threshold grid the calibration searches. */
export function thresholdGrid(): ExitThresholds[] {
  const grid: ExitThresholds[] = [];
  for (const minThinkingTokens of [0, 40, 80, 120])
    for (const alpha of [0.1, 0.3, 1])
      for (const endProbability of [0.02, 0.05, 0.1, 0.2, 0.4, 2])
        for (const agreement of [0, 1, 2, 3])
          for (const maxEndMargin of [2, 5, 10, 15, Infinity]) {
            if (agreement === 0 && maxEndMargin !== Infinity) continue;
            grid.push({ minThinkingTokens, alpha, endProbability, agreement, maxEndMargin });
          }
  return grid;
}

export interface FittedLevel {
  thresholds: ExitThresholds;
  outcome: PolicyOutcome;
}

/**
 * For each level, the thresholds with the fewest mean thinking tokens whose accuracy stays within
 * the level's allowance of full thinking (ties: the higher accuracy). High always has a solution
 * that never exits (the full-thinking accuracy itself).
 */
export function fitLevels(traces: readonly ThinkingTrace[], expected: readonly (string | number)[]): { full: PolicyOutcome; levels: Record<ReasoningEffort, FittedLevel> } {
  const full = evaluatePolicy(traces, expected, (trace) => ({ thinkingTokens: trace.thinkingTokens, answer: trace.answer }));
  const scored = thresholdGrid().map((thresholds) => ({ thresholds, outcome: evaluatePolicy(traces, expected, (trace) => replayExit(trace, thresholds)) }));
  const pick = (level: ReasoningEffort): FittedLevel => {
    const allowed = scored.filter((s) => s.outcome.accuracy >= full.accuracy - ALLOWED_ACCURACY_LOSS[level] - 1e-9);
    allowed.sort((a, b) => a.outcome.thinkingTokens - b.outcome.thinkingTokens || b.outcome.accuracy - a.outcome.accuracy);
    return allowed[0] ?? { thresholds: { minThinkingTokens: 0, alpha: 1, endProbability: 2, agreement: 0, maxEndMargin: Infinity }, outcome: full };
  };
  return { full, levels: { low: pick('low'), medium: pick('medium'), high: pick('high') } };
}
