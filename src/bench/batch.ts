/**
 * `tachyon bench batch`: many concurrent requests on one engine. At each concurrency the same
 * prompts go through the load harness to Tachyon (plain and speculative) and to llama-server
 * (`--parallel N --cont-batching`, same model, threads and total KV), over the same client code;
 * aggregate tokens/s, TTFT and inter-token latency percentiles; JSON, Markdown and SVG.
 */
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine } from '../engine/engine.js';
import { ChatFormatter } from '../generate/chat.js';
import { detachLlamaLogger, type GpuChoice } from '../llama/library.js';
import { Model } from '../llama/model.js';
import { packageRoot } from '../paths.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import type * as LlamaServerModule from '../../bench/peers/llama-server.mjs';
import { barChartSvg, type BarGroup } from './chart.js';
import { plural } from './decode.js';
import { writeFileAtomic } from '../atomic-file.js';
import { promptSetFiles, readJsonLines } from './jsonl.js';
import { EngineTarget, engineTargetName, OpenAiCompletionsTarget, runLoad, summarizeLoad, type LoadRequest, type LoadSummary, type LoadTarget } from './load.js';
import { ratio, round } from './stats.js';

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
  /** Run llama-server as the peer. */
  peer: boolean;
  /** A llama-server binary (default: built once by bench/peers/build-llama-cpp.sh). */
  llamaServer?: string;
  reportDir?: string;
  onProgress?: (line: string) => void;
}

export const PEER = 'llama-server';

export interface ConcurrencySummary {
  plain_tps: number | null;
  spec_tps: number | null;
  spec_speedup: number | null;
  peer_tps: number | null;
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
  settings: {
    draft_model: string | null;
    threads: number;
    gpu: GpuChoice;
    kv_cells: number;
    n: number;
    max_tokens: number;
    repeats: number;
    prompts: string[];
    speculation: SpeculationMode[];
    peer: { server: string; version: string | null; flags: string[] } | null;
  };
}

export async function runBatchBench(options: BatchBenchOptions): Promise<BatchBenchResult> {
  const progress = options.onProgress ?? (() => {});
  const maxConcurrency = Math.max(...options.concurrency);
  const requests = await loadRequests(options);
  const kvCells = options.kvCells ?? roundUp(maxConcurrency * Math.max(...requests.map((r) => r.promptTokens + r.maxTokens)), 256);
  const engine = await Engine.load({ model: options.model, draftModel: options.draftModel, gpu: options.gpu, threads: options.threads, kvCells, maxSequences: maxConcurrency, onMeasure: () => progress('measuring the verify cost curve (once per model and machine)') });
  const peer = options.peer ? await LlamaServerPeer.locate(options, kvCells, progress) : undefined;
  try {
    const concurrency: Record<string, ConcurrencySummary> = {};
    for (const [index, c] of options.concurrency.entries()) {
      if (requests.length < c) progress(`concurrency ${c}: only ${requests.length} requests (--n), so at most ${requests.length} run at once`);
      const rounds = new Map<string, LoadSummary[]>();
      // The order rotates from one round and concurrency to the next: a machine whose speed drifts favours no target.
      const order = [...options.speculation.map((mode) => ({ mode })), ...(peer ? [{ mode: 'peer' as const }] : [])];
      for (let round = 0; round < (options.repeats ?? 1); round++) {
        for (const k of order.keys()) {
          const { mode } = order[(k + index + round) % order.length];
          const summary = mode === 'peer' ? await peer!.run(c, requests, progress) : await runTarget(new EngineTarget(engine, mode), c, requests, progress);
          rounds.set(summary.target, [...(rounds.get(summary.target) ?? []), summary]);
        }
      }
      const runs = new Map([...rounds].map(([target, summaries]) => [target, medianRun(summaries)]));
      concurrency[String(c)] = summarizeConcurrency(runs, options.speculation);
    }
    const single = concurrency['1'];
    const result: BatchBenchResult = {
      model: options.model,
      ms_per_decode: single?.itl_p50_ms ?? null,
      single_stream_vs_llama_server: round(ratio(single?.plain_tps, single?.peer_tps)),
      concurrency,
      settings: {
        draft_model: options.draftModel ?? null,
        threads: options.threads,
        gpu: options.gpu,
        kv_cells: kvCells,
        n: requests.length,
        max_tokens: options.maxTokens,
        repeats: options.repeats ?? 1,
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
 * that leave no room for `maxTokens` within the model's trained context are skipped.
 */
async function loadRequests(options: BatchBenchOptions): Promise<BenchRequest[]> {
  const model = await Model.load(options.model, { gpu: 'cpu' });
  try {
    const formatter = model.metadata.chatTemplate ? ChatFormatter.forModel(model) : undefined;
    const limit = model.metadata.contextLength || 4096;
    const sets = await Promise.all(
      promptSetFiles(options.tasks, options.promptsFile).map(async (file) => {
        const fitting: BenchRequest[] = [];
        for (const { line, row } of await readJsonLines(file)) {
          const prompt = promptText(row, formatter, `${file}:${line}`);
          const promptTokens = model.tokenizer.tokenize(prompt).length;
          if (promptTokens + options.maxTokens <= limit) fitting.push({ id: row.id != null ? String(row.id) : `${basename(file)}:${line}`, prompt, promptTokens, maxTokens: options.maxTokens });
        }
        return fitting;
      }),
    );
    const requests: BenchRequest[] = [];
    for (let i = 0; requests.length < options.n && sets.some((set) => i < set.length); i++) {
      for (const set of sets) if (i < set.length && requests.length < options.n) requests.push(set[i]);
    }
    if (requests.length === 0) throw new Error(`no prompt fits the model's context (${limit} tokens) with ${options.maxTokens} new tokens`);
    return requests;
  } finally {
    model.dispose();
    // llama.cpp's log callback is process-wide: this thread's must not outlive its model, or the
    // engine worker's llama.cpp would call into this thread's JavaScript.
    detachLlamaLogger();
  }
}

function promptText(row: Record<string, unknown>, formatter: ChatFormatter | undefined, where: string): string {
  if (typeof row.chat_prompt === 'string' && row.chat_prompt) return row.chat_prompt;
  if (typeof row.prompt !== 'string') throw new Error(`${where}: each line needs a "prompt" (or "chat_prompt") string`);
  return formatter ? formatter.render([{ role: 'user', content: row.prompt }]) : row.prompt;
}

const roundUp = (value: number, step: number) => Math.ceil(value / step) * step;

/** The round with the median throughput (the lower middle one of an even count). */
function medianRun(summaries: readonly LoadSummary[]): LoadSummary {
  const sorted = [...summaries].sort((a, b) => a.tokens_per_second - b.tokens_per_second);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

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

/** llama-server, started for each concurrency with that many slots over the same total KV. */
class LlamaServerPeer {
  private constructor(
    private readonly servers: typeof LlamaServerModule,
    private readonly bin: string,
    private readonly version: string | null,
    private readonly flags: string[],
  ) {}

  static async locate(options: BatchBenchOptions, kvCells: number, progress: (line: string) => void): Promise<LlamaServerPeer> {
    // A plain script shared with bench/peers/llama-spec.mjs, so it is loaded from the package, not compiled.
    const servers = (await import(pathToFileURL(join(packageRoot, 'bench', 'peers', 'llama-server.mjs')).href)) as typeof LlamaServerModule;
    const { path } = servers.locateLlamaServer({ server: options.llamaServer, log: progress });
    const help = servers.serverHelp(path);
    const flags = ['-m', options.model, '-c', String(kvCells), '-t', String(options.threads), '-tb', String(options.threads), '--cont-batching'];
    flags.push('-ngl', options.gpu === 'cpu' ? '0' : '999');
    // One KV buffer for all slots, as Tachyon's engine has: any request may use any cell.
    if (servers.helpHasFlag(help, '--kv-unified')) flags.push('--kv-unified');
    if (servers.helpHasFlag(help, '--no-webui')) flags.push('--no-webui');
    if (servers.helpHasFlag(help, '--cache-ram')) flags.push('--cache-ram', '0');
    return new LlamaServerPeer(servers, path, servers.serverVersion(path), flags);
  }

  describe() {
    return { server: this.bin, version: this.version, flags: this.flags };
  }

  async run(concurrency: number, requests: readonly LoadRequest[], progress: (line: string) => void): Promise<LoadSummary> {
    const server = new this.servers.LlamaServer(this.bin, `parallel-${concurrency}`, [...this.flags, '--parallel', String(concurrency)], { log: progress });
    try {
      await server.start();
      return await runTarget(new OpenAiCompletionsTarget(PEER, server.url), concurrency, requests, progress);
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
      note: summary.spec_speedup != null ? `spec / plain = ${summary.spec_speedup}` : undefined,
    }));
  await writeFileAtomic(join(dir, 'batch-throughput.svg'), barChartSvg('Aggregate throughput under concurrent requests', subtitle, groups('tokens_per_second', 'tokens/s')), { shared: true });
  await writeFileAtomic(join(dir, 'batch-itl-p99.svg'), barChartSvg('Inter-token latency, 99th percentile', subtitle, groups('itl_p99_ms', 'ms')), { shared: true });
  await writeFileAtomic(join(dir, 'batch-report.json'), `${JSON.stringify(result, null, 2)}\n`, { shared: true });
  await writeFileAtomic(join(dir, 'batch-report.md'), markdownReport(result), { shared: true });
}

function markdownReport(result: BatchBenchResult): string {
  const { settings } = result;
  const lines = [
    '# Concurrent requests on one engine',
    '',
    `Model \`${basename(result.model)}\`${settings.draft_model ? `, draft \`${basename(settings.draft_model)}\`` : ''}; ${plural(settings.threads, 'thread')} (${settings.gpu}); ${settings.n} greedy requests of up to ${settings.max_tokens} new tokens per run, from ${settings.prompts.join(', ')}; every engine holds ${settings.kv_cells} KV cells in all. One client (src/bench/load.ts) drives every target with the same requests, keeping the given number in flight${settings.repeats > 1 ? `; ${settings.repeats} interleaved rounds per concurrency, each target's median round shown` : ''}.`,
    '',
    `Single-stream plain decoding: ${result.ms_per_decode ?? '-'} ms per token; vs llama-server ${result.single_stream_vs_llama_server ?? '-'}×.`,
    '',
  ];
  if (settings.peer) lines.push(`Peer: \`llama-server ${settings.peer.flags.join(' ')} --parallel N\` (${settings.peer.version ?? 'version unknown'}), over HTTP (\`/v1/completions\`, streamed).`, '');
  lines.push('![throughput](batch-throughput.svg)', '', '![inter-token latency p99](batch-itl-p99.svg)', '');
  lines.push('| concurrency | target | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | failed |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [c, summary] of Object.entries(result.concurrency)) {
    for (const [name, run] of Object.entries(summary.runs)) {
      lines.push(`| ${c} | ${name} | ${run.tokens_per_second ?? '-'} | ${run.ttft_p50_ms ?? '-'} | ${run.ttft_p99_ms ?? '-'} | ${run.itl_p50_ms ?? '-'} | ${run.itl_p99_ms ?? '-'} | ${run.failed} |`);
    }
  }
  const failures = Object.entries(result.concurrency).flatMap(([c, summary]) => Object.entries(summary.runs).filter(([, run]) => run.first_error).map(([name, run]) => `- ${c} concurrent, ${name}: ${run.failed} failed; the first: ${run.first_error}`));
  if (failures.length > 0) lines.push('', 'Failed requests (left out of the numbers above):', '', ...failures);
  lines.push('', 'Tokens/s: all requests\' tokens over the run\'s wall time. TTFT: from sending a request to its first token. ITL: gaps between tokens; a piece of k tokens (a speculative step) counts as k gaps of a k-th of its wait.');
  return `${lines.join('\n')}\n`;
}
