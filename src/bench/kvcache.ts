/**
 * `tachyon bench kvcache`: time to first token of a shared prefix + a question, recomputed (cold)
 * vs restored from each cache tier, in one process on one context. The engine loop has no cache
 * hook yet, so this drives a bare context the way the loop will: match, restore, prefill the rest,
 * sample the first token. First tokens are compared with the cold run's (identity).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenBatch } from '../llama/batch.js';
import { Context } from '../llama/context.js';
import { Model } from '../llama/model.js';
import { greedyToken } from '../generate/sampling.js';
import { PrefixCache } from '../kvcache/prefix-cache.js';
import { openTiers } from '../kvcache/tiers/open.js';
import type { TierName } from '../kvcache/tiers/tier.js';
import { median, round } from './stats.js';

export interface KvCacheBenchOptions {
  readonly model: string;
  readonly prefixSizes: readonly number[];
  readonly questionTokens: number;
  readonly tiers: readonly TierName[];
  readonly redisUrl?: string;
  readonly runs: number;
  readonly blockSize?: number;
  readonly onProgress?: (line: string) => void;
}

export interface PrefixResult {
  cold_ttft_ms: number;
  ram_ttft_ms?: number;
  disk_ttft_ms?: number;
  redis_ttft_ms?: number;
  identical: boolean;
}

export interface KvCacheBenchReport {
  readonly model: string;
  readonly runs: number;
  readonly prefix: Record<string, PrefixResult>;
}

const DEST = 0;
const SCRATCH = 1;
const FILLER = 'The committee reviewed the quarterly figures, the travel policy and the new onboarding guide in detail. ';

export async function runKvCacheBench(options: KvCacheBenchOptions): Promise<KvCacheBenchReport> {
  const model = await Model.load(options.model);
  const largest = Math.max(...options.prefixSizes) + options.questionTokens + 16;
  const context = Context.create(model, { contextSize: largest, sequences: 2 });
  const folder = await mkdtemp(join(tmpdir(), 'tachyon-bench-kv-'));
  try {
    const caches = new Map<TierName, PrefixCache>();
    for (const tier of options.tiers) {
      const tiers = await openTiers({ tiers: [tier], dir: folder, redisUrl: options.redisUrl, onWarning: options.onProgress });
      caches.set(tier, await PrefixCache.create(context, SCRATCH, { tiers, blockSize: options.blockSize }));
    }
    const prefix: Record<string, PrefixResult> = {};
    for (const size of options.prefixSizes) {
      const prompt = [...fillerTokens(model, size, 0), ...fillerTokens(model, options.questionTokens, 1)];
      prefix[String(size)] = await measurePrefix(context, prompt, caches, options);
    }
    for (const cache of caches.values()) await cache.close();
    return { model: options.model, runs: options.runs, prefix };
  } finally {
    context.dispose();
    model.dispose();
    await rm(folder, { recursive: true, force: true });
  }
}

async function measurePrefix(context: Context, prompt: number[], caches: Map<TierName, PrefixCache>, options: KvCacheBenchOptions): Promise<PrefixResult> {
  const cold: number[] = [];
  let firstToken = -1;
  // One unmeasured run first in each configuration: graph allocation and cold caches.
  for (let run = -1; run < options.runs; run++) {
    context.seqRemove(DEST);
    const started = performance.now();
    firstToken = await prefillAndSample(context, prompt, 0);
    if (run >= 0) cold.push(performance.now() - started);
  }
  options.onProgress?.(`${prompt.length - options.questionTokens}-token prefix: cold ${median(cold).toFixed(1)} ms`);
  const result: PrefixResult = { cold_ttft_ms: round(median(cold), 2) ?? 0, identical: true };
  for (const [tier, cache] of caches) {
    cache.storeBlocks(DEST, prompt, '', SCRATCH);
    await cache.flush();
    const times: number[] = [];
    for (let run = -1; run < options.runs; run++) {
      context.seqRemove(DEST);
      const started = performance.now();
      const match = await cache.match(prompt);
      const held = cache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1);
      const token = await prefillAndSample(context, prompt, held);
      if (run >= 0) times.push(performance.now() - started);
      result.identical &&= token === firstToken;
    }
    result[`${tier}_ttft_ms`] = round(median(times), 2) ?? 0;
    options.onProgress?.(`  from ${tier}: ${median(times).toFixed(1)} ms`);
  }
  context.seqRemove(DEST);
  return result;
}

/** Prefills `prompt` from `from` in batch-size chunks and returns the greedy first token. */
async function prefillAndSample(context: Context, prompt: readonly number[], from: number): Promise<number> {
  const batch = new TokenBatch(context.batchSize, 1);
  try {
    for (let start = from; start < prompt.length; start += context.batchSize) {
      batch.clear().addSequence(prompt.slice(start, Math.min(prompt.length, start + context.batchSize)), start, DEST);
      await context.decode(batch);
    }
    return greedyToken(context.logits(batch.size - 1), prompt, { temperature: 0 });
  } finally {
    batch.dispose();
  }
}

/** `count` tokens of ordinary text; `variant` changes the text so the question differs from the prefix. */
function fillerTokens(model: Model, count: number, variant: number): number[] {
  const text = variant === 0 ? FILLER : 'Which of these items should be discussed first next week, and why? ';
  const once = model.tokenizer.tokenize(text, { addSpecial: false });
  const tokens = variant === 0 ? model.tokenizer.tokenize('', { addSpecial: true }) : [];
  while (tokens.length < count) tokens.push(...once);
  return tokens.slice(0, count);
}
