/** `tachyon bench …`: speed measurements against a baseline run in the same invocation. */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { formatAgreement, readPrompts, runAgreement } from '../bench/agreement.js';
import { barChartSvg } from '../bench/chart.js';
import { formatDecodeReport, PEER_NAME, plural, runDecodeBench, type DecodeBenchReport } from '../bench/decode.js';
import type { GpuChoice } from '../llama/library.js';
import { defaultModelPath, packageRoot } from '../paths.js';
import { SPECULATION_MODES, type SpeculationMode } from '../speculative/speculation.js';
import { registerBenchBatch } from './bench-batch.js';
import { registerBenchKvCache } from './bench-kvcache.js';
import { registerBenchSpec } from './bench-spec.js';
import { addModelFlags, addPairFlags, backendOption, engineOptions, modelPair, type ModelFlags, type PairFlags } from './engine-options.js';
import { Engine } from '../engine/engine.js';
import { defaultReasoningPrompts, formatReasoningBench, runReasoningBench } from '../bench/reasoning.js';
import { registerBenchServe } from './bench-serve.js';
import { decimal, integer } from './options.js';

interface DecodeFlags {
  model: string;
  gpu: GpuChoice;
  threads: number;
  runs: number;
  promptTokens: number;
  tokens: number;
  ctxSize?: number;
  warmup: number;
  speculation: SpeculationMode;
  peer: boolean;
  minRatio: number;
  check?: boolean;
  json?: boolean;
  report?: string;
  timeout: number;
}

interface AgreementFlags {
  model: string;
  gpu: GpuChoice;
  reference: GpuChoice;
  prompts: string;
  count: number;
  tokens: number;
  threads?: number;
  speculation: SpeculationMode;
  json?: boolean;
  timeout: number;
}

const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('benchmarks (ratios against a baseline measured in the same run)');

  bench
    .command('decode')
    .description(`prefill and decode tokens/s of Tachyon vs ${PEER_NAME} (same llama.cpp binaries, model, threads and prompt)`)
    .option('-m, --model <path>', 'GGUF model file', defaultModelPath)
    .addOption(backendOption('--gpu <backend>', 'llama.cpp backend of both sides', 'cpu'))
    .option('-t, --threads <n>', 'CPU threads of both sides (default: all cores here)', integer(1, 512), availableParallelism())
    .option('--runs <n>', 'measured runs per side (alternating; medians are reported)', integer(1, 1000), 5)
    .option('--prompt-tokens <n>', 'prompt length in tokens', integer(1, 65536), 128)
    .option('--tokens <n>', 'tokens to generate per run (greedy, end-of-generation ignored)', integer(2, 65536), 256)
    .option('-c, --ctx-size <n>', 'context size (default: prompt + tokens rounded up to 256)', integer(16))
    .option('--warmup <n>', 'tokens of the unmeasured warm-up generation in each process', integer(0, 65536), 64)
    .addOption(speculationOption())
    .option('--no-peer', `measure Tachyon only (no ${PEER_NAME})`)
    .option('--min-ratio <r>', 'decode ratio tachyon/peer the verdict requires', decimal(0), 0.95)
    .option('--check', 'exit with code 1 when the decode ratio is below --min-ratio')
    .option('--json', 'print one JSON object')
    .option('--report <dir>', 'also write bench-decode.json and a bench-decode.svg bar chart into this folder')
    .option('--timeout <s>', 'seconds one measuring process may take', integer(1), 600)
    .action(async (flags: DecodeFlags) => {
      const report = await runDecodeBench({
        model: resolve(flags.model),
        gpu: flags.gpu,
        threads: flags.threads,
        runs: flags.runs,
        promptTokens: flags.promptTokens,
        tokens: flags.tokens,
        contextSize: flags.ctxSize,
        warmupTokens: flags.warmup,
        speculation: flags.speculation,
        peer: flags.peer,
        timeoutMs: flags.timeout * 1000,
        onProgress: progress,
      });
      if (flags.report) await writeDecodeReport(flags.report, report);
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : `${formatDecodeReport(report, flags.minRatio)}\n`);
      if (flags.check && report.ratio != null && report.ratio < flags.minRatio) process.exitCode = 1;
    });

  bench
    .command('agreement')
    .description('greedy token agreement of one llama.cpp backend with another (default: with the CPU)')
    .option('-m, --model <path>', 'GGUF model file', defaultModelPath)
    .addOption(backendOption('--gpu <backend>', 'backend to check', 'auto'))
    .addOption(backendOption('--reference <backend>', 'backend to compare with', 'cpu'))
    .option('--prompts <file>', 'JSONL prompts ("prompt" field; chat template applied when the model has one)', join(packageRoot, 'bench', 'prompts', 'reasoning.jsonl'))
    .option('--count <n>', 'how many prompts (from the start of the file)', integer(1), 10)
    .option('--tokens <n>', 'greedy tokens per prompt (end-of-generation ignored)', integer(1, 65536), 128)
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', integer(1, 512))
    .addOption(speculationOption())
    .option('--json', 'print one JSON object')
    .option('--timeout <s>', 'seconds one backend may take', integer(1), 600)
    .action(async (flags: AgreementFlags) => {
      const report = await runAgreement({
        model: resolve(flags.model),
        gpu: flags.gpu,
        reference: flags.reference,
        prompts: await readPrompts(flags.prompts, flags.count),
        tokens: flags.tokens,
        threads: flags.threads,
        speculation: flags.speculation,
        timeoutMs: flags.timeout * 1000,
        onProgress: progress,
      });
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : `${formatAgreement(report)}\n`);
    });

  registerBenchSpec(bench);
  registerBenchServe(bench);
  registerBenchBatch(bench);
  registerBenchKvCache(bench);

  const reasoning = bench
    .command('reasoning')
    .description('early exit: accuracy, thinking tokens and time of full thinking, fixed budgets, effort levels and the oracle (evaluation half of the prompt set)');
  addPairFlags(addModelFlags(reasoning))
    .option('--prompts <file>', 'JSONL with "prompt" and "answer"; the even (0-based) lines are evaluated (calibration uses the odd ones)', defaultReasoningPrompts)
    .option('-n, --n <count>', 'evaluation prompts', integer(1), 100)
    .option('--max-tokens <n>', 'most tokens per generation', integer(1), 900)
    .option('--budgets <list>', 'fixed thinking budgets drawn besides those matched to the levels', '32,64,128,256')
    .option('--json', 'print one JSON object')
    .option('--report <dir>', 'write bench-reasoning.json and bench-reasoning.svg here')
    .action(async (flags: ReasoningFlags) => {
      const budgets = flags.budgets.split(',').filter(Boolean).map((value) => integer(0)(value.trim()));
      const models = await modelPair(flags, progress);
      const engine = await Engine.load({ ...engineOptions({ ...flags, model: models.model }), draftModel: models.draftModel });
      try {
        const result = await runReasoningBench({ engine, draftModel: models.draftModel, promptsFile: flags.prompts, n: flags.n, maxTokens: flags.maxTokens, budgets, reportDir: flags.report, onProgress: progress });
        process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatReasoningBench(result));
      } finally {
        await engine.dispose();
      }
    });
}

interface ReasoningFlags extends ModelFlags, PairFlags {
  prompts: string;
  n: number;
  maxTokens: number;
  budgets: string;
  json?: boolean;
  report?: string;
}

/** Plain decoding by default: the peer decodes plainly, so that is the like-for-like comparison. */
function speculationOption(): Option {
  return new Option('--speculation <mode>', "Tachyon's decoding mode (off = plain decoding)").choices([...SPECULATION_MODES]).default('off');
}

async function writeDecodeReport(dir: string, report: DecodeBenchReport): Promise<void> {
  await mkdir(dir, { recursive: true });
  const bars = (key: 'prefill_tps' | 'decode_tps') => [
    { label: 'tachyon', color: '#2f6fdf', ...report.tachyon[key] },
    ...(report.peer ? [{ label: PEER_NAME, color: '#999999', ...report.peer[key] }] : []),
  ];
  const ratioNote = (value: number | null) => (value == null ? undefined : `tachyon / ${PEER_NAME} = ${value.toFixed(3)}`);
  const svg = barChartSvg(
    `Tachyon vs ${PEER_NAME}: ${report.model.split('/').at(-1)}`,
    `${report.backend} · ${plural(report.threads, 'thread')} · prompt ${report.prompt_tokens} · decode ${report.tokens} tokens · median of ${report.runs} runs (whiskers: min–max)`,
    [
      { title: 'prefill', unit: 'tokens/s', bars: bars('prefill_tps'), note: ratioNote(report.prefill_ratio) },
      { title: 'decode', unit: 'tokens/s', bars: bars('decode_tps'), note: ratioNote(report.ratio) },
    ],
  );
  await writeFile(join(dir, 'bench-decode.svg'), svg);
  await writeFile(join(dir, 'bench-decode.json'), `${JSON.stringify(report, null, 2)}\n`);
}
