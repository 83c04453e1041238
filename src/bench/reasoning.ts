/**
 * `tachyon bench reasoning`: accuracy, thinking tokens and wall time of full thinking, of fixed
 * thinking budgets (budget forcing, swept to the mean thinking tokens of each effort level), of
 * each effort level (plain and speculative: identical outputs, checked), and of the oracle exit,
 * on the evaluation half of a reasoning prompt set (the presets were fitted on the other half).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Engine } from '../engine/engine.js';
import type { GenerationResult } from '../generate/generate.js';
import { answerMatches, parseFinalAnswer } from '../reasoning/answers.js';
import { oracleExit, promptHalf, traceThinking, type ReasoningItem, type ThinkingTrace } from '../reasoning/calibrate.js';
import { REASONING_EFFORTS, type ExitThresholds, type ReasoningEffort } from '../reasoning/controller.js';
import { loadReasoningPresets } from '../reasoning/presets.js';
import { packageRoot } from '../paths.js';
import { scatterChartSvg, type ScatterSeries } from './chart.js';
import { readJsonLines } from './jsonl.js';
import { median, round } from './stats.js';

export const defaultReasoningPrompts = join(packageRoot, 'bench', 'prompts', 'reasoning.jsonl');

/** Reads `prompt` (or `chat_prompt` when there is no `prompt`) and `answer`; other fields (kind, slip) are never read. */
export async function readReasoningItems(path: string): Promise<ReasoningItem[]> {
  return (await readJsonLines(path)).map(({ line, row }) => {
    const prompt = row.prompt ?? row.chat_prompt;
    if (typeof prompt !== 'string') throw new Error(`${path}:${line}: no "prompt" string`);
    if (typeof row.answer !== 'string' && typeof row.answer !== 'number') throw new Error(`${path}:${line}: no "answer" (string or number) to score against`);
    return { id: typeof row.id === 'string' ? row.id : `line-${line}`, prompt, answer: row.answer };
  });
}

export interface ReasoningBenchOptions {
  engine: Engine;
  /** The draft model the engine loaded, if any (named in the result). */
  draftModel?: string;
  promptsFile: string;
  n: number;
  maxTokens: number;
  /** Extra fixed budgets drawn on the curve besides those matched to the levels. */
  budgets: readonly number[];
  reportDir?: string;
  onProgress?: (line: string) => void;
}

interface Measured {
  accuracy: number;
  thinking_tokens: number;
  ms: number;
  accuracy_ci95: number;
  thinking_tokens_ci95: number;
  ms_ci95: number;
}

export interface ReasoningBenchResult {
  n: number;
  /** The target's file name, and its draft's when one was loaded (speculation's "auto" uses it). */
  model: string;
  draft_model: string | null;
  /** The regime: plain full thinking's median ms per decoded token after the first. */
  ms_per_decode: number;
  prompts: string;
  half: 'evaluation (even 0-based lines)';
  /** `speedup_with_speculation`: plain full thinking's mean ms over speculative full thinking's. */
  full: Measured & { ms_with_speculation: number; speedup_with_speculation: number };
  /** `matches`: the levels whose mean thinking tokens this budget was swept to. */
  budgets: (Measured & { budget: number; matches?: ReasoningEffort[] })[];
  /**
   * `speedup`, `speedup_with_speculation`: plain full thinking's mean ms over this level's, plain
   * and speculative (end to end: what early exit, and early exit with speculation, save).
   */
  levels: Record<ReasoningEffort, LevelMeasured>;
  oracle: { accuracy: number; thinking_tokens: number; thinking_tokens_ci95: number };
}

/** `same_thresholds_as`: an earlier level with the same thresholds, whose runs this level reports (it is the same configuration). */
type LevelMeasured = Measured & {
  ms_with_speculation: number;
  speedup: number;
  speedup_with_speculation: number;
  identical_with_speculation: number;
  thresholds: ExitThresholds;
  same_thresholds_as?: ReasoningEffort;
};

interface Run {
  correct: boolean;
  thinkingTokens: number;
  ms: number;
}

export async function runReasoningBench(options: ReasoningBenchOptions): Promise<ReasoningBenchResult> {
  const { engine } = options;
  const presets = await loadReasoningPresets(engine.info.modelPath);
  const items = promptHalf(await readReasoningItems(options.promptsFile), 'evaluation').slice(0, options.n);
  if (items.length === 0) throw new Error(`${options.promptsFile}: no evaluation prompts`);
  const prompts = await Promise.all(items.map((item) => engine.userPrompt(item.prompt)));
  const progress = (stage: string, i: number) => options.onProgress?.(`${stage} ${i + 1}/${items.length}`);
  // Each configuration drafts from its own history (the salt): the suffix drafter keeps earlier
  // outputs, and another configuration's output for the same prompt would be copied back whole.
  const run = async (i: number, configuration: string, extra: Parameters<Engine['complete']>[1]): Promise<GenerationResult> =>
    engine.complete(prompts[i], { maxTokens: options.maxTokens, cacheSalt: configuration, ...extra });
  const scored = (i: number, result: GenerationResult): Run => ({
    correct: answerMatches(parseFinalAnswer(result.content), items[i].answer),
    thinkingTokens: result.stats.thinkingTokens,
    ms: result.stats.totalMs,
  });

  const traces: ThinkingTrace[] = [];
  const full: Run[] = [];
  const fullSpeculative: number[] = [];
  const plainMsPerDecode: number[] = [];
  for (let i = 0; i < items.length; i++) {
    const trace = await traceThinking(engine, prompts[i], options.maxTokens, { cacheSalt: 'full' });
    traces.push(trace);
    plainMsPerDecode.push(trace.msPerDecode);
    full.push({ correct: answerMatches(trace.answer, items[i].answer), thinkingTokens: trace.thinkingTokens, ms: trace.ms });
    fullSpeculative.push((await run(i, 'full+speculation', { speculation: 'auto' })).stats.totalMs);
    progress('full thinking', i);
  }

  const fullMs = mean(full.map((run) => run.ms));
  const speedupOver = (ms: number) => round(fullMs / ms, 3) ?? 0;
  const levels = {} as ReasoningBenchResult['levels'];
  for (const level of REASONING_EFFORTS) {
    const thresholds = presets.levels[level];
    const same = REASONING_EFFORTS.find((earlier) => levels[earlier] && JSON.stringify(levels[earlier].thresholds) === JSON.stringify(thresholds));
    if (same) {
      levels[level] = { ...levels[same], same_thresholds_as: levels[same].same_thresholds_as ?? same };
      continue;
    }
    const runs: Run[] = [];
    const speculativeMs: number[] = [];
    let identical = 0;
    for (let i = 0; i < items.length; i++) {
      const plain = await run(i, level, { speculation: 'off', exitThresholds: thresholds });
      runs.push(scored(i, plain));
      const speculative = await run(i, `${level}+speculation`, { speculation: 'auto', exitThresholds: thresholds });
      speculativeMs.push(speculative.stats.totalMs);
      if (speculative.text === plain.text) identical++;
      progress(`effort ${level}`, i);
    }
    const speculativeMean = mean(speculativeMs);
    levels[level] = {
      ...measure(runs),
      ms_with_speculation: round(speculativeMean, 1) ?? 0,
      speedup: speedupOver(mean(runs.map((run) => run.ms))),
      speedup_with_speculation: speedupOver(speculativeMean),
      identical_with_speculation: identical / items.length,
      thresholds,
    };
  }

  const matched = REASONING_EFFORTS.map((level) => ({ level, budget: budgetMatching(traces, levels[level].thinking_tokens) }));
  const budgetList = [...new Set([...options.budgets, ...matched.map((m) => m.budget)])].sort((a, b) => a - b);
  const budgets: ReasoningBenchResult['budgets'] = [];
  for (const budget of budgetList) {
    const matches = matched.filter((m) => m.budget === budget).map((m) => m.level);
    const runs: Run[] = [];
    for (let i = 0; i < items.length; i++) runs.push(scored(i, await run(i, `budget ${budget}`, { speculation: 'off', maxThinkingTokens: budget })));
    options.onProgress?.(`budget ${budget} done`);
    budgets.push({ budget, ...(matches.length > 0 ? { matches } : {}), ...measure(runs) });
  }

  const oracleRuns = traces.map((trace, i) => ({ correct: answerMatches(oracleExit(trace).answer, items[i].answer), thinkingTokens: oracleExit(trace).thinkingTokens, ms: 0 }));
  const oracleMeasured = measure(oracleRuns);
  const result: ReasoningBenchResult = {
    n: items.length,
    model: basename(engine.info.modelPath),
    draft_model: options.draftModel ? basename(options.draftModel) : null,
    ms_per_decode: round(median(plainMsPerDecode), 2) ?? 0,
    prompts: options.promptsFile,
    half: 'evaluation (even 0-based lines)',
    full: { ...measure(full), ms_with_speculation: round(mean(fullSpeculative), 1) ?? 0, speedup_with_speculation: speedupOver(mean(fullSpeculative)) },
    budgets,
    levels,
    oracle: { accuracy: oracleMeasured.accuracy, thinking_tokens: oracleMeasured.thinking_tokens, thinking_tokens_ci95: oracleMeasured.thinking_tokens_ci95 },
  };
  if (options.reportDir) await writeReasoningReport(options.reportDir, result);
  return result;
}

/** The budget whose forced cut gives, on these traces, a mean thinking length closest to `target`. */
export function budgetMatching(traces: readonly ThinkingTrace[], target: number): number {
  const meanAt = (budget: number) => mean(traces.map((trace) => Math.min(trace.thinkingTokens, budget)));
  let best = 0;
  for (let budget = 0; budget <= Math.max(...traces.map((trace) => trace.thinkingTokens)); budget++) {
    if (Math.abs(meanAt(budget) - target) < Math.abs(meanAt(best) - target)) best = budget;
  }
  return best;
}

function measure(runs: readonly Run[]): Measured {
  const accuracy = mean(runs.map((r) => (r.correct ? 1 : 0)));
  const tokens = runs.map((r) => r.thinkingTokens);
  const ms = runs.map((r) => r.ms);
  return {
    accuracy: round(accuracy, 4) ?? 0,
    thinking_tokens: round(mean(tokens), 1) ?? 0,
    ms: round(mean(ms), 1) ?? 0,
    accuracy_ci95: round(1.96 * Math.sqrt((accuracy * (1 - accuracy)) / Math.max(1, runs.length)), 4) ?? 0,
    thinking_tokens_ci95: round(halfWidth95(tokens), 1) ?? 0,
    ms_ci95: round(halfWidth95(ms), 1) ?? 0,
  };
}

function mean(values: readonly number[]): number {
  return values.length > 0 ? values.reduce((sum, v) => sum + v, 0) / values.length : Number.NaN;
}

/** Normal-approximation 95% half-width of a mean. */
function halfWidth95(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  const variance = values.reduce((sum, v) => sum + (v - m) ** 2, 0) / (values.length - 1);
  return 1.96 * Math.sqrt(variance / values.length);
}

async function writeReasoningReport(dir: string, result: ReasoningBenchResult): Promise<void> {
  await mkdir(dir, { recursive: true });
  const pct = (accuracy: number) => accuracy * 100;
  const tokenSeries: ScatterSeries[] = [
    { label: 'full thinking', color: '#444444', points: [{ x: result.full.thinking_tokens, y: pct(result.full.accuracy), xError: result.full.thinking_tokens_ci95, yError: pct(result.full.accuracy_ci95) }] },
    { label: 'fixed budgets', color: '#999999', line: true, points: result.budgets.map((b) => ({ x: b.thinking_tokens, y: pct(b.accuracy), note: String(b.budget) })) },
    { label: 'effort levels (early exit)', color: '#2f6fdf', points: REASONING_EFFORTS.map((level) => ({ x: result.levels[level].thinking_tokens, y: pct(result.levels[level].accuracy), xError: result.levels[level].thinking_tokens_ci95, yError: pct(result.levels[level].accuracy_ci95), note: level })) },
    { label: 'oracle exit', color: '#2a9d4b', points: [{ x: result.oracle.thinking_tokens, y: pct(result.oracle.accuracy) }] },
  ];
  const timeSeries: ScatterSeries[] = [
    { label: 'full thinking (plain)', color: '#444444', points: [{ x: result.full.ms, y: pct(result.full.accuracy) }] },
    { label: 'fixed budgets (plain)', color: '#999999', line: true, points: result.budgets.map((b) => ({ x: b.ms, y: pct(b.accuracy), note: String(b.budget) })) },
    { label: 'effort levels (plain)', color: '#2f6fdf', points: REASONING_EFFORTS.map((level) => ({ x: result.levels[level].ms, y: pct(result.levels[level].accuracy), note: level })) },
    { label: 'effort levels + speculation', color: '#d9822b', points: REASONING_EFFORTS.map((level) => ({ x: result.levels[level].ms_with_speculation, y: pct(result.levels[level].accuracy), note: level })) },
  ];
  const svg = scatterChartSvg('Reasoning early exit', `n = ${result.n} (${result.half}) · means, bars: 95% intervals`, [
    { title: 'accuracy vs thinking tokens', xLabel: 'mean thinking tokens', yLabel: 'accuracy (%)', series: tokenSeries },
    { title: 'accuracy vs wall time', xLabel: 'mean ms per problem', yLabel: 'accuracy (%)', series: timeSeries },
  ]);
  await writeFile(join(dir, 'bench-reasoning.svg'), svg);
  await writeFile(join(dir, 'bench-reasoning.json'), `${JSON.stringify(result, (_k, v) => (v === Infinity ? null : v), 2)}\n`);
}

/** A plain-text table of the result. */
export function formatReasoningBench(result: ReasoningBenchResult): string {
  const rows = [['configuration', 'accuracy', 'thinking tokens', 'ms', 'ms with speculation', '× full plain (plain / speculative)']];
  const pct = (m: { accuracy: number; accuracy_ci95?: number }) => `${(m.accuracy * 100).toFixed(1)}%${m.accuracy_ci95 !== undefined ? ` ±${(m.accuracy_ci95 * 100).toFixed(1)}` : ''}`;
  rows.push(['full thinking', pct(result.full), `${result.full.thinking_tokens} ±${result.full.thinking_tokens_ci95}`, String(result.full.ms), String(result.full.ms_with_speculation), `1 / ${result.full.speedup_with_speculation}`]);
  for (const b of result.budgets) rows.push([`budget ${b.budget}${b.matches ? ` (≈ ${b.matches.join(', ')})` : ''}`, pct(b), `${b.thinking_tokens} ±${b.thinking_tokens_ci95}`, String(b.ms), '', '']);
  for (const level of REASONING_EFFORTS) {
    const l = result.levels[level];
    rows.push([`effort ${level}${l.same_thresholds_as ? ` (= ${l.same_thresholds_as})` : ''}`, pct(l), `${l.thinking_tokens} ±${l.thinking_tokens_ci95}`, String(l.ms), `${l.ms_with_speculation} (identical ${(l.identical_with_speculation * 100).toFixed(0)}%)`, `${l.speedup} / ${l.speedup_with_speculation}`]);
  }
  rows.push(['oracle exit', pct(result.oracle), `${result.oracle.thinking_tokens} ±${result.oracle.thinking_tokens_ci95}`, '', '', '']);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const regime = `${result.model}${result.draft_model ? ` + draft ${result.draft_model}` : ''} · plain decoding ${result.ms_per_decode} ms per token · n = ${result.n}`;
  return `${regime}\n${rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join('  ')).join('\n')}\n`;
}
