/** `tachyon bench batch`: throughput and latency under concurrent requests, against llama-server. */
import { availableParallelism } from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_TASKS } from '../bench/spec.js';
import { PEER, runBatchBench, type BatchBenchResult } from '../bench/batch.js';
import type { GpuChoice } from '../llama/library.js';
import { DEFAULT_PREFILL_STRETCH } from '../engine/prefill-pacer.js';
import { defaultModelPath } from '../paths.js';
import { SPECULATION_MODES, type SpeculationMode } from '../speculative/speculation.js';
import { addPairFlags, backendOption, modelPair, type PairFlags } from './engine-options.js';
import { decimal, integer } from './options.js';
import { formatTable } from './table.js';

interface BatchFlags extends PairFlags {
  gpu: GpuChoice;
  threads: number;
  concurrency: number[];
  spec: SpeculationMode[];
  tasks: string;
  prompts?: string;
  n: number;
  maxTokens: number;
  repeats: number;
  kvCells?: number;
  admit?: number;
  admitStreams: number;
  admitStreamTokens: number;
  prefillStretch: number;
  peer: boolean;
  llamaServer?: string;
  json?: boolean;
  report?: string;
}

/** A comma-separated list, each item parsed; a bad item is a usage error naming it. */
function listOf<T>(parse: (item: string) => T) {
  return (value: string): T[] => {
    const items = value.split(',').map((item) => item.trim()).filter(Boolean);
    if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list');
    return items.map(parse);
  };
}

const concurrencyLevel = integer(1, 256);
/** A list of concurrency levels, or `none` (e.g. to run only the admission). */
const concurrencyLevels = (value: string): number[] => (value.trim() === 'none' ? [] : listOf(concurrencyLevel)(value));
function speculationMode(item: string): SpeculationMode {
  if (!(SPECULATION_MODES as readonly string[]).includes(item)) throw new InvalidArgumentError(`"${item}" is not one of ${SPECULATION_MODES.join(', ')}`);
  return item as SpeculationMode;
}

export function registerBenchBatch(bench: Command): void {
  const command = bench
    .command('batch')
    .description(`concurrent requests on one engine: aggregate tokens/s, TTFT and inter-token latency, plain and speculative, vs ${PEER} --parallel N`)
    .option('-m, --model <path>', 'target GGUF model', defaultModelPath);
  addPairFlags(command)
    .addOption(backendOption('--gpu <backend>', 'llama.cpp backend', 'cpu'))
    .option('-t, --threads <n>', 'CPU threads of every engine (default: all cores here)', integer(1, 512), availableParallelism())
    .option('--concurrency <list>', 'requests in flight, one run per level (none: no such runs)', concurrencyLevels, [1, 2, 4, 8, 16])
    .option('--spec <list>', "Tachyon's decoding modes (off = plain)", listOf(speculationMode), ['off', 'auto'])
    .option('--tasks <list>', 'prompt sets from bench/prompts/, drawn round-robin', DEFAULT_TASKS.join(','))
    .option('--prompts <file>', 'a JSONL file of {"prompt"|"chat_prompt": …} lines instead of --tasks')
    .option('-n, --n <count>', 'requests per run (one run per concurrency and target)', integer(1), 32)
    .option('--max-tokens <n>', 'new tokens per request at most (greedy; a request may end sooner)', integer(1), 256)
    .option('--repeats <n>', 'interleaved rounds per concurrency; each target reports its median round', integer(1), 1)
    .option('--kv-cells <n>', 'KV cells of each engine in all (llama-server -c; default: the largest concurrency × the longest request)', integer(16))
    .option('--admit <tokens>', 'also admit a prompt of this many tokens among running streams: their inter-token latency meanwhile, its TTFT vs alone', integer(16))
    .option('--admit-streams <n>', 'streams decoding when it arrives', integer(1, 255), 4)
    .option('--admit-stream-tokens <n>', 'most tokens per stream (they stop once the prompt\'s first token is out)', integer(64), 1024)
    .option('--prefill-stretch <x>', "Tachyon's limit on a step that prefills while streams decode, in decode-only steps (as tachyon serve --prefill-stretch)", decimal(1.1), DEFAULT_PREFILL_STRETCH)
    .option('--no-peer', `run Tachyon only (no ${PEER})`)
    .option('--llama-server <path>', `${PEER} binary (default: built once by bench/peers/build-llama-cpp.sh; env TACHYON_LLAMA_SERVER)`)
    .option('--json', 'print one JSON object')
    .option('--report <dir>', 'write batch-report.md, batch-report.json, batch-throughput.svg, batch-itl-p99.svg (and batch-admission.svg) here')
    .action(async (flags: BatchFlags) => {
      const { model, draftModel } = await modelPair(flags, (line) => process.stderr.write(`bench: ${line}\n`));
      const result = await runBatchBench({
        model,
        draftModel,
        gpu: flags.gpu,
        threads: flags.threads,
        concurrency: flags.concurrency,
        speculation: flags.spec,
        tasks: flags.tasks.split(',').map((task) => task.trim()).filter(Boolean),
        promptsFile: flags.prompts,
        n: flags.n,
        maxTokens: flags.maxTokens,
        repeats: flags.repeats,
        kvCells: flags.kvCells,
        prefillStretch: flags.prefillStretch,
        admission: flags.admit ? { promptTokens: flags.admit, streams: flags.admitStreams, streamTokens: flags.admitStreamTokens } : undefined,
        peer: flags.peer,
        llamaServer: flags.llamaServer,
        reportDir: flags.report,
        onProgress: (line) => process.stderr.write(`bench: ${line}\n`),
      });
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatBatchTable(result));
    });
}

function formatBatchTable(result: BatchBenchResult): string {
  const rows = [['concurrency', 'target', 'tokens/s', 'steady tokens/s', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'failed']];
  for (const [c, summary] of Object.entries(result.concurrency)) {
    for (const [name, run] of Object.entries(summary.runs)) {
      rows.push([c, name, ...[run.tokens_per_second, run.steady_tokens_per_second, run.ttft_p50_ms, run.ttft_p99_ms, run.itl_p50_ms, run.itl_p99_ms, run.failed].map((value) => String(value ?? '-'))]);
    }
  }
  const lines = formatTable(rows);
  if (result.admission) {
    const admission = [['admission', 'steady ITL p50', 'ITL p99 admitting', 'p99/steady', 'TTFT', 'alone', 'TTFT/alone']];
    const failed: string[] = [];
    for (const [name, r] of Object.entries(result.admission)) {
      if ('error' in r) failed.push(`${name} failed: ${r.error}`);
      else admission.push([name, ...[r.steady_itl_p50_ms, r.admission_itl_p99_ms, r.itl_p99_vs_steady, r.ttft_ms, r.solo_ttft_ms, r.ttft_vs_solo].map(String)]);
    }
    lines.push('', ...formatTable(admission), ...failed);
  }
  lines.push('', `times in ms; single stream: ${result.ms_per_decode ?? '-'} ms per token, ${result.single_stream_vs_llama_server ?? '-'}× ${PEER}`);
  return `${lines.join('\n')}\n`;
}
