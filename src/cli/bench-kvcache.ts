/** `tachyon bench kvcache`: time to first token, recomputed vs restored from each cache tier. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { barChartSvg, type BarGroup } from '../bench/chart.js';
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
  chatTurns: number;
  userTokens: number;
  newTokens: number;
  readOnly?: boolean;
  sharedRedis?: boolean;
  peer?: boolean;
  llamaServer?: string;
  json?: boolean;
  report?: string;
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
    .option('--chat-turns <n>', 'turns of the multi-turn chat, cached by the first tier (0: skip it)', integer(0, 100), 10)
    .option('--user-tokens <n>', 'user tokens per chat turn', integer(1, 4096), 64)
    .option('--new-tokens <n>', 'generated tokens per chat turn', integer(1, 4096), 128)
    .option('--shared-redis', 'then a second process reads the largest prefix from Redis, as stored by this one')
    .option('--peer', "then llama-server's own RAM prompt cache (--parallel 1 --cache-ram) on the same prefixes: a restore after another prompt took its slot")
    .option('--llama-server <path>', 'llama-server binary for --peer (default: built once by bench/peers/build-llama-cpp.sh; env TACHYON_LLAMA_SERVER)')
    .option('--read-only', 'store nothing: measure hits on entries other processes stored')
    .option('--json', 'print one JSON object')
    .option('--report <dir>', 'also write bench-kvcache.json and a bench-kvcache.svg chart into this folder')
    .action(async (flags: KvCacheFlags) => {
      const report = await runKvCacheBench({
        model: resolve(flags.model),
        tiers: parseTierList(flags.tiers),
        prefixSizes: flags.prefix.split(',').map((size) => integer(1, 1 << 20)(size.trim())),
        questionTokens: flags.question,
        runs: flags.runs,
        blockSize: flags.blockSize,
        redisUrl: flags.redis,
        chat: { turns: flags.chatTurns, userTokens: flags.userTokens, newTokens: flags.newTokens },
        readOnly: flags.readOnly,
        sharedRedis: flags.sharedRedis,
        peer: flags.peer,
        llamaServer: flags.llamaServer,
        onProgress: (line) => process.stderr.write(`bench: ${line}\n`),
      });
      if (flags.report) await writeReport(flags.report, report);
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : formatReport(report));
    });
}

const TIER_COLORS = { cold: '#999999', ram: '#2f6fdf', disk: '#3a9a5b', redis: '#d0453a' } as const;
const PEER_COLORS = { cold: '#cccccc', restored: '#7a5fb0' } as const;

async function writeReport(dir: string, report: KvCacheBenchReport): Promise<void> {
  await mkdir(dir, { recursive: true });
  const groups: BarGroup[] = Object.entries(report.prefix).map(([size, result]) => ({
    title: `${size}-token prefix`,
    unit: 'ms to first token',
    bars: [
      ...(['cold', 'ram', 'disk', 'redis'] as const).flatMap((source) => {
        const median = result[`${source}_ttft_ms`];
        return median === undefined ? [] : [{ label: source, median, color: TIER_COLORS[source] }];
      }),
      ...peerBars(report, size),
    ],
    note: result.identical ? 'first tokens identical' : 'first tokens DIFFER',
  }));
  if (report.chat10) {
    const { chat10 } = report;
    groups.push({
      title: `${chat10.turns}-turn chat`,
      unit: 'ms in total',
      bars: [
        { label: 'cold', median: chat10.cold_ms, color: TIER_COLORS.cold },
        { label: chat10.cached_tier, median: chat10.cached_ms, color: TIER_COLORS[chat10.cached_tier] },
      ],
      note: `${(chat10.cold_ms / chat10.cached_ms).toFixed(2)}× faster, ${chat10.identical ? 'identical' : 'output DIFFERS'}`,
    });
  }
  const svg = barChartSvg(`KV prefix cache: ${report.model.split('/').at(-1)}`, `recomputed (cold) vs restored from each tier · median of ${report.runs} runs`, groups);
  await writeFile(join(dir, 'bench-kvcache.svg'), svg);
  await writeFile(join(dir, 'bench-kvcache.json'), `${JSON.stringify(report, null, 2)}\n`);
}

/** llama-server's cold and restored times for one prefix size, when the peer ran. */
function peerBars(report: KvCacheBenchReport, size: string) {
  const peer = report.peer?.prefix[size];
  if (!peer) return [];
  return [
    { label: 'llama-server cold', median: peer.cold_ttft_ms, color: PEER_COLORS.cold },
    { label: 'llama-server --cache-ram', median: peer.restore_ttft_ms, color: PEER_COLORS.restored },
  ];
}

function formatReport(report: KvCacheBenchReport): string {
  const lines = [`time to first token (ms, median of ${report.runs}), ${report.model}`, 'prefix    cold     ram    disk   redis  identical'];
  const cell = (value: number | undefined) => (value === undefined ? '-' : value.toFixed(1)).padStart(7);
  for (const [size, result] of Object.entries(report.prefix)) {
    lines.push(`${size.padStart(6)} ${cell(result.cold_ttft_ms)} ${cell(result.ram_ttft_ms)} ${cell(result.disk_ttft_ms)} ${cell(result.redis_ttft_ms)}  ${result.identical}`);
  }
  for (const [size, result] of Object.entries(report.prefix)) {
    for (const [tier, part] of Object.entries(result.breakdown)) {
      lines.push(`  ${size}-token prefix from ${tier}: lookup ${part.lookup_ms} ms, restore ${part.restore_ms} ms, prefill of the rest + first token ${part.prefill_ms} ms`);
    }
    if (result.ceiling_x !== undefined) lines.push(`  ${size}-token prefix: a cache whose lookup and restore cost nothing would be at most ${result.ceiling_x}× faster than cold`);
  }
  for (const [size, peer] of Object.entries(report.peer?.prefix ?? {})) {
    lines.push(`llama-server --cache-ram, ${size}-token prefix: cold ${peer.cold_ttft_ms.toFixed(1)} ms, restored after another prompt took its slot ${peer.restore_ttft_ms.toFixed(1)} ms (${peer.restored_tokens} tokens reused)`);
  }
  if (report.shared_redis) {
    const shared = report.shared_redis;
    lines.push(`second process, ${shared.prefix_tokens}-token prefix: cold ${shared.cold_ttft_ms.toFixed(1)} ms, from the first's Redis entries ${shared.hit_ttft_ms?.toFixed(1) ?? '-'} ms (${shared.restored_tokens} tokens restored), identical ${shared.identical}`);
  }
  if (report.chat10) {
    const { chat10 } = report;
    const mismatch = chat10.mismatch ? ` (first difference at position ${chat10.mismatch.position}, where plain decoding's top-2 gap was ${chat10.mismatch.cold_top2_gap})` : '';
    lines.push(`${chat10.turns}-turn chat: cold ${chat10.cold_ms.toFixed(0)} ms, with the ${chat10.cached_tier} cache ${chat10.cached_ms.toFixed(0)} ms (of which ${chat10.cached_decode_ms.toFixed(0)} ms decoding the answers, which no cache saves, and ${chat10.cached_cache_ms.toFixed(0)} ms in the cache itself: a free cache would be at most ${chat10.ceiling_x}× faster), identical ${chat10.identical}${mismatch}`);
  }
  return `${lines.join('\n')}\n`;
}
