/**
 * `tachyon bench batch`: many concurrent requests on one engine. At each concurrency the same
 * prompts go through the load harness to Tachyon (plain and speculative) and to llama-server
 * (`--parallel N --cont-batching`, same model, threads and total KV), over the same client code;
 * aggregate tokens/s, TTFT and inter-token latency percentiles; JSON, Markdown and SVG.
 */
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Engine } from '../engine/engine.js';
import { DEFAULT_PREFILL_STRETCH } from '../engine/prefill-pacer.js';
import { ChatFormatter } from '../generate/chat.js';
import { detachLlamaLogger, type GpuChoice } from '../llama/library.js';
import { Model } from '../llama/model.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { locatePeer, rawCompletionFlags, type LlamaServers } from './peer-server.js';
import { barChartSvg, type BarGroup } from './chart.js';
import { plural } from './decode.js';
import { writeFileAtomic } from '../atomic-file.js';
import { promptSetFiles, readJsonLines } from './jsonl.js';
import { runAdmission, type AdmissionRequests, type AdmissionResult } from './admission.js';
import { EngineTarget, engineTargetName, OpenAiCompletionsTarget, runLoad, summarizeLoad, type LoadRequest, type LoadSummary, type LoadTarget } from './load.js';
import { medianItem, ratio, round } from './stats.js';

export interface BatchBenchOptions {
  model: string;
  draftModel?: string;
  gpu: GpuChoice;
  threads: number;
  concurrency: readonly number[];
  /** Tachyon's decoding modes; `off` is plain decoding. */
  speculation: readonly SpeculationMode[];
  tasks: readonly string[];
  promptsFile?: string;
  /** Requests per run (each concurrency × target), drawn round-robin from the prompt sets. */
  n: number;
  maxTokens: number;
  /**
   * Rounds per concurrency (default 1), the targets interleaved within each; every target's
   * median round (by tokens/s) is reported, so one noisy round moves no ratio.
   */
  repeats?: number;
  /** KV cells of each engine in all; default: the largest concurrency × the longest request. */
  kvCells?: number;
  /**
   * Also admit a long prompt among running streams (plain decoding, Tachyon and the peer): the
   * streams' inter-token latency while it is prefilled, and its TTFT against its prefill alone.
   */
  admission?: AdmissionOptions;
  /** Tachyon's PrefillPacer stretch (default DEFAULT_PREFILL_STRETCH). */
  prefillStretch?: number;
  /** Run llama-server as the peer. */
  peer: boolean;
  /** A llama-server binary (default: built once by bench/peers/build-llama-cpp.sh). */
  llamaServer?: string;
  reportDir?: string;
  onProgress?: (line: string) => void;
}

export const PEER = 'llama-server';

export type AdmissionOutcome = AdmissionResult | { error: string };

export interface AdmissionOptions {
  /** Tokens of the admitted prompt (e.g. 2048). */
  promptTokens: number;
  /** Streams decoding while it arrives (e.g. 4). */
  streams: number;
  /** Most tokens of each stream (they are stopped once the prompt's first token is out). */
  streamTokens: number;
}

export interface ConcurrencySummary {
  plain_tps: number | null;
  spec_tps: number | null;
  spec_speedup: number | null;
  peer_tps: number | null;
  /** The same while every client had a request in flight (LoadSummary.steady_tokens_per_second). */
  steady_plain_tps: number | null;
  steady_spec_tps: number | null;
  steady_spec_speedup: number | null;
  /** Latencies of Tachyon's plain decoding (every target's are under `runs`). */
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  itl_p50_ms: number | null;
  itl_p99_ms: number | null;
  /** Every target's summary, by target name. */
  runs: Record<string, RoundedSummary>;
}

export type RoundedSummary = { [K in keyof LoadSummary]: LoadSummary[K] extends number ? number | null : LoadSummary[K] };

export interface BatchBenchResult {
  model: string;
  /** Tachyon's single-stream plain inter-token latency (p50 at concurrency 1). */
  ms_per_decode: number | null;
  single_stream_vs_llama_server: number | null;
  concurrency: Record<string, ConcurrencySummary>;
  /** The long-prompt admission, by target (when asked for); a target that could not run it says why. */
  admission: Record<string, AdmissionOutcome> | null;
  settings: {
    draft_model: string | null;
    threads: number;
    gpu: GpuChoice;
    kv_cells: number;
    n: number;
    max_tokens: number;
    repeats: number;
    prefill_stretch: number;
    admission: AdmissionOptions | null;
    prompts: string[];
    speculation: SpeculationMode[];
    peer: { server: string; version: string | null; flags: string[] } | null;
  };
}

export async function runBatchBench(options: BatchBenchOptions): Promise<BatchBenchResult> {
  const progress = options.onProgress ?? (() => {});
  const { requests, admission } = await loadRequests(options);
  const maxConcurrency = Math.max(1, ...options.concurrency, admission ? admission.streams.length + 1 : 1);
  const kvCells = options.kvCells ?? roundUp(Math.max(maxConcurrency * Math.max(...requests.map((r) => r.promptTokens + r.maxTokens)), admission?.kvCells ?? 0), 256);
  const engine = await Engine.load({ model: options.model, draftModel: options.draftModel, gpu: options.gpu, threads: options.threads, kvCells, maxSequences: maxConcurrency, prefillStretch: options.prefillStretch, onMeasure: () => progress('measuring the verify cost curve (once per model and machine)') });
  const peer = options.peer ? await LlamaServerPeer.locate(options, kvCells, progress) : undefined;
  try {
    const concurrency: Record<string, ConcurrencySummary> = {};
    for (const [index, c] of options.concurrency.entries()) {
      if (requests.length < c) progress(`concurrency ${c}: only ${requests.length} requests (--n), so at most ${requests.length} run at once`);
      const rounds = new Map<string, LoadSummary[]>();
      // The order rotates from one round and concurrency to the next: a machine whose speed drifts favours no target.
      // Every run sends the same prompts, so each drafts from a history of its own (the salt): a
      // history holding an earlier run's answers replays them (c2 once measured 2.7x plain this way).
      const order = [...options.speculation.map((mode) => ({ mode })), ...(peer ? [{ mode: 'peer' as const }] : [])];
      for (let round = 0; round < (options.repeats ?? 1); round++) {
        for (const k of order.keys()) {
          const { mode } = order[(k + index + round) % order.length];
          const summary = mode === 'peer' ? await peer!.run(c, requests, progress) : await runTarget(new EngineTarget(engine, mode, `concurrency ${c}, round ${round}`), c, requests, progress);
          rounds.set(summary.target, [...(rounds.get(summary.target) ?? []), summary]);
        }
      }
      const runs = new Map([...rounds].map(([target, summaries]) => [target, medianItem(summaries, (summary) => summary.tokens_per_second)]));
      concurrency[String(c)] = summarizeConcurrency(runs, options.speculation);
    }
    const admitted = admission ? await runAdmissions(engine, peer, admission, progress) : null;
    const single = concurrency['1'];
    const result: BatchBenchResult = {
      model: options.model,
      ms_per_decode: single?.itl_p50_ms ?? null,
      single_stream_vs_llama_server: round(ratio(single?.plain_tps, single?.peer_tps)),
      concurrency,
      admission: admitted,
      settings: {
        draft_model: options.draftModel ?? null,
        threads: options.threads,
        gpu: options.gpu,
        kv_cells: kvCells,
        n: requests.length,
        max_tokens: options.maxTokens,
        repeats: options.repeats ?? 1,
        prefill_stretch: options.prefillStretch ?? DEFAULT_PREFILL_STRETCH,
        admission: options.admission ?? null,
        prompts: promptSetFiles(options.tasks, options.promptsFile).map((file) => basename(file)),
        speculation: [...options.speculation],
        peer: peer?.describe() ?? null,
      },
    };
    if (options.reportDir) await writeBatchReport(options.reportDir, result);
    return result;
  } finally {
    await engine.dispose();
  }
}

interface BenchRequest extends LoadRequest {
  promptTokens: number;
}

/**
 * `n` requests drawn round-robin from the prompt sets (so every run mixes them), each prompt as
 * chat-formatted text that every target tokenizes alike (BOS added, special tokens parsed). Prompts
 * that leave no room for `maxTokens` within the model's trained context are skipped. With
 * `admission`, also its streams and long prompts.
 */
async function loadRequests(options: BatchBenchOptions): Promise<{ requests: BenchRequest[]; admission?: AdmissionRequests & { kvCells: number } }> {
  const model = await Model.load(options.model, { gpu: 'cpu' });
  try {
    const formatter = model.metadata.chatTemplate ? ChatFormatter.forModel(model) : undefined;
    const limit = model.metadata.contextLength || 4096;
    const rows = await Promise.all(promptSetFiles(options.tasks, options.promptsFile).map(async (file) => (await readJsonLines(file)).map(({ line, row }) => ({ row, where: `${file}:${line}`, id: row.id != null ? String(row.id) : `${basename(file)}:${line}` }))));
    const sets = rows.map((set) => {
      const fitting: BenchRequest[] = [];
      for (const { row, where, id } of set) {
        const prompt = promptText(row, formatter, where);
        const promptTokens = model.tokenizer.tokenize(prompt).length;
        if (promptTokens + options.maxTokens <= limit) fitting.push({ id, prompt, promptTokens, maxTokens: options.maxTokens });
      }
      return fitting;
    });
    const requests: BenchRequest[] = [];
    for (let i = 0; requests.length < options.n && sets.some((set) => i < set.length); i++) {
      for (const set of sets) if (i < set.length && requests.length < options.n) requests.push(set[i]);
    }
    if (requests.length === 0) throw new Error(`no prompt fits the model's context (${limit} tokens) with ${options.maxTokens} new tokens`);
    const admission = options.admission && admissionRequests(options.admission, requests, rows.flat().map(({ row, where }) => promptText(row, undefined, where)), model, limit);
    return { requests, admission };
  } finally {
    model.dispose();
    // This thread is done with llama.cpp: counted out, it leaves the engine worker alone with its log.
    detachLlamaLogger();
  }
}

/**
 * The admission's streams (the first requests, running long) and two long prompts of exactly
 * `promptTokens` tokens made of the prompt sets' texts, in different orders (they share no prefix,
 * so neither reuses the other's KV).
 */
function admissionRequests(options: AdmissionOptions, requests: readonly BenchRequest[], texts: readonly string[], model: Model, limit: number): AdmissionRequests & { kvCells: number } {
  if (options.promptTokens + 2 > limit) throw new Error(`the admitted prompt (${options.promptTokens} tokens) does not fit the model's context (${limit} tokens)`);
  const longPrompt = (id: string, first: number): LoadRequest => {
    const parts: string[] = [];
    for (let i = 0, tokens = 0; tokens <= options.promptTokens; i++) {
      parts.push(texts[(first + i) % texts.length]);
      tokens += model.tokenizer.tokenize(parts.at(-1)!, { addSpecial: false }).length;
    }
    const tokens = model.tokenizer.tokenize(parts.join('\n\n'), { addSpecial: false }).slice(0, options.promptTokens - 1);
    return { id, prompt: model.tokenizer.detokenize(tokens), maxTokens: 1 };
  };
  const streams = Array.from({ length: options.streams }, (_, i) => {
    const request = requests[i % requests.length];
    return { ...request, id: `stream-${i}`, maxTokens: Math.min(options.streamTokens, limit - request.promptTokens) };
  });
  // Every stream at its longest, and the long prompt (a few tokens more if re-tokenizing its text merges differently).
  const kvCells = streams.reduce((sum, stream) => sum + stream.promptTokens + stream.maxTokens, 0) + options.promptTokens + 64;
  return { streams, admitted: longPrompt('admitted', 0), solo: longPrompt('solo', Math.floor(texts.length / 2)), kvCells };
}

function promptText(row: Record<string, unknown>, formatter: ChatFormatter | undefined, where: string): string {
  if (typeof row.chat_prompt === 'string' && row.chat_prompt) return row.chat_prompt;
  if (typeof row.prompt !== 'string') throw new Error(`${where}: each line needs a "prompt" (or "chat_prompt") string`);
  return formatter ? formatter.render([{ role: 'user', content: row.prompt }]) : row.prompt;
}

const roundUp = (value: number, step: number) => Math.ceil(value / step) * step;

/** One warm-up request (graphs built, cost curve measured), then the timed run. */
async function runTarget(target: LoadTarget, concurrency: number, requests: readonly LoadRequest[], progress: (line: string) => void): Promise<LoadSummary> {
  await runLoad(target, [{ ...requests[0], id: 'warm-up', maxTokens: Math.min(8, requests[0].maxTokens) }], { concurrency: 1 });
  let done = 0;
  const run = await runLoad(target, requests, {
    concurrency,
    onRequestDone: (timing) => progress(`concurrency ${concurrency} · ${target.name} ${++done}/${requests.length}${timing.error ? ` failed: ${timing.error}` : ''}`),
  });
  return summarizeLoad(run);
}

/** The long prompt among running streams, on Tachyon's plain decoding and on the peer (one slot more than streams). */
async function runAdmissions(engine: Engine, peer: LlamaServerPeer | undefined, admission: AdmissionRequests, progress: (line: string) => void): Promise<Record<string, AdmissionOutcome>> {
  const targets: { name: string; run: () => Promise<AdmissionResult> }[] = [{ name: engineTargetName('off'), run: () => runAdmission(new EngineTarget(engine, 'off'), admission) }];
  if (peer) targets.push({ name: PEER, run: () => peer.withServer(admission.streams.length + 1, progress, (target) => runAdmission(target, admission)) });
  const results: Record<string, AdmissionOutcome> = {};
  for (const { name, run } of targets) {
    progress(`admission: ${plural(admission.streams.length, 'stream')} running, a long prompt arrives · ${name}`);
    try {
      results[name] = roundAdmission(await run());
    } catch (error) {
      results[name] = { error: error instanceof Error ? error.message : String(error) };
      progress(`admission · ${name} failed: ${results[name].error}`);
    }
  }
  return results;
}

function roundAdmission(result: AdmissionResult): AdmissionResult {
  return Object.fromEntries(Object.entries(result).map(([key, value]) => [key, round(value, 2) ?? Number.NaN])) as Record<keyof AdmissionResult, number>;
}

/** llama-server, started for each concurrency with that many slots over the same total KV. */
class LlamaServerPeer {
  private constructor(
    private readonly servers: LlamaServers,
    private readonly bin: string,
    private readonly version: string | null,
    private readonly flags: string[],
  ) {}

  static async locate(options: BatchBenchOptions, kvCells: number, progress: (line: string) => void): Promise<LlamaServerPeer> {
    const { servers, path, help, version } = await locatePeer(options.llamaServer, progress);
    const flags = ['-m', options.model, '-c', String(kvCells), '-t', String(options.threads), '-tb', String(options.threads), '--cont-batching'];
    flags.push('-ngl', options.gpu === 'cpu' ? '0' : '999');
    // One KV buffer for all slots, as Tachyon's engine has: any request may use any cell.
    if (servers.helpHasFlag(help, '--kv-unified')) flags.push('--kv-unified');
    flags.push(...rawCompletionFlags(servers, help));
    if (servers.helpHasFlag(help, '--cache-ram')) flags.push('--cache-ram', '0');
    return new LlamaServerPeer(servers, path, version, flags);
  }

  describe() {
    return { server: this.bin, version: this.version, flags: this.flags };
  }

  run(concurrency: number, requests: readonly LoadRequest[], progress: (line: string) => void): Promise<LoadSummary> {
    return this.withServer(concurrency, progress, (target) => runTarget(target, concurrency, requests, progress));
  }

  /** Runs `use` against a server started with `parallel` slots, stopped afterwards. */
  async withServer<T>(parallel: number, progress: (line: string) => void, use: (target: LoadTarget) => Promise<T>): Promise<T> {
    const server = new this.servers.LlamaServer(this.bin, `parallel-${parallel}`, [...this.flags, '--parallel', String(parallel)], { log: progress });
    try {
      await server.start();
      return await use(new OpenAiCompletionsTarget(PEER, server.url));
    } finally {
      await server.stop();
    }
  }
}

function summarizeConcurrency(runs: Map<string, LoadSummary>, modes: readonly SpeculationMode[]): ConcurrencySummary {
  const plain = runs.get(engineTargetName('off'));
  const specMode = modes.find((mode) => mode !== 'off');
  const spec = specMode ? runs.get(engineTargetName(specMode)) : undefined;
  const peer = runs.get(PEER);
  const ms = (value: number | undefined) => round(value ?? null, 2);
  return {
    plain_tps: round(plain?.tokens_per_second ?? null, 1),
    spec_tps: round(spec?.tokens_per_second ?? null, 1),
    spec_speedup: round(ratio(spec?.tokens_per_second, plain?.tokens_per_second)),
    peer_tps: round(peer?.tokens_per_second ?? null, 1),
    steady_plain_tps: round(plain?.steady_tokens_per_second ?? null, 1),
    steady_spec_tps: round(spec?.steady_tokens_per_second ?? null, 1),
    steady_spec_speedup: round(ratio(spec?.steady_tokens_per_second, plain?.steady_tokens_per_second)),
    ttft_p50_ms: ms(plain?.ttft_p50_ms),
    ttft_p99_ms: ms(plain?.ttft_p99_ms),
    itl_p50_ms: ms(plain?.itl_p50_ms),
    itl_p99_ms: ms(plain?.itl_p99_ms),
    runs: Object.fromEntries([...runs].map(([name, summary]) => [name, roundSummary(summary)])),
  };
}

function roundSummary(summary: LoadSummary): RoundedSummary {
  return Object.fromEntries(Object.entries(summary).map(([key, value]) => [key, typeof value === 'number' ? round(value, 2) : value])) as RoundedSummary;
}

const COLORS: Record<string, string> = { tachyon: '#2f6fdf', [PEER]: '#999999' };
const SPEC_COLOR = '#e07b24';

async function writeBatchReport(dir: string, result: BatchBenchResult): Promise<void> {
  await mkdir(dir, { recursive: true });
  const subtitle = `${basename(result.model)} · ${plural(result.settings.threads, 'thread')} · ${result.settings.n} requests of up to ${result.settings.max_tokens} tokens per run · KV ${result.settings.kv_cells} cells`;
  const groups = (metric: 'tokens_per_second' | 'itl_p99_ms', unit: string): BarGroup[] =>
    Object.entries(result.concurrency).map(([c, summary]) => ({
      title: `${c} concurrent`,
      unit,
      bars: Object.entries(summary.runs).map(([name, run]) => ({ label: name.replace('tachyon spec ', 'spec '), median: run[metric] ?? 0, color: COLORS[name] ?? SPEC_COLOR })),
      note: summary.spec_speedup != null ? `spec / plain = ${summary.spec_speedup} (steady ${summary.steady_spec_speedup ?? '-'})` : undefined,
    }));
  if (Object.keys(result.concurrency).length > 0) {
    await writeFileAtomic(join(dir, 'batch-throughput.svg'), barChartSvg('Aggregate throughput under concurrent requests', subtitle, groups('tokens_per_second', 'tokens/s')), { shared: true });
    await writeFileAtomic(join(dir, 'batch-itl-p99.svg'), barChartSvg('Inter-token latency, 99th percentile', subtitle, groups('itl_p99_ms', 'ms')), { shared: true });
  }
  if (result.admission) await writeFileAtomic(join(dir, 'batch-admission.svg'), admissionSvg(result.admission, subtitle), { shared: true });
  await writeFileAtomic(join(dir, 'batch-report.json'), `${JSON.stringify(result, null, 2)}\n`, { shared: true });
  await writeFileAtomic(join(dir, 'batch-report.md'), markdownReport(result), { shared: true });
}

/** The targets that ran the admission. */
const admitted = (admission: Record<string, AdmissionOutcome>) => Object.entries(admission).filter((entry): entry is [string, AdmissionResult] => !('error' in entry[1]));

function admissionSvg(admission: Record<string, AdmissionOutcome>, subtitle: string): string {
  const entries = admitted(admission);
  const groups: BarGroup[] = [
    { title: 'Streams\' inter-token latency', unit: 'ms', bars: entries.flatMap(([name, r]) => [{ label: `${name} steady p50`, median: r.steady_itl_p50_ms, color: '#bbbbbb' }, { label: `${name} admitting p99`, median: r.admission_itl_p99_ms, color: COLORS[name] ?? SPEC_COLOR }]) },
    { title: 'Long prompt\'s first token', unit: 'ms', bars: entries.flatMap(([name, r]) => [{ label: `${name} alone`, median: r.solo_ttft_ms, color: '#bbbbbb' }, { label: `${name} among streams`, median: r.ttft_ms, color: COLORS[name] ?? SPEC_COLOR }]) },
  ];
  return barChartSvg('A long prompt admitted among running streams', subtitle, groups);
}

function admissionSection(admission: Record<string, AdmissionOutcome>, options: AdmissionOptions, stretch: number): string[] {
  const lines = [
    `## A ${options.promptTokens}-token prompt admitted among ${plural(options.streams, 'running stream')}`,
    '',
    '![admission](batch-admission.svg)',
    '',
    `The streams (plain decoding; one that ends or fails is sent again at once) run steadily (Tachyon's prefill stretch ${stretch}); the long prompt (1 new token) is sent; their inter-token gaps until its first token are compared with their own steady median, and its TTFT with the same-length prompt (no shared prefix) prefilled alone first. Targets: admitting p99 ≤ 2× steady p50, TTFT ≤ 1.5× alone.`,
    '',
    '| target | steady ITL p50 ms | admitting ITL p50 ms | admitting ITL p99 ms | p99 / steady | TTFT ms | alone ms | TTFT / alone | stream restarts |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [name, r] of admitted(admission)) {
    lines.push(`| ${name} | ${r.steady_itl_p50_ms} | ${r.admission_itl_p50_ms} | ${r.admission_itl_p99_ms} | ${r.itl_p99_vs_steady} | ${r.ttft_ms} | ${r.solo_ttft_ms} | ${r.ttft_vs_solo} | ${r.stream_restarts} |`);
  }
  for (const [name, outcome] of Object.entries(admission)) if ('error' in outcome) lines.push('', `${name} could not run it: ${outcome.error}`);
  return lines;
}

function markdownReport(result: BatchBenchResult): string {
  const { settings } = result;
  const runs = Object.keys(result.concurrency).length > 0;
  const lines = [
    '# Concurrent requests on one engine',
    '',
    `Model \`${basename(result.model)}\`${settings.draft_model ? `, draft \`${basename(settings.draft_model)}\`` : ''}; ${plural(settings.threads, 'thread')} (${settings.gpu}); ${runs ? `${settings.n} greedy requests of up to ${settings.max_tokens} new tokens per run, ` : 'prompts '}from ${settings.prompts.join(', ')}; every engine holds ${settings.kv_cells} KV cells in all. One client (src/bench/load.ts) drives every target with the same requests${runs ? `, keeping the given number in flight${settings.repeats > 1 ? `; ${settings.repeats} interleaved rounds per concurrency, each target's median round shown` : ''}` : ''}.`,
    '',
  ];
  if (runs) lines.push(`Single-stream plain decoding: ${result.ms_per_decode ?? '-'} ms per token; vs llama-server ${result.single_stream_vs_llama_server ?? '-'}×.`, '');
  if (settings.peer) lines.push(`Peer: \`llama-server ${settings.peer.flags.join(' ')} --parallel N\` (${settings.peer.version ?? 'version unknown'}), over HTTP (\`/v1/completions\`, streamed).`, '');
  if (runs) {
    lines.push('![throughput](batch-throughput.svg)', '', '![inter-token latency p99](batch-itl-p99.svg)', '');
    lines.push('| concurrency | target | tokens/s | steady tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | failed |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const [c, summary] of Object.entries(result.concurrency)) {
      for (const [name, run] of Object.entries(summary.runs)) {
        lines.push(`| ${c} | ${name} | ${run.tokens_per_second ?? '-'} | ${run.steady_tokens_per_second ?? '-'} | ${run.ttft_p50_ms ?? '-'} | ${run.ttft_p99_ms ?? '-'} | ${run.itl_p50_ms ?? '-'} | ${run.itl_p99_ms ?? '-'} | ${run.failed} |`);
      }
    }
  }
  if (result.admission) lines.push('', ...admissionSection(result.admission, settings.admission!, settings.prefill_stretch));
  const failures = Object.entries(result.concurrency).flatMap(([c, summary]) => Object.entries(summary.runs).filter(([, run]) => run.first_error).map(([name, run]) => `- ${c} concurrent, ${name}: ${run.failed} failed; the first: ${run.first_error}`));
  if (failures.length > 0) lines.push('', 'Failed requests (left out of the numbers above):', '', ...failures);
  lines.push('', 'Tokens/s: all requests\' tokens over the run\'s wall time. Steady tokens/s: the tokens that arrived while the given number of requests were in flight, over that time (the run drains from the first request to end after the last was sent; plain decoding of equal-length answers ends them together, speculation one by one). TTFT: from sending a request to its first token. ITL: gaps between tokens; a piece of k tokens (a speculative step) counts as k gaps of a k-th of its wait.');
  return `${lines.join('\n')}\n`;
}
