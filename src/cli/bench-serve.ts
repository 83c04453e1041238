/** `tachyon bench serve`: tachyon serve vs llama-server over HTTP, with and without speculation. */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { barChartSvg } from '../bench/chart.js';
import { writeFileAtomic } from '../atomic-file.js';
import { readJsonLines } from '../bench/jsonl.js';
import { measuredSetups, runServeBench, setupFlags, SETUPS, type ServeBenchReport, type Setup } from '../bench/serve.js';
import { STEP_PHASES } from '../engine/step-phases.js';
import { defaultModelPath, packageRoot } from '../paths.js';
import { UsageError } from './errors.js';
import { integer } from './options.js';

interface ServeBenchFlags {
  model: string;
  draftModel?: string;
  concurrency: string;
  setups: string;
  rounds: number;
  requests: number;
  maxTokens: number;
  prompts: string;
  n?: number;
  parallel: number;
  ctxSize: number;
  threads: number;
  llamaServer?: string;
  llama: boolean;
  llamaSpec: string;
  json?: boolean;
  report?: string;
}

/** Where bench/peers/build-llama-cpp.sh puts llama-server. */
const BUILT_LLAMA_SERVER = join(packageRoot, '.cache', 'llama.cpp', '80fb11a', 'build', 'bin', 'llama-server');

export function registerBenchServe(bench: Command): void {
  bench
    .command('serve')
    .description('tachyon serve vs llama-server over HTTP (same model, slots, context, threads), each with and without speculation')
    .option('-m, --model <path>', 'GGUF model of both servers', defaultModelPath)
    .option('--draft-model <path>', "draft GGUF for Tachyon's speculation")
    .option('--concurrency <list>', 'concurrent clients, one level after another', '1,4,8,16')
    .option('--setups <list>', `servers to measure, of ${SETUPS.join(', ')}`, SETUPS.join(','))
    .option('--rounds <n>', 'measurements of each level on every server, taken in turn (the median is reported)', integer(1, 100), 1)
    .option('--requests <n>', 'requests per level (at least the level)', integer(1), 16)
    .option('--max-tokens <n>', 'tokens per request (greedy)', integer(1), 256)
    .option('--prompts <file>', 'JSONL prompts with "chat_prompt" lines', join(packageRoot, 'bench', 'prompts', 'longgen.jsonl'))
    .option('-n, --n <count>', 'prompts taken from the file (default: all; each level and round gets prompts of its own)', integer(1))
    .option('--parallel <n>', 'slots of both servers', integer(1, 256), 8)
    .option('-c, --ctx-size <n>', 'context per slot', integer(16), 1024)
    .option('-t, --threads <n>', 'CPU threads of both servers', integer(1, 512), availableParallelism())
    .option('--llama-server <path>', 'llama-server binary (default: $TACHYON_LLAMA_SERVER or the one bench/peers/build-llama-cpp.sh built)')
    .option('--no-llama', 'measure tachyon serve only')
    .option('--llama-spec <flags>', "llama-server's speculative flags (its best on the testbed: ngram-simple)", '--spec-type ngram-simple')
    .option('--json', 'print one JSON object')
    .option('--report <dir>', 'write bench-serve.json, bench-serve.md and bench-serve.svg here')
    .action(async (flags: ServeBenchFlags) => serveBenchCommand(flags));
}

async function serveBenchCommand(flags: ServeBenchFlags): Promise<void> {
  const llamaServer = flags.llama ? (flags.llamaServer ?? process.env.TACHYON_LLAMA_SERVER ?? BUILT_LLAMA_SERVER) : undefined;
  if (llamaServer && !existsSync(llamaServer)) throw new UsageError(`no llama-server at ${llamaServer}: build it with bench/peers/build-llama-cpp.sh, pass --llama-server PATH, or use --no-llama`);
  const concurrency = flags.concurrency.split(',').map((level) => integer(1, 4096)(level.trim()));
  const prompts = (await readJsonLines(resolve(flags.prompts))).slice(0, flags.n ?? Infinity).map(({ row, line }) => {
    if (typeof row.chat_prompt !== 'string') throw new UsageError(`${flags.prompts}:${line}: needs a "chat_prompt" string`);
    return row.chat_prompt;
  });
  const report = await runServeBench({
    model: resolve(flags.model),
    draftModel: flags.draftModel && resolve(flags.draftModel),
    concurrency,
    setups: parseSetups(flags.setups),
    rounds: flags.rounds,
    requests: flags.requests,
    maxTokens: flags.maxTokens,
    prompts,
    parallel: flags.parallel,
    ctxSize: flags.ctxSize,
    threads: flags.threads,
    llamaServer,
    llamaSpecFlags: flags.llamaSpec.split(/\s+/).filter(Boolean),
    onProgress: (line) => process.stderr.write(`bench serve: ${line}\n`),
  });
  if (flags.report) await writeServeReport(resolve(flags.report), report);
  process.stdout.write(flags.json ? `${JSON.stringify({ concurrency: report.concurrency, model: report.model, ms_per_decode: report.ms_per_decode, failures: report.failures })}\n` : formatServeReport(report));
  // What was measured is reported; a script still learns that not everything was.
  if (report.failures.length > 0) process.exitCode = 1;
}

function parseSetups(list: string): Setup[] {
  const names = list.split(',').map((name) => name.trim());
  const unknown = names.find((name) => !(SETUPS as readonly string[]).includes(name));
  if (unknown !== undefined) throw new UsageError(`--setups: unknown setup "${unknown}" (one of ${SETUPS.join(', ')})`);
  return SETUPS.filter((setup) => names.includes(setup));
}

const COLORS: Record<(typeof SETUPS)[number], string> = { tachyon: '#8fb3ef', tachyon_spec: '#2f6fdf', llama: '#bbbbbb', llama_spec: '#777777' };

function formatServeReport(report: ServeBenchReport): string {
  const number = (value: number | undefined, digits = 1) => (value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits));
  const rows = Object.entries(report.concurrency).map(
    ([level, row]) =>
      `| ${level} | ${SETUPS.map((setup) => (row[`${setup}_tps`] === undefined ? '–' : `${number(row[`${setup}_tps`])} (${number(row[`${setup}_steady_tps`])})`)).join(' | ')} | ${number(row.ttft_p50_ms)} / ${number(row.ttft_p99_ms)} | ${number(row.itl_p50_ms, 2)} / ${number(row.itl_p99_ms, 2)} |`,
  );
  return [
    `# tachyon serve vs llama-server: ${basename(report.model)}`,
    '',
    `${report.settings.parallel} slots × ${report.settings.ctxSize} tokens, ${report.settings.threads} threads, ${report.settings.maxTokens} tokens per request (greedy), ${report.settings.prompts} prompts (each level and round sends its own to every server); all servers up at once, each level measured ${report.settings.rounds === 1 ? 'once on each, in turn' : `${report.settings.rounds} times on each, in turns that rotate (median round)`}; one decode ≈ ${number(report.ms_per_decode ?? undefined, 2)} ms (Tachyon plain, 1 client, inter-token p50).`,
    '',
    `Setups: ${measuredSetups(report.settings).map((setup) => `${setup} \`${setupFlags(setup, report.settings).join(' ') || '(defaults)'}\``).join('; ')}.`,
    '',
    `| clients | ${SETUPS.map((setup) => `${setup} tok/s (steady)`).join(' | ')} | TTFT p50 / p99 ms (tachyon_spec) | ITL p50 / p99 ms (tachyon_spec) |`,
    `| ---: | ${SETUPS.map(() => '---:').join(' | ')} | ---: | ---: |`,
    ...rows,
    '',
    'Tokens/s: all requests\' tokens over the level\'s wall time; steady: the tokens that arrived while every client had a request in flight, over that time (the end, where fewer remain, left out).',
    '',
    ...phaseTable(report),
    ...(report.promptsRepeat ? ['Prompts repeated (the file had fewer than the requests): a speculative server may have replayed an answer it gave before.', ''] : []),
    ...(report.failures.length > 0 ? ['Not measured:', '', ...report.failures.map((failure) => `- ${failure}`), ''] : []),
  ].join('\n');
}

/** Where each Tachyon setup's engine loop spent each level's wall time (llama-server's levels have no phases; none when no level has them). */
function phaseTable(report: ServeBenchReport): string[] {
  const percent = (share: number) => `${(100 * share).toFixed(1)}%`;
  const rows = SETUPS.flatMap((setup) =>
    Object.entries(report.details[setup] ?? {}).flatMap(([level, measured]) => {
      const phases = measured.phases;
      if (!phases) return [];
      const outside = Math.max(0, 1 - STEP_PHASES.reduce((sum, phase) => sum + phases[phase], 0));
      return [`| ${setup} | ${level} | ${STEP_PHASES.map((phase) => percent(phases[phase])).join(' | ')} | ${percent(outside)} |`];
    }),
  );
  if (rows.length === 0) return [];
  return [
    "Where Tachyon's time goes (shares of each level's wall time, from its `tachyon:engine_step_seconds`): scheduling (admission, cache restores), batching (drafting, planning), decoding (the target's llama_decode), accepting (emitting, freeing KV); outside: between steps (no request to run, the worker's messages).",
    '',
    `| setup | clients | ${STEP_PHASES.join(' | ')} | outside |`,
    `| --- | ---: | ${STEP_PHASES.map(() => '---:').join(' | ')} | ---: |`,
    ...rows,
    '',
  ];
}

async function writeServeReport(dir: string, report: ServeBenchReport): Promise<void> {
  await mkdir(dir, { recursive: true });
  const groups = Object.entries(report.concurrency).map(([level, row]) => ({
    title: `${level} client${level === '1' ? '' : 's'}`,
    unit: 'tokens/s',
    bars: SETUPS.filter((setup) => row[`${setup}_tps`] !== undefined).map((setup) => ({ label: setup, median: row[`${setup}_tps`]!, color: COLORS[setup] })),
  }));
  const subtitle = `${report.settings.parallel} slots × ${report.settings.ctxSize} tokens · ${report.settings.threads} threads · ${report.settings.maxTokens} tokens per request · one decode ≈ ${report.ms_per_decode?.toFixed(2) ?? '?'} ms`;
  await writeFileAtomic(join(dir, 'bench-serve.svg'), barChartSvg(`tachyon serve vs llama-server: ${basename(report.model)}`, subtitle, groups), { shared: true });
  await writeFileAtomic(join(dir, 'bench-serve.json'), `${JSON.stringify(report, null, 2)}\n`, { shared: true });
  await writeFileAtomic(join(dir, 'bench-serve.md'), formatServeReport(report), { shared: true });
}
