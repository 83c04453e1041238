/** `tachyon bench kvcache`: time to first token, recomputed vs restored from each cache tier. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { runKvCacheBench, type KvCacheBenchReport } from '../bench/kvcache.js';
import { parseTierList } from '../kvcache/tiers/open.js';
import { defaultModelPath } from '../paths.js';
import { integer } from './options.js';

interface KvCacheFlags {
  model: string;
  tiers: string;
  prefix: string;
  question: number;
  runs: number;
  blockSize: number;
  redis?: string;
  json?: boolean;
}

export function registerBenchKvCache(bench: Command): void {
  bench
    .command('kvcache')
    .description('time to first token of a shared prefix + a question: recomputed vs restored from RAM, disk, Redis')
    .option('-m, --model <path>', 'GGUF model file', defaultModelPath)
    .option('--tiers <list>', 'tiers to measure, each on its own', 'ram,disk')
    .option('--prefix <sizes>', 'shared prefix lengths in tokens, comma-separated', '512,1024,2048,4096')
    .option('--question <n>', 'question tokens after the prefix', integer(1, 4096), 32)
    .option('--runs <n>', 'measured runs per configuration (medians reported)', integer(1, 1000), 3)
    .option('--block-size <n>', 'cache block size in tokens', integer(1, 4096), 64)
    .option('--redis <url>', 'Redis URL for the redis tier')
    .option('--json', 'print one JSON object')
    .action(async (flags: KvCacheFlags) => {
      const report = await runKvCacheBench({
        model: resolve(flags.model),
        tiers: parseTierList(flags.tiers),
        prefixSizes: flags.prefix.split(',').map((size) => integer(1, 1 << 20)(size.trim())),
        questionTokens: flags.question,
        runs: flags.runs,
        blockSize: flags.blockSize,
        redisUrl: flags.redis,
        onProgress: (line) => process.stderr.write(`bench: ${line}\n`),
      });
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : formatReport(report));
    });
}

function formatReport(report: KvCacheBenchReport): string {
  const lines = [`time to first token (ms, median of ${report.runs}), ${report.model}`, 'prefix    cold     ram    disk   redis  identical'];
  const cell = (value: number | undefined) => (value === undefined ? '-' : value.toFixed(1)).padStart(7);
  for (const [size, result] of Object.entries(report.prefix)) {
    lines.push(`${size.padStart(6)} ${cell(result.cold_ttft_ms)} ${cell(result.ram_ttft_ms)} ${cell(result.disk_ttft_ms)} ${cell(result.redis_ttft_ms)}  ${result.identical}`);
  }
  return `${lines.join('\n')}\n`;
}
