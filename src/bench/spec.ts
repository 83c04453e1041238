/**
 * `tachyon bench spec`: plain greedy decoding and each speculative configuration, in the same
 * process on the same prompts; per task: median tokens/s, speedup over plain, τ, identical-output
 * rate (with the logit gap where any mismatch began). Writes a Markdown report with an SVG chart,
 * optionally beside llama.cpp's own speculative decoding (bench/peers/llama-spec.mjs output).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Engine } from '../engine/engine.js';
import type { GenerationResult } from '../generate/generate.js';
import { type EmbedPairName, ensureEmbeddedPair } from '../gguf/embed.js';
import { Context, type FlashAttention } from '../llama/context.js';
import { Model } from '../llama/model.js';
import { measureCostCurve } from '../speculative/cost-curve.js';
import { CostCurve } from '../speculative/cost-model.js';
import { createDraftContext, DraftModelDrafter } from '../speculative/draft-model.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import type { TreeShape } from '../speculative/tree.js';
import { barChartSvg, type BarGroup } from './chart.js';
import { promptSetFiles, readJsonLines } from './jsonl.js';
import { OracleDrafting, oracleSchedule } from './oracle.js';
import { LlamaSpecPeers, SETTLE_LABEL, type PeerRun } from './spec-peers.js';
import { commonPrefixLength, median, round, top2Gap } from './stats.js';

export const DEFAULT_TASKS = ['rewrite', 'longgen', 'reasoning'] as const;

export interface SpecBenchOptions {
  model: string;
  draftModel?: string;
  /**
   * Run on `model` and `draftModel` embedded in this pair's shapes (Q8_0; built once, cached):
   * trained behaviour at a realistic decode cost.
   */
  shape?: EmbedPairName;
  gpu: 'auto' | 'cpu' | 'cuda' | 'vulkan' | 'metal';
  threads?: number;
  /** Flash attention of our engine and of llama.cpp's peers alike (default auto). */
  flashAttention?: FlashAttention;
  /** Task names (bench/prompts/<task>.jsonl) or, with `promptsFile`, ignored. */
  tasks: readonly string[];
  promptsFile?: string;
  /** Prompts per task. */
  n: number;
  maxTokens: number;
  configs: readonly Exclude<SpeculationMode, 'off'>[];
  /** JSON written by bench/peers/llama-spec.mjs, shown side by side. */
  peersFile?: string;
  /**
   * llama.cpp `--spec-type` configurations (`plain`, `ngram-mod`, …, or `all`) run live as peers,
   * each prompt on them in the same rotation as Tachyon's configurations.
   */
  llamaPeers?: readonly string[];
  /** The llama-server binary for `llamaPeers` (default: built once by bench/peers/build-llama-cpp.sh). */
  llamaServer?: string;
  reportDir?: string;
  onProgress?: (line: string) => void;
}

interface PromptItem {
  id: string;
  tokens: number[];
}

interface RunRecord {
  id: string;
  tokens: number;
  tokensPerSecond: number;
  /** Tokens/s after the first token (the generation stats' own; llama-server's predicted_per_second likewise leaves the prompt out). */
  decodeTokensPerSecond: number;
  tau: number | null;
  identical: boolean;
  /** Index of the first differing token, and the top-2 logit gap of plain decoding there. */
  mismatch?: Mismatch;
  draftMs: number;
  verifyMs: number;
  samplingMs: number;
  accepted: Record<string, { proposed: number; accepted: number }>;
}

export interface ConfigSummary {
  median_tps: number | null;
  /** Median tokens/s after the prompt (prefill excluded), as llama-server reports its speed. */
  median_decode_tps: number | null;
  speedup: number | null;
  identical_rate: number;
  tau: number | null;
  acceptance: Record<string, number | null>;
  time_split_ms: { draft: number; verify: number; sampling: number };
  /**
   * Each output mismatch, evaluated again in the speculative run's own decode batches (the trees
   * its steps verified, rejected nodes included; see Mismatch): `reproduced` when the run's token
   * leads there, so the batching alone made the difference.
   */
  mismatches: { id: string; at: number; top2_gap: number; kernel_drift: number; row_drift: number; run_lead: number; reproduced: boolean }[];
}

export interface TaskSummary {
  prompts: number;
  skipped: number;
  plain_tps: number | null;
  plain_decode_tps: number | null;
  /** The product default (`auto`) against plain decoding. */
  speedup: number | null;
  identical_rate: number;
  tau: number | null;
  /** Median over prompts of the oracle bound's end-to-end speedup over the same plain run (see oracle.ts). */
  oracle_speedup: number | null;
  /** Tokens per target call of the oracle's schedule (median over prompts). */
  oracle_tau: number | null;
  /** `speedup` / `oracle_speedup`: how much of what the drafters offered the planner realized. */
  realized_vs_oracle: number | null;
  configs: Record<string, ConfigSummary>;
  peers?: Record<string, PeerSummary>;
  /** The best llama.cpp speculative configuration's speedup over llama.cpp's plain decoding. */
  peer_best_speedup?: number | null;
  /**
   * Tachyon auto over the best llama.cpp speculative configuration, in tokens/s after the prompt
   * (llama-server's predicted_per_second leaves prompt processing out, so ours does too). With
   * live peers, the median over prompts of the per-prompt ratio; from a peers file, of medians.
   */
  vs_best_peer?: number | null;
}

export interface PeerSummary {
  /** Median tokens/s after the prompt. */
  median_tps: number | null;
  /** Median over prompts of tokens/s after the prompt over llama.cpp's plain decoding's. */
  speedup: number | null;
  /** Accepted / drafted tokens (live peers only). */
  acceptance?: number | null;
  /** Share of prompts whose output equals Tachyon's plain decoding's (live peers only). */
  identical_to_tachyon_plain?: number;
}

export interface SpecBenchResult {
  model: string;
  draft_model: string | null;
  /** The embedding shape (`--shape`), whose models were built from `source_models`. */
  shape: EmbedPairName | null;
  source_models: { model: string; draft_model: string | null } | null;
  /** The regime, re-measured in this run: a settled single-token decode of the target… */
  ms_per_decode: number;
  /** …and the verify cost c(n) = t(n)/t(1) at 2, 8, 32, 64 tokens. */
  cost_curve: Record<string, number>;
  random_weights: boolean;
  max_tokens: number;
  threads: number | null;
  /** Flash attention of both engines (`--flash-attn`). */
  flash_attention: FlashAttention;
  /** Where the llama.cpp columns come from: run live beside ours, or read from a peers file. */
  peers: { source: 'same run'; server: string; version: string | null; configs: Record<string, string[]> } | { source: 'file'; file: string } | null;
  tasks: Record<string, TaskSummary>;
}

interface PeerFile {
  configs: Record<string, { perTask: Record<string, { median_tps?: number; speedup_vs_plain?: number }> }>;
}

/** Sizes whose c(n) every report states. */
const REGIME_SIZES = [2, 8, 32, 64];

export async function runSpecBench(options: SpecBenchOptions): Promise<SpecBenchResult> {
  const progress = options.onProgress ?? (() => {});
  const models = options.shape ? await ensureEmbeddedPair(options.shape, options, progress) : options;
  const engine = await Engine.load({ model: models.model, draftModel: models.draftModel, gpu: options.gpu, threads: options.threads, flashAttention: options.flashAttention, onMeasure: () => progress('measuring the verify cost curve (once per model and machine)') });
  const measured = new Map<string, TaskRuns>();
  let randomWeights = false;
  let contextSize = 0;
  let livePeers: SpecBenchResult['peers'] = null;
  try {
    ({ contextSize } = engine.info);
    randomWeights = engine.info.model.name.startsWith('tachyon-random');
    const taskPrompts = await loadTasks(engine, options);
    const peers = options.llamaPeers?.length ? await LlamaSpecPeers.start({ ...models, gpu: options.gpu, threads: options.threads, flashAttention: options.flashAttention, contextSize, configs: options.llamaPeers, llamaServer: options.llamaServer }, progress) : undefined;
    try {
      if (peers) livePeers = { source: 'same run', ...peers.describe() };
      await warmUp(engine, peers, taskPrompts, options);
      for (const [task, { prompts, skipped }] of taskPrompts) measured.set(task, await benchTask(engine, peers, task, prompts, skipped, options, progress));
    } finally {
      await peers?.stop();
    }
  } finally {
    await engine.dispose();
  }
  // The engine's worker has exited: llama.cpp's log callback belongs to one thread at a time, so
  // only now may this thread load the models, to time the regime and draft for the oracle.
  const side = await openSideModels(models, options, contextSize);
  try {
    progress('measuring the regime: ms per decode and c(n), n = 1…64');
    const regime = await measureCostCurve(side.target.context, 3);
    const curve = new CostCurve(regime);
    const oracle = new OracleDrafting(side.draft?.context);
    const peerFile = options.peersFile ? (JSON.parse(await readFile(options.peersFile, 'utf8')) as PeerFile) : undefined;
    const tasks: Record<string, TaskSummary> = {};
    for (const [task, runs] of measured) {
      progress(`oracle bound: drafting along the ${task} plain trajectories`);
      tasks[task] = withOracle(runs, await oracleRuns(oracle, runs, curve));
      if (peerFile) attachPeerFile(tasks[task], task, peerFile);
    }
    const result: SpecBenchResult = {
      model: models.model,
      draft_model: models.draftModel ?? null,
      shape: options.shape ?? null,
      source_models: options.shape ? { model: options.model, draft_model: options.draftModel ?? null } : null,
      ms_per_decode: round(regime[0].seconds * 1000, 2) ?? 0,
      cost_curve: Object.fromEntries(REGIME_SIZES.map((n) => [String(n), round(curve.cost(n), 2) ?? 0])),
      random_weights: randomWeights,
      max_tokens: options.maxTokens,
      threads: options.threads ?? null,
      flash_attention: options.flashAttention ?? 'auto',
      peers: livePeers ?? (options.peersFile ? { source: 'file', file: options.peersFile } : null),
      tasks,
    };
    if (options.reportDir) await writeReport(options.reportDir, result);
    return result;
  } finally {
    side.dispose();
  }
}

interface SideModels {
  /** The target again, for the regime's timings. */
  target: { model: Model; context: Context };
  /** The draft model, for the oracle's drafting. */
  draft?: { model: Model; context: Context };
  dispose(): void;
}

/** The regime is timed and the oracle drafts on this thread, after the engine's worker has exited. */
async function openSideModels(models: { model: string; draftModel?: string }, options: SpecBenchOptions, contextSize: number): Promise<SideModels> {
  const owned: { dispose(): void }[] = [];
  const dispose = () => {
    for (const resource of owned.reverse()) resource.dispose();
  };
  try {
    const model = await Model.load(models.model, { gpu: options.gpu });
    owned.push(model);
    const context = Context.create(model, { contextSize, threads: options.threads, flashAttention: options.flashAttention });
    owned.push(context);
    let draft: SideModels['draft'];
    if (models.draftModel) {
      const draftModel = await DraftModelDrafter.loadModel(models.draftModel, model);
      owned.push(draftModel);
      draft = { model: draftModel, context: createDraftContext(draftModel, context, options.threads) };
      owned.push(draft.context);
    }
    return { target: { model, context }, draft, dispose };
  } catch (error) {
    dispose();
    throw error;
  }
}

async function loadTasks(engine: Engine, options: SpecBenchOptions): Promise<Map<string, { prompts: PromptItem[]; skipped: number }>> {
  const files = promptSetFiles(options.tasks, options.promptsFile);
  const tasks = new Map<string, { prompts: PromptItem[]; skipped: number }>();
  for (const file of files) {
    const prompts: PromptItem[] = [];
    let skipped = 0;
    for (const { line, row } of await readJsonLines(file)) {
      if (prompts.length >= options.n) break;
      const tokens = await promptTokens(engine, row, file, line);
      // Prompt + generation must fit the context, or the comparison would end early for both.
      if (tokens.length + options.maxTokens + 1 > engine.info.contextSize) skipped++;
      else prompts.push({ id: row.id != null ? String(row.id) : `${basename(file)}:${line}`, tokens });
    }
    tasks.set(basename(file).replace(/\.jsonl$/, ''), { prompts, skipped });
  }
  return tasks;
}

/** A prompt-set line's tokens: its `chat_prompt` as it stands, or its `prompt` in the model's chat template. */
export function promptTokens(engine: Engine, item: Record<string, unknown>, file: string, line: number): Promise<number[]> {
  if (typeof item.chat_prompt === 'string' && item.chat_prompt) return engine.tokenize(item.chat_prompt);
  if (typeof item.prompt !== 'string') throw new Error(`${file}:${line}: each line needs a "prompt" string`);
  return engine.userPrompt(item.prompt);
}

/** Builds every graph size and measures the cost curve (and warms every peer) before anything is timed. */
async function warmUp(engine: Engine, peers: LlamaSpecPeers | undefined, tasks: Map<string, { prompts: PromptItem[] }>, options: SpecBenchOptions): Promise<void> {
  const first = [...tasks.values()].find((t) => t.prompts.length > 0)?.prompts[0];
  if (!first) return;
  await engine.complete(first.tokens, { maxTokens: 16, speculation: 'off' });
  for (const config of options.configs) await engine.complete(first.tokens, { maxTokens: 32, speculation: config });
  for (const name of peers?.names ?? []) await peers!.complete(name, first.tokens, 32);
}

/** A task's summary before the oracle bound, and the plain runs the bound is computed along. */
interface TaskRuns {
  summary: Omit<TaskSummary, 'oracle_speedup' | 'oracle_tau' | 'realized_vs_oracle'>;
  plain: { prompt: readonly number[]; result: GenerationResult }[];
}

/** One timed run of a prompt: on Tachyon in a decoding mode, or on a llama.cpp peer. */
type Runner = { mode: SpeculationMode } | { peer: string };

async function benchTask(engine: Engine, peers: LlamaSpecPeers | undefined, task: string, prompts: PromptItem[], skipped: number, options: SpecBenchOptions, progress: (line: string) => void): Promise<TaskRuns> {
  const plainRuns: RunRecord[] = [];
  const plainResults: TaskRuns['plain'] = [];
  const configRuns = new Map<string, RunRecord[]>(options.configs.map((c) => [c, []]));
  const peerRuns = new Map<string, PeerRun[]>((peers?.names ?? []).map((name) => [name, []]));
  const runners: Runner[] = [{ mode: 'off' }, ...options.configs.map((mode) => ({ mode })), ...[...peerRuns.keys()].map((peer) => ({ peer }))];
  for (const [index, prompt] of prompts.entries()) {
    // The order rotates from prompt to prompt, so no configuration always runs first (or last)
    // on a prompt: a machine whose speed drifts favours none of them.
    const order = runners.map((_, k) => runners[(k + index) % runners.length]);
    const results = new Map<SpeculationMode, GenerationResult>();
    for (const runner of order) {
      await peers?.settle();
      if ('peer' in runner) peerRuns.get(runner.peer)!.push(await peers!.complete(runner.peer, prompt.tokens, options.maxTokens));
      else results.set(runner.mode, await engine.complete(prompt.tokens, { maxTokens: options.maxTokens, speculation: runner.mode, recordTrees: runner.mode !== 'off' }));
    }
    const plain = results.get('off')!;
    plainRuns.push(record(prompt.id, plain, true));
    for (const config of options.configs) {
      const result = results.get(config)!;
      const run = record(prompt.id, result, sameTokens(result.tokens, plain.tokens));
      if (!run.identical) run.mismatch = await mismatchGap(engine, prompt.tokens, plain.tokens, result.tokens, result.verifiedTrees ?? []);
      configRuns.get(config)!.push(run);
    }
    plainResults.push({ prompt: prompt.tokens, result: plain });
    progress(`${task} ${index + 1}/${prompts.length}`);
  }
  const configs: Record<string, ConfigSummary> = {};
  for (const [config, runs] of configRuns) configs[config] = summarizeConfig(runs, plainRuns);
  const headline = configs.auto ?? Object.values(configs)[0];
  const summary: TaskRuns['summary'] = {
    prompts: prompts.length,
    skipped,
    plain_tps: round(median(plainRuns.map((r) => r.tokensPerSecond)), 1),
    plain_decode_tps: round(median(plainRuns.map((r) => r.decodeTokensPerSecond)), 1),
    speedup: headline?.speedup ?? null,
    identical_rate: headline?.identical_rate ?? 1,
    tau: headline?.tau ?? null,
    configs,
  };
  if (peers) attachLivePeers(summary, peerRuns, configRuns.get('auto'), plainResults);
  return { summary, plain: plainResults };
}

/**
 * The live peers' columns: each configuration's median speed after the prompt and its per-prompt
 * speedup over llama.cpp's plain decoding; ours against the best of them prompt by prompt.
 */
function attachLivePeers(summary: TaskRuns['summary'], runs: Map<string, PeerRun[]>, auto: readonly RunRecord[] | undefined, plain: TaskRuns['plain']): void {
  const llamaPlain = runs.get('plain');
  summary.peers = {};
  let fastest: { median: number; runs: PeerRun[] } | undefined;
  let bestSpeedup: number | null = null;
  for (const [name, peerRuns] of runs) {
    const drafted = peerRuns.reduce((sum, r) => sum + r.drafted, 0);
    const speedup = llamaPlain ? round(median(peerRuns.map((r, i) => r.decodeTokensPerSecond / llamaPlain[i].decodeTokensPerSecond))) : null;
    const medianTps = median(peerRuns.map((r) => r.decodeTokensPerSecond)) ?? 0;
    summary.peers[name] = {
      median_tps: round(medianTps, 1),
      speedup,
      acceptance: drafted > 0 ? round(peerRuns.reduce((sum, r) => sum + r.accepted, 0) / drafted) : null,
      identical_to_tachyon_plain: peerRuns.filter((r, i) => sameTokens(r.tokens, plain[i].result.tokens)).length / Math.max(1, peerRuns.length),
    };
    if (name === 'plain') continue;
    if (speedup !== null) bestSpeedup = Math.max(bestSpeedup ?? 0, speedup);
    if (!fastest || medianTps > fastest.median) fastest = { median: medianTps, runs: peerRuns };
  }
  summary.peer_best_speedup = bestSpeedup;
  summary.vs_best_peer = fastest && auto ? round(median(auto.map((run, i) => run.decodeTokensPerSecond / fastest.runs[i].decodeTokensPerSecond))) : null;
}

async function oracleRuns(oracle: OracleDrafting, runs: TaskRuns, curve: CostCurve): Promise<{ speedup: number; tau: number }[]> {
  const bounds: { speedup: number; tau: number }[] = [];
  for (const { prompt, result } of runs.plain) bounds.push(await oracleBound(oracle, prompt, result, curve));
  return bounds;
}

function withOracle({ summary }: TaskRuns, bounds: readonly { speedup: number; tau: number }[]): TaskSummary {
  const oracleSpeedup = round(median(bounds.map((b) => b.speedup)));
  const { configs, ...head } = summary;
  return {
    ...head,
    oracle_speedup: oracleSpeedup,
    oracle_tau: round(median(bounds.map((b) => b.tau)), 2),
    realized_vs_oracle: summary.speedup !== null && oracleSpeedup ? round(summary.speedup / oracleSpeedup) : null,
    configs,
  };
}

/**
 * The oracle's end-to-end speedup over this plain run: the plain run's decode time is replaced by
 * the oracle schedule's, priced with the plain run's own time per decode and this run's c(n);
 * prefill and per-token work stay as measured (so with nothing to draft, the bound is exactly 1).
 */
async function oracleBound(oracle: OracleDrafting, prompt: readonly number[], plain: GenerationResult, curve: CostCurve): Promise<{ speedup: number; tau: number }> {
  const steps = await oracle.steps(prompt, plain.tokens);
  const decodeMs = plain.stats.timings.verifyMs;
  const schedule = oracleSchedule(steps, curve, decodeMs / Math.max(1, steps.length));
  const oracleMs = plain.stats.totalMs - decodeMs + schedule.ms;
  return { speedup: plain.stats.totalMs / oracleMs, tau: plain.tokens.length / (schedule.steps + 1) };
}

function record(id: string, result: GenerationResult, identical: boolean): RunRecord {
  const { stats } = result;
  return {
    id,
    tokens: result.tokens.length,
    // End to end, prefill included: a drafter's own prompt work is part of its cost.
    tokensPerSecond: stats.totalMs > 0 ? (result.tokens.length / stats.totalMs) * 1000 : 0,
    decodeTokensPerSecond: stats.decodeTokensPerSecond,
    tau: stats.speculation?.tau ?? null,
    identical,
    draftMs: stats.timings.draftMs,
    verifyMs: stats.timings.verifyMs,
    samplingMs: stats.timings.samplingMs,
    accepted: stats.speculation?.drafters ?? {},
  };
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && commonPrefixLength(a, b) === a.length;
}

export interface Mismatch {
  /** Index of the first generated token that differs. */
  at: number;
  /** Plain decoding's top-2 logit gap there. */
  top2Gap: number;
  /**
   * How far the two competing tokens' logits move there between plain decoding's evaluation (one
   * token at a time) and the speculative run's own: the trees its steps verified, rejected nodes
   * included, decoded again in the same batches.
   */
  kernelDrift: number;
  /** The largest move of any logit of that row: kernel rounding moves all a little, a misplaced token or mask moves them by whole units. */
  rowDrift: number;
  /** In the run's own row, its token's logit minus plain decoding's token's. */
  runLead: number;
  /** The run's own row chooses its token: the batches' rounding, not verification, made the difference. */
  reproduced: boolean;
}

/**
 * Where two outputs diverge, how close plain decoding's top-2 logits were there, and what the
 * other run's own decode batches (`otherTrees`: the trees its steps verified) give there.
 */
export async function mismatchGap(engine: Engine, prompt: number[], plain: readonly number[], other: readonly number[], otherTrees: readonly TreeShape[]): Promise<Mismatch> {
  const at = commonPrefixLength(plain, other);
  if (at >= Math.min(plain.length, other.length)) throw new RangeError('one output is a prefix of the other: no token differs');
  const single = await engine.logitsAfter(prompt, plain.slice(0, at));
  const own = await engine.rowAlongTrees(prompt, other, otherTrees, at);
  const [plainToken, otherToken] = [plain[at], other[at]];
  const kernelDrift = Math.max(Math.abs(single[plainToken] - own[plainToken]), Math.abs(single[otherToken] - own[otherToken]));
  const rowDrift = own.reduce((worst, value, token) => Math.max(worst, Math.abs(value - single[token])), 0);
  const runLead = own[otherToken] - own[plainToken];
  return { at, top2Gap: top2Gap(single), kernelDrift, rowDrift, runLead, reproduced: runLead > 0 };
}

function summarizeConfig(runs: RunRecord[], plainRuns: RunRecord[]): ConfigSummary {
  const speedups = runs.map((run, i) => run.tokensPerSecond / plainRuns[i].tokensPerSecond);
  const acceptance: Record<string, number | null> = {};
  for (const name of new Set(runs.flatMap((run) => Object.keys(run.accepted)))) {
    const proposed = runs.reduce((sum, run) => sum + (run.accepted[name]?.proposed ?? 0), 0);
    const accepted = runs.reduce((sum, run) => sum + (run.accepted[name]?.accepted ?? 0), 0);
    acceptance[name] = proposed > 0 ? round(accepted / proposed) : null;
  }
  return {
    median_tps: round(median(runs.map((r) => r.tokensPerSecond)), 1),
    median_decode_tps: round(median(runs.map((r) => r.decodeTokensPerSecond)), 1),
    speedup: round(median(speedups)),
    identical_rate: runs.length > 0 ? runs.filter((r) => r.identical).length / runs.length : 1,
    tau: round(median(runs.map((r) => r.tau ?? Number.NaN)), 2),
    acceptance,
    time_split_ms: {
      draft: round(runs.reduce((s, r) => s + r.draftMs, 0), 1) ?? 0,
      verify: round(runs.reduce((s, r) => s + r.verifyMs, 0), 1) ?? 0,
      sampling: round(runs.reduce((s, r) => s + r.samplingMs, 0), 1) ?? 0,
    },
    mismatches: runs.filter((r) => r.mismatch).map(({ id, mismatch: m }) => ({ id, at: m!.at, top2_gap: round(m!.top2Gap, 6) ?? 0, kernel_drift: round(m!.kernelDrift, 6) ?? 0, row_drift: round(m!.rowDrift, 6) ?? 0, run_lead: round(m!.runLead, 6) ?? 0, reproduced: m!.reproduced })),
  };
}

function attachPeerFile(summary: TaskSummary, task: string, peers: PeerFile): void {
  summary.peers = {};
  let bestSpec: number | null = null;
  let bestSpeedup: number | null = null;
  for (const [name, config] of Object.entries(peers.configs)) {
    const entry = config.perTask[task];
    if (!entry) continue;
    summary.peers[name] = { median_tps: round(entry.median_tps ?? null, 1), speedup: round(entry.speedup_vs_plain ?? null) };
    if (name === 'plain') continue;
    if (entry.median_tps) bestSpec = Math.max(bestSpec ?? 0, entry.median_tps);
    if (entry.speedup_vs_plain) bestSpeedup = Math.max(bestSpeedup ?? 0, entry.speedup_vs_plain);
  }
  summary.peer_best_speedup = round(bestSpeedup);
  const ours = summary.configs.auto?.median_decode_tps ?? null;
  summary.vs_best_peer = ours !== null && bestSpec ? round(ours / bestSpec) : null;
}

const COLORS = ['#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#d62728', '#e377c2', '#7f7f7f'];

async function writeReport(dir: string, result: SpecBenchResult): Promise<void> {
  await mkdir(dir, { recursive: true });
  const groups: BarGroup[] = Object.entries(result.tasks).map(([task, summary]) => {
    const bars = Object.entries(summary.configs).map(([config, c], i) => ({ label: config, median: c.speedup ?? 0, color: COLORS[i % COLORS.length] }));
    bars.push({ label: 'oracle bound', median: summary.oracle_speedup ?? 0, color: '#444444' });
    for (const [name, peer] of Object.entries(summary.peers ?? {})) {
      if (name !== 'plain') bars.push({ label: `llama.cpp ${name}`, median: peer.speedup ?? 0, color: '#bbbbbb' });
    }
    return { title: task, unit: '× plain', bars, note: `τ ${summary.tau ?? '-'} · identical ${(summary.identical_rate * 100).toFixed(0)}%` };
  });
  const svg = barChartSvg('Speculative decoding speedup over plain greedy decoding', `${basename(result.model)} · ${regimeLine(result)} · ${result.max_tokens} new tokens max · medians`, groups);
  await writeFile(join(dir, 'spec-speedup.svg'), svg);
  await writeFile(join(dir, 'spec-report.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(dir, 'spec-report.md'), markdownReport(result));
}

function markdownReport(result: SpecBenchResult): string {
  const lines = [
    '# Speculative decoding benchmark',
    '',
    `Model \`${basename(result.model)}\`${result.draft_model ? `, draft \`${basename(result.draft_model)}\`` : ''}; greedy; up to ${result.max_tokens} new tokens; plain decoding and every configuration in the same process on the same prompts, in an order that rotates from prompt to prompt. Tokens/s are end to end (prefill included) and, as llama-server reports its own, after the prompt; medians over prompts. Speedup is the median of per-prompt end-to-end ratios.`,
    '',
  ];
  lines.push(`Regime (re-measured in this run): ${regimeLine(result)}.${result.shape ? ` Models: the source pair (\`${basename(result.source_models?.model ?? '')}\`${result.source_models?.draft_model ? ` + \`${basename(result.source_models.draft_model)}\`` : ''}) embedded exactly in shape ${result.shape} (Q8_0).` : ''}`, '');
  lines.push('The oracle bound verifies, on plain decoding\'s own trajectory, the best prefix of what the drafters offered at every step with full budgets, knowing which nodes the target accepts, priced at c(n)·t₁ plus the drafting it needed; realized/oracle near 1 means the planner took what the drafters offered.', '');
  if (result.random_weights) {
    lines.push('**Random-weight model:** its output is noise, so acceptance rates and speedups here measure cost, not what a trained model would accept.', '');
  }
  lines.push(peersLine(result), '');
  lines.push('![speedup](spec-speedup.svg)', '');
  for (const [task, summary] of Object.entries(result.tasks)) {
    lines.push(`## ${task}`, '', `${summary.prompts} prompts (${summary.skipped} skipped: too long for the context); plain ${summary.plain_tps ?? '-'} tokens/s end to end, ${summary.plain_decode_tps ?? '-'} after the prompt.`, '');
    lines.push('| configuration | tokens/s | after the prompt | speedup | τ | identical | acceptance | draft / verify / sampling ms |', '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |');
    for (const [config, c] of Object.entries(summary.configs)) {
      const acceptance = Object.entries(c.acceptance).map(([name, rate]) => `${name} ${rate ?? '-'}`).join(', ');
      lines.push(`| tachyon ${config} | ${c.median_tps ?? '-'} | ${c.median_decode_tps ?? '-'} | ${c.speedup ?? '-'}× | ${c.tau ?? '-'} | ${(c.identical_rate * 100).toFixed(0)}% | ${acceptance} | ${c.time_split_ms.draft} / ${c.time_split_ms.verify} / ${c.time_split_ms.sampling} |`);
    }
    for (const [name, peer] of Object.entries(summary.peers ?? {})) {
      const identical = peer.identical_to_tachyon_plain === undefined ? '' : `${(peer.identical_to_tachyon_plain * 100).toFixed(0)}%`;
      lines.push(`| llama.cpp ${name} | | ${peer.median_tps ?? '-'} | ${peer.speedup ?? '-'}× | | ${identical} | ${peer.acceptance != null ? `${peer.acceptance}` : ''} | |`);
    }
    lines.push(`| oracle bound | | | ${summary.oracle_speedup ?? '-'}× | ${summary.oracle_tau ?? '-'} | | | |`);
    lines.push('', `Realized / oracle: **${summary.realized_vs_oracle ?? '-'}**.`);
    if (summary.vs_best_peer != null) lines.push('', `Tachyon auto vs the best llama.cpp speculative configuration: **${summary.vs_best_peer}×** tokens/s after the prompt.`);
    const mismatches = Object.entries(summary.configs).flatMap(([config, c]) =>
      c.mismatches.map((m) => `${config} ${m.id}: first difference at token ${m.at}; plain top-2 logit gap ${m.top2_gap}; in the run's own batches the two logits moved by ${m.kernel_drift} (no logit of the row by more than ${m.row_drift}) and the run's token leads by ${m.run_lead} (${mismatchVerdict(m)})`),
    );
    if (mismatches.length > 0) {
      lines.push('', "Output mismatches, each evaluated again in the speculative run's own decode batches (the trees its steps verified, rejected nodes included) and compared with plain decoding's one token at a time. Batched and single-token kernels round differently; where the run's own row chooses its token, that rounding made the difference, not verification:", '', ...mismatches.map((m) => `- ${m}`));
    }
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}

function peersLine(result: SpecBenchResult): string {
  const peers = result.peers;
  if (!peers) return 'No llama.cpp peers in this run.';
  if (peers.source === 'file') return `llama.cpp rows: read from \`${basename(peers.file)}\` (bench/peers/llama-spec.mjs, measured apart from this run; its speedups are over its own plain decoding, and its tokens/s compare across runs only as far as the machine held still).`;
  const configs = Object.entries(peers.configs).map(([name, flags]) => `${name}${flags.length ? ` (\`${flags.map((f) => (f.startsWith('/') ? basename(f) : f)).join(' ')}\`)` : ''}`).join(', ');
  return `llama.cpp rows: llama-server ${peers.version ?? ''} run live in this process's rotation, one server per configuration (${configs}), each prompt given as the same tokens, greedy, no prompt cache; every run, ours and theirs, waits ${SETTLE_LABEL} first so that no engine starts beside the other's spinning threads. Their speedup is the median per-prompt ratio over llama.cpp's plain decoding; "identical" compares their output with Tachyon's plain decoding; acceptance is drafted tokens accepted. "vs the best llama.cpp" is the median per-prompt ratio of tokens/s after the prompt.`;
}

function regimeLine(result: SpecBenchResult): string {
  const curve = Object.entries(result.cost_curve).map(([n, c]) => `c(${n}) ${c}`).join(', ');
  return `${result.ms_per_decode} ms per decode, ${curve}, flash attention ${result.flash_attention}`;
}

/**
 * Kernel rounding moves a row's logits by hundredths (at most 0.075 in the mismatches seen on
 * embedded m); a token at a wrong position, or a mask that lets a rejected node through, moves
 * them by whole units (the next position's row is more than 0.5 away).
 */
const KERNEL_ROUNDING_BOUND = 0.25;

/**
 * The replay decodes the run's batches, but its KV cells lie elsewhere in the cache than the
 * run's did, and attention over another layout rounds differently too: a tie closer than the
 * row's own rounding may come out either way there.
 */
function mismatchVerdict(m: ConfigSummary['mismatches'][number]): string {
  if (m.row_drift >= KERNEL_ROUNDING_BOUND) return 'NOT kernel rounding: the row moved by whole units, look for a verification bug';
  if (m.reproduced) return 'kernel rounding: reproduced in its own batches';
  if (m.top2_gap <= 2 * m.row_drift) return 'kernel rounding: a tie within the row\'s rounding, which the replay\'s KV layout rounds the other way';
  return 'NOT explained by kernel rounding: look for a verification bug';
}
