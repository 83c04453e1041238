/**
 * `tachyon bench kvcache`: time to first token of a shared prefix + a question, recomputed (cold)
 * vs restored from each cache tier, in one process on one context. It drives a bare context the
 * way the engine loop does (match, restore, prefill the rest, sample the first token), so the
 * figures are the cache's own, without the loop's scheduling around them. First tokens are
 * compared with the cold run's (identity).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TokenBatch } from '../llama/batch.js';
import { Context } from '../llama/context.js';
import { Model } from '../llama/model.js';
import { greedyToken } from '../generate/sampling.js';
import { DEFAULT_BLOCK_SIZE, PrefixCache } from '../kvcache/prefix-cache.js';
import { packageRoot } from '../paths.js';
import { openTiers } from '../kvcache/tiers/open.js';
import type { TierName } from '../kvcache/tiers/tier.js';
import { commonPrefixLength, median, round, top2Gap } from './stats.js';
import { measureLlamaServerCache, type KvCachePeerResult, type PeerWorkload } from './kvcache-peer.js';

export interface KvCacheBenchOptions {
  readonly model: string;
  readonly prefixSizes: readonly number[];
  readonly questionTokens: number;
  readonly tiers: readonly TierName[];
  readonly redisUrl?: string;
  readonly runs: number;
  readonly blockSize?: number;
  /** The multi-turn chat: turns (0: skipped), user tokens per turn, generated tokens per turn. */
  readonly chat: { readonly turns: number; readonly userTokens: number; readonly newTokens: number };
  /** Measure hits on entries other processes stored: this process stores nothing. */
  readonly readOnly?: boolean;
  /** After measuring, a second process reads the largest prefix from Redis (which this one filled). */
  readonly sharedRedis?: boolean;
  /** Then llama-server's own RAM prompt cache on the same prefixes (`llamaServer`: its binary, else the peer build). */
  readonly peer?: boolean;
  readonly llamaServer?: string;
  readonly onProgress?: (line: string) => void;
}

export interface PrefixResult {
  cold_ttft_ms: number;
  ram_ttft_ms?: number;
  disk_ttft_ms?: number;
  redis_ttft_ms?: number;
  /** Fewest tokens a tier restored (the rest was prefilled). */
  restored_tokens: number;
  identical: boolean;
  /** Where a hit's time goes, per tier (medians, ms): the lookup, the restore, the rest of the prompt prefilled and the first token. */
  breakdown: Partial<Record<TierName, HitBreakdown>>;
  /**
   * cold_ttft_ms over the fastest tier's prefill of the rest + first token: the most any cache
   * could gain here, were its lookup and restore free (the question's tokens still attend over
   * the whole prefix).
   */
  ceiling_x?: number;
}

export interface HitBreakdown {
  lookup_ms: number;
  restore_ms: number;
  prefill_ms: number;
}

export interface SharedRedisResult {
  prefix_tokens: number;
  /** Measured in the second process: recomputed, and restored from what the first stored. */
  cold_ttft_ms: number;
  hit_ttft_ms: number | null;
  restored_tokens: number;
  identical: boolean;
}

export interface ChatResult {
  turns: number;
  /** Total latency of all turns without a cache, and with the first measured tier. */
  cold_ms: number;
  cached_ms: number;
  cached_tier: TierName;
  /** Of cached_ms: generating each turn's answer token by token, which no cache saves (the floor). */
  cached_decode_ms: number;
  /** Of cached_ms: the cache's own work (lookups, restores, stores); the rest is what a free cache would still take. */
  cached_cache_ms: number;
  /** cold_ms over cached_ms less the cache's own work: the most any cache could gain on this chat. */
  ceiling_x: number;
  identical: boolean;
  /** Where the outputs first differ (conversation position) and plain decoding's top-2 logit gap there. */
  mismatch?: { position: number; cold_top2_gap: number };
}

export interface KvCacheBenchReport {
  readonly model: string;
  readonly runs: number;
  readonly prefix: Record<string, PrefixResult>;
  readonly chat10?: ChatResult;
  readonly shared_redis?: SharedRedisResult;
  readonly peer?: KvCachePeerResult;
}

const DEST = 0;
const SCRATCH = 1;
const FILLER = 'The committee reviewed the quarterly figures, the travel policy and the new onboarding guide in detail. ';

export async function runKvCacheBench(options: KvCacheBenchOptions): Promise<KvCacheBenchReport> {
  const model = await Model.load(options.model);
  const chatLength = options.chat.turns * (options.chat.userTokens + options.chat.newTokens);
  const largest = Math.max(...options.prefixSizes, chatLength) + options.questionTokens + 16;
  const context = Context.create(model, { contextSize: largest, sequences: 2 });
  const folder = await mkdtemp(join(tmpdir(), 'tachyon-bench-kv-'));
  try {
    const caches = new Map<TierName, PrefixCache>();
    for (const tier of options.tiers) {
      const tiers = await openTiers({ tiers: [tier], dir: folder, redisUrl: options.redisUrl, onWarning: options.onProgress });
      caches.set(tier, await PrefixCache.create(context, SCRATCH, { tiers, blockSize: options.blockSize }));
    }
    const prefix: Record<string, PrefixResult> = {};
    const peerWorkloads: PeerWorkload[] = [];
    for (const size of options.prefixSizes) {
      const prefixTokens = fillerTokens(model, size, 0);
      const prompts = { earlier: [...prefixTokens, ...fillerTokens(model, options.questionTokens, 1)], asked: [...prefixTokens, ...fillerTokens(model, options.questionTokens, 2)] };
      prefix[String(size)] = await measurePrefix(context, prompts, caches, options);
      if (options.peer) peerWorkloads.push(peerWorkload(model, size, options));
    }
    const [firstTier] = options.tiers;
    const firstCache = caches.get(firstTier);
    const chat10 = options.chat.turns > 0 && firstCache ? await measureChat(context, firstCache, firstTier, options) : undefined;
    for (const cache of caches.values()) await cache.close();
    const shared = options.sharedRedis ? await measureSharedRedis(options, Math.max(...options.prefixSizes)) : undefined;
    const peer = options.peer ? await measureLlamaServerCache({ model: options.model, contextSize: largest, llamaServer: options.llamaServer, onProgress: options.onProgress }, peerWorkloads) : undefined;
    return { model: options.model, runs: options.runs, prefix, ...(chat10 ? { chat10 } : {}), ...(shared ? { shared_redis: shared } : {}), ...(peer ? { peer } : {}) };
  } finally {
    context.dispose();
    model.dispose();
    await rm(folder, { recursive: true, force: true });
  }
}

/**
 * One prefix size: an earlier request (the prefix and another question) left its blocks in each
 * tier, as the engine leaves a finished request's; the request measured asks a new question, so
 * only the prefix and the questions' common leading tokens are cached.
 */
async function measurePrefix(context: Context, prompts: { earlier: number[]; asked: number[] }, caches: Map<TierName, PrefixCache>, options: KvCacheBenchOptions): Promise<PrefixResult> {
  const prompt = prompts.asked;
  // The earlier request, unmeasured (it also allocates the graphs and warms the caches).
  context.seqRemove(DEST);
  await greedyContinue(context, prompts.earlier, 0, 1);
  if (!options.readOnly) for (const cache of caches.values()) cache.storeBlocks(DEST, prompts.earlier, '', SCRATCH);
  const cold: number[] = [];
  let firstToken = -1;
  for (let run = 0; run < options.runs; run++) {
    context.seqRemove(DEST);
    const started = performance.now();
    [firstToken] = (await greedyContinue(context, prompt, 0, 1)).tokens;
    cold.push(performance.now() - started);
  }
  options.onProgress?.(`${prompt.length - options.questionTokens}-token prefix: cold ${median(cold).toFixed(1)} ms`);
  const result: PrefixResult = { cold_ttft_ms: round(median(cold), 2) ?? 0, restored_tokens: caches.size > 0 ? prompt.length : 0, identical: true, breakdown: {} };
  for (const [tier, cache] of caches) {
    await cache.flush();
    const times: number[] = [];
    const parts = { lookup: [] as number[], restore: [] as number[], prefill: [] as number[] };
    for (let run = -1; run < options.runs; run++) {
      context.seqRemove(DEST);
      const started = performance.now();
      const match = await cache.match(prompt);
      const matched = performance.now();
      const held = cache.restorePrefix(match, SCRATCH, DEST, prompt.length - 1);
      const restored = performance.now();
      const [token] = (await greedyContinue(context, prompt, held, 1)).tokens;
      const done = performance.now();
      result.restored_tokens = Math.min(result.restored_tokens, held);
      if (run >= 0) {
        times.push(done - started);
        parts.lookup.push(matched - started);
        parts.restore.push(restored - matched);
        parts.prefill.push(done - restored);
      }
      result.identical &&= token === firstToken;
    }
    result[`${tier}_ttft_ms`] = round(median(times), 2) ?? 0;
    const breakdown = { lookup_ms: round(median(parts.lookup), 2) ?? 0, restore_ms: round(median(parts.restore), 2) ?? 0, prefill_ms: round(median(parts.prefill), 2) ?? 0 };
    result.breakdown[tier] = breakdown;
    result.ceiling_x = Math.max(result.ceiling_x ?? 0, round(result.cold_ttft_ms / breakdown.prefill_ms, 1) ?? 0);
    options.onProgress?.(`  from ${tier}: ${median(times).toFixed(1)} ms (lookup ${breakdown.lookup_ms}, restore ${breakdown.restore_ms}, prefill of ${prompt.length - result.restored_tokens} tokens + first token ${breakdown.prefill_ms})`);
  }
  context.seqRemove(DEST);
  return result;
}

/**
 * A conversation of `turns` user messages, each answered with `newTokens` greedy tokens; the
 * context forgets it between turns (as the engine frees a finished request's cells), so every
 * turn recomputes it (cold) or restores it from the cache.
 */
async function measureChat(context: Context, cache: PrefixCache, tier: TierName, options: KvCacheBenchOptions): Promise<ChatResult> {
  const run = async (withCache: boolean): Promise<{ ms: number; decodeMs: number; cacheMs: number; tokens: number[]; gaps: Map<number, number> }> => {
    const conversation = fillerTokens(context.model, 1, 0);
    const gaps = new Map<number, number>();
    let ms = 0;
    let decodeMs = 0;
    let cacheMs = 0;
    for (let turn = 0; turn < options.chat.turns; turn++) {
      conversation.push(...fillerTokens(context.model, options.chat.userTokens, turn + 1));
      context.seqRemove(DEST);
      const started = performance.now();
      const held = withCache ? cache.restorePrefix(await cache.match(conversation), SCRATCH, DEST, conversation.length - 1) : 0;
      const restored = performance.now();
      const answer = await greedyContinue(context, conversation, held, options.chat.newTokens);
      decodeMs += answer.decodeMs;
      answer.gaps.forEach((gap, i) => gaps.set(conversation.length + i, gap));
      conversation.push(...answer.tokens);
      const answered = performance.now();
      if (withCache) cache.storeBlocks(DEST, conversation, '', SCRATCH);
      const done = performance.now();
      if (withCache) cacheMs += restored - started + (done - answered);
      ms += done - started;
    }
    return { ms, decodeMs, cacheMs, tokens: conversation, gaps };
  };
  const cold = await run(false);
  options.onProgress?.(`${options.chat.turns}-turn chat: cold ${cold.ms.toFixed(0)} ms`);
  const cached = await run(true);
  options.onProgress?.(`  with the ${tier} cache: ${cached.ms.toFixed(0)} ms`);
  context.seqRemove(DEST);
  const position = commonPrefixLength(cold.tokens, cached.tokens);
  const identical = position === cold.tokens.length && position === cached.tokens.length;
  const mismatch = identical ? undefined : { position, cold_top2_gap: round(cold.gaps.get(position) ?? Number.NaN, 6) ?? Number.NaN };
  const result: ChatResult = {
    turns: options.chat.turns,
    cold_ms: round(cold.ms, 1) ?? 0,
    cached_ms: round(cached.ms, 1) ?? 0,
    cached_tier: tier,
    cached_decode_ms: round(cached.decodeMs, 1) ?? 0,
    cached_cache_ms: round(cached.cacheMs, 1) ?? 0,
    ceiling_x: round(cold.ms / (cached.ms - cached.cacheMs), 2) ?? 0,
    identical,
  };
  return mismatch ? { ...result, mismatch } : result;
}

/** Runs this benchmark again in a second process, reading only what this one stored in Redis. */
async function measureSharedRedis(options: KvCacheBenchOptions, size: number): Promise<SharedRedisResult> {
  if (!options.redisUrl || !options.tiers.includes('redis')) throw new RangeError('the shared Redis measurement needs the redis tier and --redis');
  const args = ['bench', 'kvcache', '--model', options.model, '--tiers', 'redis', '--redis', options.redisUrl, '--prefix', String(size)];
  args.push('--question', String(options.questionTokens), '--runs', String(options.runs), '--block-size', String(options.blockSize ?? DEFAULT_BLOCK_SIZE));
  args.push('--chat-turns', '0', '--read-only', '--json');
  options.onProgress?.(`second process reading the ${size}-token prefix from Redis`);
  const { stdout } = await promisify(execFile)(process.execPath, [join(packageRoot, 'bin', 'tachyon.js'), ...args], { maxBuffer: 1 << 24 });
  const row = (JSON.parse(stdout) as KvCacheBenchReport).prefix[String(size)];
  return { prefix_tokens: size, cold_ttft_ms: row.cold_ttft_ms, hit_ttft_ms: row.redis_ttft_ms ?? null, restored_tokens: row.restored_tokens, identical: row.identical };
}

/**
 * Prefills `prompt` from `from` in batch-size chunks, then decodes `steps` greedy tokens (with each
 * choice's top-2 logit gap, and the time spent decoding after the first token).
 */
async function greedyContinue(context: Context, prompt: readonly number[], from: number, steps: number): Promise<{ tokens: number[]; gaps: number[]; decodeMs: number }> {
  const batch = new TokenBatch(context.batchSize, 1);
  try {
    for (let start = from; start < prompt.length; start += context.batchSize) {
      batch.clear().addSequence(prompt.slice(start, Math.min(prompt.length, start + context.batchSize)), start, DEST);
      await context.decode(batch);
    }
    const history = [...prompt];
    const generated = { tokens: [] as number[], gaps: [] as number[], decodeMs: 0 };
    for (let step = 0; step < steps; step++) {
      const logits = context.logits(batch.size - 1);
      const token = greedyToken(logits, history, { temperature: 0 });
      generated.tokens.push(token);
      generated.gaps.push(top2Gap(logits));
      history.push(token);
      if (step + 1 === steps) break;
      batch.clear().add(token, history.length - 1, DEST, true);
      const started = performance.now();
      await context.decode(batch);
      generated.decodeMs += performance.now() - started;
    }
    return generated;
  } finally {
    batch.dispose();
  }
}

/**
 * The peer's prompts for one prefix size: the prefix with a new question for each restore, and
 * as many prompts of the same length that share only BOS with it (cold), and one that takes the
 * slot before each restore.
 */
function peerWorkload(model: Model, size: number, options: KvCacheBenchOptions): PeerWorkload {
  const bos = model.tokenizer.tokenize('', { addSpecial: true });
  const prefix = fillerTokens(model, size, 0);
  const question = (variant: number) => fillerTokens(model, options.questionTokens, variant);
  const unrelated = (variant: number, length: number) => [...bos, ...question(variant), ...prefix.slice(bos.length)].slice(0, length);
  const runs = Array.from({ length: options.runs + 1 }, (_, run) => run);
  return {
    size,
    first: [...prefix, ...question(1)],
    hits: runs.map((run) => [...prefix, ...question(2 + run)]),
    // Variants unique to this size: a cold prompt of a smaller size would otherwise be a cached prefix of this one's.
    cold: runs.map((run) => unrelated(size * 100 + run + 1, size + options.questionTokens)),
    evict: unrelated(size * 100, Math.min(size, 128)),
  };
}

/** `count` tokens of ordinary text (from BOS when `variant` is 0); other variants are questions that differ from each other. */
function fillerTokens(model: Model, count: number, variant: number): number[] {
  const text = variant === 0 ? FILLER : `Question ${variant}: which of these items should be discussed first next week, and why? `;
  const once = model.tokenizer.tokenize(text, { addSpecial: false });
  const tokens = variant === 0 ? model.tokenizer.tokenize('', { addSpecial: true }) : [];
  while (tokens.length < count) tokens.push(...once);
  return tokens.slice(0, count);
}
