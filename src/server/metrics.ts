/**
 * Prometheus metrics, named after vLLM's (`vllm:num_requests_running` → `tachyon:num_requests_running`,
 * and so on) so an existing vLLM Grafana dashboard reads them with the prefix changed.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStatus } from '../engine/engine.js';
import { STEP_PHASES } from '../engine/step-phases.js';
import type { GenerationStats } from '../generate/generate.js';
import type { PrefixCacheStats } from '../kvcache/prefix-cache.js';
import type { TierStats } from '../kvcache/tiered-store.js';

/** Latency buckets in seconds (vLLM's time-to-first-token buckets, widened for CPUs). */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TOKEN_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly promptTokens = this.counter('prompt_tokens_total', 'Prompt tokens processed.');
  private readonly generationTokens = this.counter('generation_tokens_total', 'Tokens generated.');
  private readonly requestSuccess = this.counter('request_success_total', 'Requests finished, by finish reason.', ['finished_reason']);
  private readonly ttft = this.histogram('time_to_first_token_seconds', 'Time from request to first token.', LATENCY_BUCKETS);
  private readonly interToken = this.histogram('inter_token_latency_seconds', 'Time between output tokens.', TOKEN_BUCKETS);
  private readonly e2e = this.histogram('e2e_request_latency_seconds', 'Time from request to its last token.', LATENCY_BUCKETS);
  private readonly drafts = this.counter('spec_decode_num_drafts_total', 'Verification steps that checked drafted tokens.');
  private readonly draftTokens = this.counter('spec_decode_num_draft_tokens_total', 'Drafted tokens verified, per drafter.', ['drafter']);
  private readonly acceptedTokens = this.counter('spec_decode_num_accepted_tokens_total', 'Drafted tokens accepted, per drafter.', ['drafter']);

  /** The KV prefix cache's figures, read once per scrape (undefined without a cache). */
  private cache: PrefixCacheStats | undefined;

  constructor(
    status: () => EngineStatus,
    private readonly cacheStats: () => Promise<PrefixCacheStats | undefined> = async () => undefined,
  ) {
    this.gauge('num_requests_running', 'Requests generating now.', () => status().running);
    this.gauge('num_requests_waiting', 'Requests waiting for a turn.', () => status().waiting);
    this.gauge('kv_cache_tokens', 'KV cache cells in use.', () => status().kvCellsInUse);
    this.gauge('kv_cache_usage_perc', 'Fraction of KV cache cells in use (0-1).', () => {
      const { kvCellsInUse, kvCells } = status();
      return kvCells > 0 ? kvCellsInUse / kvCells : 0;
    });
    // The prefix cache's running totals (read from the engine at each scrape, so gauges).
    this.gauge('prefix_cache_hit_blocks', 'KV blocks found in a cache tier.', () => this.cache?.hitBlocks ?? 0);
    this.gauge('prefix_cache_hit_partial_blocks', "Partial last blocks of stored sequences whose leading tokens a prompt reused.", () => this.cache?.hitContinuations ?? 0);
    this.gauge('prefix_cache_miss_blocks', 'KV block lookups that found nothing usable.', () => this.cache?.missBlocks ?? 0);
    this.gauge('prefix_cache_restored_tokens', 'Prompt tokens restored from the cache instead of recomputed.', () => this.cache?.restoredTokens ?? 0);
    this.gauge('prefix_cache_stored_blocks', 'KV blocks queued for storage.', () => this.cache?.storedBlocks ?? 0);
    this.gauge('prefix_cache_resident_tokens', 'Matched prompt tokens already in the context (nothing loaded).', () => this.cache?.residentTokens ?? 0);
    this.gauge('prefix_shared_tokens', 'Prompt tokens whose cells a new request shared from a running one (seq_cp).', () => status().sharedPrefixTokens);
    this.gauge('kv_compactions', "Times the running requests' KV cells were moved into one run each (KvCompactor).", () => status().kvCompactions);
    this.labelledGauge('engine_step_seconds', "Seconds the engine loop's steps have spent in each phase: scheduling (admission, cache restores), batching (drafting and planning), decoding (the target's llama_decode), accepting (emitting, freeing KV).", 'phase', () => {
      const now = status();
      return STEP_PHASES.map((phase) => [phase, now[`${phase}Seconds`]]);
    });
    this.tierGauge('prefix_cache_tier_hits', 'Cache hits, per tier.', (tier) => tier.hits);
    this.tierGauge('prefix_cache_tier_misses', 'Cache misses, per tier (rejected entries included).', (tier) => tier.misses);
    this.tierGauge('prefix_cache_tier_rejected', 'Entries found but rejected (corrupt, foreign, stale), per tier.', (tier) => tier.rejected);
    this.tierGauge('prefix_cache_tier_bytes_loaded', 'Bytes loaded, per tier.', (tier) => tier.bytesLoaded);
    this.tierGauge('prefix_cache_tier_bytes_stored', 'Bytes stored, per tier.', (tier) => tier.bytesStored);
    this.tierGauge('prefix_cache_tier_hit_seconds', 'Recent time of one hit, per tier.', (tier) => tier.hitMs / 1000);
  }

  /** Seconds between two output chunks, spread over the chunk's tokens. */
  observeTokens(count: number, secondsSincePrevious: number): void {
    for (let i = 0; i < count; i++) this.interToken.observe(secondsSincePrevious / count);
  }

  observeFirstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  /** A finished request (`stop`, `length` or `abort`, as vLLM labels them): its token counts, latency and speculation. */
  observeFinished(stats: GenerationStats, finishedReason: 'stop' | 'length' | 'abort', seconds: number): void {
    this.promptTokens.inc(stats.promptTokens);
    this.generationTokens.inc(stats.generatedTokens);
    this.requestSuccess.inc({ finished_reason: finishedReason });
    this.e2e.observe(seconds);
    const spec = stats.speculation;
    if (!spec) return;
    this.drafts.inc(spec.speculativeSteps);
    for (const [drafter, { proposed, accepted }] of Object.entries(spec.drafters)) {
      this.draftTokens.inc({ drafter }, proposed);
      this.acceptedTokens.inc({ drafter }, accepted);
    }
  }

  async text(): Promise<string> {
    this.cache = await this.cacheStats();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name: `tachyon:${name}`, help, labelNames, registers: [this.registry] });
  }

  private histogram(name: string, help: string, buckets: number[]): Histogram {
    return new Histogram({ name: `tachyon:${name}`, help, buckets, registers: [this.registry] });
  }

  /** A gauge with one series per cache tier. */
  private tierGauge(name: string, help: string, read: (tier: TierStats) => number): void {
    this.labelledGauge(name, help, 'tier', () => {
      const tiers = Object.entries(this.cache?.tiers ?? {}).filter((entry): entry is [string, TierStats] => entry[1] !== undefined);
      return tiers.map(([tier, stats]) => [tier, read(stats)]);
    });
  }

  /** A gauge with one series per value of `label`, as `read` gives them at each scrape. */
  private labelledGauge(name: string, help: string, label: string, read: () => [string, number][]): void {
    new Gauge({
      name: `tachyon:${name}`,
      help,
      labelNames: [label],
      registers: [this.registry],
      collect() {
        for (const [value, reading] of read()) this.set({ [label]: value }, reading);
      },
    });
  }

  private gauge(name: string, help: string, read: () => number): void {
    new Gauge({
      name: `tachyon:${name}`,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }
}
