/** `tachyon bench spec`: plain vs speculative decoding on the held-out prompt sets, in one process. */
import type { Command } from 'commander';
import { DEFAULT_TASKS, runSpecBench, type SpecBenchResult } from '../bench/spec.js';
import type { GpuChoice } from '../llama/library.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { defaultModelPath } from '../paths.js';
import { addPairFlags, backendOption, flashAttentionOption, sourcePair, type PairFlags } from './engine-options.js';
import type { FlashAttention } from '../llama/context.js';
import { integer } from './options.js';
import { formatTable } from './table.js';

const CONFIGS = ['ngram', 'suffix', 'draft', 'auto'] as const satisfies readonly Exclude<SpeculationMode, 'off'>[];
type Config = (typeof CONFIGS)[number];

interface SpecFlags extends PairFlags {
  gpu: GpuChoice;
  threads?: number;
  flashAttn: FlashAttention;
  tasks: string;
  prompts?: string;
  n: number;
  maxTokens: number;
  configs: string;
  peers?: string;
  llamaPeers?: string;
  llamaServer?: string;
  report?: string;
  json?: boolean;
}

const list = (value: string) => value.split(',').map((item) => item.trim()).filter(Boolean);

export function registerBenchSpec(bench: Command): void {
  const command = bench
    .command('spec')
    .description('speculative decoding vs plain greedy decoding on held-out prompts (speedup, τ, identical-output rate)')
    .option('-m, --model <path>', 'target GGUF model', defaultModelPath);
  addPairFlags(command)
    .addOption(backendOption('--gpu <backend>', 'llama.cpp backend', 'cpu'))
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', integer(1, 512))
    .addOption(flashAttentionOption())
    .option('--tasks <list>', 'prompt sets from bench/prompts/', DEFAULT_TASKS.join(','))
    .option('--prompts <file>', 'a JSONL file of {"prompt": …} lines instead of --tasks')
    .option('-n, --n <count>', 'prompts per task', integer(1), 10)
    .option('--max-tokens <n>', 'new tokens per prompt', integer(1), 512)
    .option('--configs <list>', `speculative configurations (${CONFIGS.join(', ')})`, CONFIGS.join(','))
    .option('--peers <file>', 'llama.cpp results from bench/peers/llama-spec.mjs (measured apart), shown side by side')
    .option('--llama-peers <list>', 'run llama.cpp live beside ours, each prompt in the same rotation: --spec-type configurations (plain, ngram-mod, ngram-map-k, draft-simple, …, or all)')
    .option('--llama-server <path>', 'llama-server binary for --llama-peers (default: built once by bench/peers/build-llama-cpp.sh)')
    .option('--report <dir>', 'write spec-report.md, spec-report.json and spec-speedup.svg here')
    .option('--json', 'print one JSON object')
    .action(async (flags: SpecFlags) => {
      const configs = list(flags.configs).map((config) => {
        if (!(CONFIGS as readonly string[]).includes(config)) throw new Error(`unknown configuration "${config}" (expected ${CONFIGS.join(', ')})`);
        return config as Config;
      });
      if (flags.peers && flags.llamaPeers) throw new Error('--peers and --llama-peers both give llama.cpp rows: choose one');
      const { model, draftModel } = sourcePair(flags);
      const usable = configs.filter((config) => config !== 'draft' || draftModel);
      const result = await runSpecBench({
        model,
        draftModel,
        shape: flags.shape,
        gpu: flags.gpu,
        threads: flags.threads,
        flashAttention: flags.flashAttn,
        tasks: list(flags.tasks),
        promptsFile: flags.prompts,
        n: flags.n,
        maxTokens: flags.maxTokens,
        configs: usable,
        peersFile: flags.peers,
        llamaPeers: flags.llamaPeers ? list(flags.llamaPeers) : undefined,
        llamaServer: flags.llamaServer,
        reportDir: flags.report,
        onProgress: (line) => process.stderr.write(`bench: ${line}\n`),
      });
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatSpecTable(result));
    });
}

function formatSpecTable(result: SpecBenchResult): string {
  const rows = [['task', 'configuration', 'tokens/s', 'after prompt', 'speedup', 'τ', 'identical']];
  for (const [task, summary] of Object.entries(result.tasks)) {
    rows.push([task, 'plain', String(summary.plain_tps ?? '-'), String(summary.plain_decode_tps ?? '-'), '1', '', '']);
    for (const [config, c] of Object.entries(summary.configs)) {
      rows.push([task, config, String(c.median_tps ?? '-'), String(c.median_decode_tps ?? '-'), `${c.speedup ?? '-'}`, String(c.tau ?? '-'), `${(c.identical_rate * 100).toFixed(0)}%`]);
    }
    for (const [name, peer] of Object.entries(summary.peers ?? {})) rows.push([task, `llama.cpp ${name}`, '', String(peer.median_tps ?? '-'), `${peer.speedup ?? '-'}`, '', '']);
    rows.push([task, 'oracle bound', '', '', `${summary.oracle_speedup ?? '-'}`, String(summary.oracle_tau ?? '-'), '']);
    if (summary.vs_best_peer != null) rows.push([task, 'vs best llama.cpp', '', `${summary.vs_best_peer}×`, '', '', '']);
  }
  const curve = Object.entries(result.cost_curve).map(([n, c]) => `c(${n}) ${c}`).join(', ');
  const lines = [`regime: ${result.ms_per_decode} ms per decode, ${curve}${result.shape ? ` (shape ${result.shape})` : ''}`, ''];
  lines.push(...formatTable(rows));
  const realized = Object.entries(result.tasks).map(([task, summary]) => `${task} ${summary.realized_vs_oracle ?? '-'}`).join(', ');
  lines.push('', `realized / oracle: ${realized}`);
  if (result.random_weights) lines.push('', 'random-weight model: acceptance and speedups measure cost only, not what a trained model would accept');
  return `${lines.join('\n')}\n`;
}
