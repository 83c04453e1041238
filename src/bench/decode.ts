/**
 * `bench decode`: prefill and decode tokens/s of Tachyon's generation loop against node-llama-cpp's
 * public API on the same llama.cpp binaries, model file, thread count, context and prompt tokens.
 * Every measurement runs in its own child process (the two bindings cannot share one); runs
 * alternate between the two sides and the report gives medians.
 */
import type { GpuChoice } from '../llama/library.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { runJob, type DecodeJob, type DecodeResult, type Side } from './child.js';
import { commonPrefixLength, ratio, round, summarize, median, type Summary } from './stats.js';

export const PEER_NAME = 'node-llama-cpp';

export interface DecodeBenchOptions {
  model: string;
  gpu: GpuChoice;
  threads: number;
  /** Measured runs per side. */
  runs: number;
  promptTokens: number;
  /** Tokens generated per run (greedy, end-of-generation ignored). */
  tokens: number;
  /** Tokens of the warm-up generation each process runs before its measured one (default 64: JIT-warm JS on both sides). */
  warmupTokens?: number;
  /** Also measure node-llama-cpp (when installed). */
  peer: boolean;
  contextSize?: number;
  /** Tachyon's decoding mode; default `off` (plain decoding, like the peer). */
  speculation?: SpeculationMode;
  /** Per child process. */
  timeoutMs?: number;
  onProgress?: (detail: string) => void;
}

export interface RunSample {
  run: number;
  side: Side;
  prefill_tps: number | null;
  decode_tps: number | null;
  first_token_ms: number | null;
  decode_ms: number | null;
  load_ms: number | null;
}

export interface SideSummary {
  decode_tps: Summary;
  prefill_tps: Summary;
}

export interface DecodeBenchReport {
  model: string;
  backend: string;
  devices: string[];
  threads: number;
  runs: number;
  prompt_tokens: number;
  tokens: number;
  context_size: number;
  batch_size: number;
  warmup_tokens: number;
  speculation: SpeculationMode;
  tachyon_decode_tps: number | null;
  peer_decode_tps: number | null;
  /** tachyon / peer median decode tokens/s. */
  ratio: number | null;
  tachyon_prefill_tps: number | null;
  peer_prefill_tps: number | null;
  prefill_ratio: number | null;
  /** Median over runs of tachyon/peer within the same run (less sensitive to load drifting over time). */
  paired_ratio: number | null;
  paired_prefill_ratio: number | null;
  tachyon: SideSummary;
  peer: SideSummary | null;
  peer_name: string;
  /** Why the peer was not measured (not installed, failed), else null. */
  peer_note: string | null;
  /** How many leading generated tokens the two sides agree on (greedy), of `tokens`. */
  greedy_agreement: { matching_prefix: number; identical: number; of: number } | null;
  samples: RunSample[];
}

/** Is node-llama-cpp resolvable from here (it is a devDependency: absent from production installs)? */
export function peerInstalled(): boolean {
  try {
    import.meta.resolve('node-llama-cpp');
    return true;
  } catch {
    return false;
  }
}

/** Context size used by both sides: the prompt and the generated tokens, rounded up to 256. */
export function benchContextSize(promptTokens: number, tokens: number): number {
  return Math.ceil((promptTokens + tokens + 1) / 256) * 256;
}

function sample(run: number, result: DecodeResult): RunSample {
  return {
    run,
    side: result.side,
    prefill_tps: round(result.prefillTps, 2),
    decode_tps: round(result.decodeTps, 2),
    first_token_ms: round(result.firstTokenMs, 3),
    decode_ms: round(result.decodeMs, 3),
    load_ms: round(result.loadMs, 1),
  };
}

function summarizeSide(results: readonly DecodeResult[]): SideSummary {
  return { decode_tps: summarize(results.map((r) => r.decodeTps)), prefill_tps: summarize(results.map((r) => r.prefillTps)) };
}

function agreement(a: readonly number[], b: readonly number[], of: number) {
  const prefix = commonPrefixLength(a, b);
  let identical = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] === b[i]) identical++;
  return { matching_prefix: prefix, identical, of };
}

export async function runDecodeBench(options: DecodeBenchOptions): Promise<DecodeBenchReport> {
  if (options.tokens < 2) throw new RangeError('--tokens must be at least 2 (decode speed is measured after the first token)');
  const contextSize = options.contextSize ?? benchContextSize(options.promptTokens, options.tokens);
  if (options.promptTokens + options.tokens > contextSize) {
    throw new RangeError(`prompt (${options.promptTokens}) + tokens (${options.tokens}) do not fit the context of ${contextSize} tokens`);
  }
  const batchSize = Math.min(512, contextSize);
  let peerNote: string | null = null;
  let withPeer = options.peer;
  if (withPeer && !peerInstalled()) {
    withPeer = false;
    peerNote = `${PEER_NAME} is not installed (it is a devDependency): measuring Tachyon only`;
  }

  const base = {
    kind: 'decode' as const,
    model: options.model,
    gpu: options.gpu,
    threads: options.threads,
    contextSize,
    batchSize,
    promptLength: options.promptTokens,
    tokens: options.tokens,
    // At most `tokens`: the warm-up must fit the same context as the measured generation.
    warmupTokens: Math.min(options.warmupTokens ?? 64, options.tokens),
    speculation: options.speculation ?? 'off',
  };
  const timeoutMs = options.timeoutMs ?? 600_000;
  const tachyon: DecodeResult[] = [];
  const peer: DecodeResult[] = [];
  const pairs: { tachyon?: DecodeResult; peer?: DecodeResult }[] = [];
  const samples: RunSample[] = [];
  let prompt: number[] | undefined;

  const measure = async (side: Side, run: number): Promise<void> => {
    const job: DecodeJob = { ...base, side, prompt };
    let result: DecodeResult;
    try {
      result = await runJob(job, timeoutMs);
    } catch (error) {
      const message = (error as Error).message;
      if (side === 'tachyon') throw new Error(run === 1 ? message : `${message} (tachyon, run ${run})`);
      // The peer is the baseline, not the product: report its failure and carry on without it.
      peerNote = `${PEER_NAME} failed: ${message}`;
      withPeer = false;
      options.onProgress?.(peerNote);
      return;
    }
    prompt ??= result.prompt;
    (side === 'tachyon' ? tachyon : peer).push(result);
    (pairs[run - 1] ??= {})[side] = result;
    samples.push(sample(run, result));
    options.onProgress?.(`run ${run}/${options.runs} ${side === 'tachyon' ? 'tachyon' : PEER_NAME}: decode ${result.decodeTps.toFixed(1)} tok/s, prefill ${result.prefillTps.toFixed(0)} tok/s`);
  };

  for (let run = 1; run <= options.runs; run++) {
    // ABBA order (tachyon first in odd runs, the peer first in even ones): a slow drift in machine
    // load then favours neither side. Tachyon always goes first in run 1: it builds the prompt.
    const order: Side[] = !withPeer ? ['tachyon'] : run % 2 === 1 ? ['tachyon', 'peer'] : ['peer', 'tachyon'];
    for (const side of order) if (side === 'tachyon' || withPeer) await measure(side, run);
  }

  const t = summarizeSide(tachyon);
  const p = peer.length > 0 ? summarizeSide(peer) : null;
  const complete = pairs.filter((pair) => pair.tachyon && pair.peer);
  const paired = (key: 'decodeTps' | 'prefillTps') => (complete.length > 0 ? median(complete.map((pair) => pair.tachyon![key] / pair.peer![key])) : null);
  const first = tachyon[0];
  return {
    model: options.model,
    backend: first.backend,
    devices: first.devices,
    threads: options.threads,
    runs: options.runs,
    prompt_tokens: options.promptTokens,
    tokens: options.tokens,
    context_size: contextSize,
    batch_size: batchSize,
    warmup_tokens: base.warmupTokens,
    speculation: base.speculation,
    tachyon_decode_tps: round(t.decode_tps.median, 2),
    peer_decode_tps: p ? round(p.decode_tps.median, 2) : null,
    ratio: round(ratio(t.decode_tps.median, p?.decode_tps.median), 4),
    tachyon_prefill_tps: round(t.prefill_tps.median, 2),
    peer_prefill_tps: p ? round(p.prefill_tps.median, 2) : null,
    prefill_ratio: round(ratio(t.prefill_tps.median, p?.prefill_tps.median), 4),
    paired_ratio: round(paired('decodeTps'), 4),
    paired_prefill_ratio: round(paired('prefillTps'), 4),
    tachyon: t,
    peer: p,
    peer_name: PEER_NAME,
    peer_note: peerNote,
    greedy_agreement: peer.length > 0 ? agreement(first.generated, peer[0].generated, options.tokens) : null,
    samples,
  };
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const fmt = (value: number | null | undefined, digits: number) => (value == null || !Number.isFinite(value) ? '-' : value.toFixed(digits));

function cell(summary: Summary | undefined, digits: number): string {
  if (!summary || summary.n === 0) return '-';
  return `${fmt(summary.median, digits)} (${fmt(summary.min, digits)}–${fmt(summary.max, digits)})`;
}

/** The human-readable report. */
export function formatDecodeReport(report: DecodeBenchReport, minRatio: number): string {
  const devices = report.devices.length > 0 ? ` (${report.devices.join(', ')})` : '';
  const lines = [
    `model     ${report.model}`,
    `setup     ${report.backend}${devices} · ${plural(report.threads, 'thread')} · context ${report.context_size} · prompt ${report.prompt_tokens} tokens · decode ${report.tokens} tokens (greedy${report.speculation === 'off' ? '' : `, tachyon speculation ${report.speculation}`}) · ${plural(report.runs, 'run')} each`,
    '',
    `${''.padEnd(16)}${'prefill tok/s  median (min–max)'.padEnd(36)}decode tok/s  median (min–max)`,
    `${'tachyon'.padEnd(16)}${cell(report.tachyon.prefill_tps, 1).padEnd(36)}${cell(report.tachyon.decode_tps, 2)}`,
  ];
  if (report.peer) {
    lines.push(`${PEER_NAME.padEnd(16)}${cell(report.peer.prefill_tps, 1).padEnd(36)}${cell(report.peer.decode_tps, 2)}`);
    const verdict = report.ratio == null ? '' : report.ratio >= minRatio ? `  (≥ ${minRatio}: ok)` : `  (< ${minRatio}: TOO SLOW)`;
    lines.push(
      `${'ratio'.padEnd(16)}${`${fmt(report.prefill_ratio, 3)} (paired ${fmt(report.paired_prefill_ratio, 3)})`.padEnd(36)}${fmt(report.ratio, 3)} (paired ${fmt(report.paired_ratio, 3)})${verdict}`,
    );
  }
  if (report.greedy_agreement) {
    const g = report.greedy_agreement;
    lines.push('', `greedy tokens: both sides agree on the first ${g.matching_prefix} of ${g.of} (${g.identical} identical)`);
  }
  if (report.peer_note) lines.push('', report.peer_note);
  return lines.join('\n');
}
