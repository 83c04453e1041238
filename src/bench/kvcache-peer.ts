/**
 * llama-server's own prompt cache on `bench kvcache`'s workload, as the peer of the RAM tier: one
 * slot (`--parallel 1`) and its RAM prompt cache (`--cache-ram`). The prefix + a question is
 * computed once; then another prompt takes the slot (the prefix's KV goes to the RAM cache) and
 * the prefix + another question arrives: restored from the RAM cache, the question prefilled.
 * Cold is the same length with nothing to restore. Prompts go as token ids to `/completion`, so
 * both engines see the same tokens; its timings say how many tokens were reused (`cache_n`).
 */
import { availableParallelism } from 'node:os';
import { median, round } from './stats.js';
import { locatePeer, rawCompletionFlags } from './peer-server.js';

export interface PeerWorkload {
  /** Prefix length (the report's key). */
  size: number;
  /** Prefix + a question, the prefix's first use. */
  first: readonly number[];
  /** Prefix + another question, one per measured run (and one unmeasured first). */
  hits: readonly (readonly number[])[];
  /** Prompts as long as `first` that share nothing with it after BOS, one per run: the cold runs. */
  cold: readonly (readonly number[])[];
  /** A prompt sharing nothing with the prefix, that takes the slot before each hit. */
  evict: readonly number[];
}

export interface PeerPrefixResult {
  cold_ttft_ms: number;
  /** After the slot was taken by another prompt: the prefix restored from llama-server's RAM cache. */
  restore_ttft_ms: number;
  /** Fewest prompt tokens llama-server reused on a restore (`timings.cache_n`). */
  restored_tokens: number;
}

export interface KvCachePeerResult {
  server: string;
  version: string | null;
  flags: string[];
  prefix: Record<string, PeerPrefixResult>;
}

/** RAM prompt cache of the peer (MiB): room for every prefix measured. */
const CACHE_RAM_MIB = 2048;

interface CompletionTimings {
  timings?: { cache_n?: number; prompt_n?: number };
}

export async function measureLlamaServerCache(
  options: { model: string; contextSize: number; llamaServer?: string; onProgress?: (line: string) => void },
  workloads: readonly PeerWorkload[],
): Promise<KvCachePeerResult> {
  const progress = options.onProgress ?? (() => {});
  const { servers, path, help, version } = await locatePeer(options.llamaServer, progress);
  if (!servers.helpHasFlag(help, '--cache-ram')) throw new Error(`${path} has no --cache-ram (too old a llama.cpp for the peer)`);
  const threads = String(availableParallelism());
  const flags = ['-m', options.model, '-c', String(options.contextSize), '--parallel', '1', '--cache-ram', String(CACHE_RAM_MIB), '-t', threads, '-tb', threads, '-ngl', '0'];
  flags.push(...rawCompletionFlags(servers, help));
  const server = await new servers.LlamaServer(path, 'cache-ram', flags, { log: progress }).start();
  try {
    const timed = async (prompt: readonly number[]): Promise<{ ms: number; reused: number }> => {
      const started = performance.now();
      // One token, as the cold and restored runs of Tachyon's side sample one.
      const response = (await server.post('/completion', { prompt, n_predict: 1, temperature: 0, cache_prompt: true })) as CompletionTimings;
      return { ms: performance.now() - started, reused: response.timings?.cache_n ?? 0 };
    };
    const prefix: Record<string, PeerPrefixResult> = {};
    for (const workload of workloads) {
      const cold: number[] = [];
      for (const [run, prompt] of workload.cold.entries()) {
        const { ms } = await timed(prompt);
        if (run > 0) cold.push(ms); // the first builds graphs and warms caches
      }
      await timed(workload.first);
      const restore: number[] = [];
      let restored = Number.POSITIVE_INFINITY;
      for (const [run, prompt] of workload.hits.entries()) {
        await timed(workload.evict);
        const { ms, reused } = await timed(prompt);
        restored = Math.min(restored, reused);
        if (run > 0) restore.push(ms);
      }
      prefix[String(workload.size)] = { cold_ttft_ms: round(median(cold), 2) ?? 0, restore_ttft_ms: round(median(restore), 2) ?? 0, restored_tokens: restored };
      progress(`llama-server --cache-ram, ${workload.size}-token prefix: cold ${median(cold).toFixed(1)} ms, restored ${median(restore).toFixed(1)} ms (${restored} tokens reused)`);
    }
    return { server: path, version, flags, prefix };
  } finally {
    await server.stop();
  }
}
