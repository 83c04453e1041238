/**
 * llama.cpp's own speculative decoding as live peers of `tachyon bench spec`: one llama-server per
 * `--spec-type` configuration, all started before the first prompt, so that every prompt runs on
 * them in the same rotation as Tachyon's configurations. A machine whose speed drifts over the
 * minutes of a run then moves both engines alike (peers measured in another hour moved by 10–15%
 * on this CPU: llama.cpp's ngram-mod ran prompts it never drafted on 15% faster than its plain).
 */
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GpuChoice } from '../llama/library.js';
import type { FlashAttention } from '../llama/context.js';
import { locatePeer, rawCompletionFlags } from './peer-server.js';

/** One greedy completion as llama-server timed it. */
export interface PeerRun {
  tokens: number[];
  /** llama-server's `predicted_per_second`: tokens/s after the prompt. */
  decodeTokensPerSecond: number;
  drafted: number;
  accepted: number;
}

export interface SpecPeerOptions {
  model: string;
  draftModel?: string;
  gpu: GpuChoice;
  threads?: number;
  flashAttention?: FlashAttention;
  /** The engine's context, so every prompt Tachyon runs fits the peers too. */
  contextSize: number;
  /** Configuration names (`plain`, `ngram-mod`, `draft-simple`, …) or `all`. */
  configs: readonly string[];
  llamaServer?: string;
}

/**
 * After a decode, ggml's worker threads spin for a while before they sleep (about 200 ms measured
 * here); with two engines in turn on the same cores, each run waits that long first, so neither
 * starts beside the other's spinning threads.
 */
const SETTLE_MS = 400;
export const SETTLE_LABEL = `${SETTLE_MS} ms`;

interface Served {
  name: string;
  flags: string[];
  post(path: string, body: unknown): Promise<unknown>;
  stop(): Promise<void>;
}

export class LlamaSpecPeers {
  private constructor(
    private readonly served: readonly Served[],
    readonly server: string,
    readonly version: string | null,
  ) {}

  static async start(options: SpecPeerOptions, progress: (line: string) => void): Promise<LlamaSpecPeers> {
    const { servers, path, help, version } = await locatePeer(options.llamaServer, progress);
    const threads = options.threads ?? availableParallelism();
    const available = servers.specConfigs(help, { draftModel: options.draftModel ?? null, threads, log: progress });
    const wanted = options.configs.includes('all') ? available : options.configs.map((name) => {
      const config = available.find((c) => c.name === name);
      if (!config) throw new Error(`llama.cpp peer "${name}" is not offered by ${path} (it offers ${available.map((c) => c.name).join(', ')})`);
      return config;
    });
    const common = ['-m', options.model, '-c', String(options.contextSize), '-np', '1', '-t', String(threads), '-tb', String(threads), '-ngl', options.gpu === 'cpu' ? '0' : '999'];
    // llama-server's own default is auto, as ours is.
    if (options.flashAttention && options.flashAttention !== 'auto') common.push('-fa', options.flashAttention);
    common.push(...rawCompletionFlags(servers, help));
    if (servers.helpHasFlag(help, '--cache-ram')) common.push('--cache-ram', '0');
    const served: Served[] = [];
    try {
      for (const config of wanted) {
        const server = new servers.LlamaServer(path, `spec-${config.name}`, [...common, ...config.flags], { log: progress });
        served.push({ name: config.name, flags: config.flags, post: (p, body) => server.post(p, body), stop: () => server.stop() });
        await server.start();
      }
    } catch (error) {
      await Promise.all(served.map((s) => s.stop()));
      throw error;
    }
    return new LlamaSpecPeers(served, path, version);
  }

  get names(): string[] {
    return this.served.map((s) => s.name);
  }

  describe(): { server: string; version: string | null; configs: Record<string, string[]> } {
    return { server: this.server, version: this.version, configs: Object.fromEntries(this.served.map((s) => [s.name, s.flags])) };
  }

  /** Greedy, from exactly these prompt tokens (no BOS added, no template), no prompt cache. */
  async complete(name: string, prompt: readonly number[], maxTokens: number): Promise<PeerRun> {
    const served = this.served.find((s) => s.name === name);
    if (!served) throw new Error(`no llama.cpp peer "${name}"`);
    const response = (await served.post('/completion', {
      prompt: [...prompt],
      n_predict: maxTokens,
      temperature: 0,
      cache_prompt: false,
      return_tokens: true,
      stream: false,
      seed: 0,
    })) as CompletionResponse;
    const timings = response.timings ?? {};
    const tokens = Array.isArray(response.tokens) ? response.tokens : [];
    return {
      // llama-server lists the end-of-generation token it stopped at; Tachyon's results do not.
      tokens: response.stop_type === 'eos' ? tokens.slice(0, -1) : tokens,
      decodeTokensPerSecond: timings.predicted_per_second ?? 0,
      drafted: timings.draft_n ?? 0,
      accepted: timings.draft_n_accepted ?? 0,
    };
  }

  /** Waits out the other engine's spinning threads before a timed run. */
  settle(): Promise<void> {
    return sleep(SETTLE_MS);
  }

  async stop(): Promise<void> {
    await Promise.all(this.served.map((s) => s.stop()));
  }
}

interface CompletionResponse {
  tokens?: number[];
  /** `eos` when generation stopped at an end-of-generation token (`limit`, `word`, `none` otherwise). */
  stop_type?: string;
  timings?: { predicted_per_second?: number; draft_n?: number; draft_n_accepted?: number };
}
