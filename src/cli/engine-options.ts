/** Flags shared by every command that loads a model. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { defaultCacheFolder, parseTierList } from '../kvcache/tiers/open.js';
import type { TierName } from '../kvcache/tiers/tier.js';
import type { EngineOptions } from '../engine/engine.js';
import type { GpuChoice } from '../llama/library.js';
import type { FlashAttention } from '../llama/context.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { EMBED_PAIRS, ensureEmbeddedPair, type EmbedPairName } from '../gguf/embed.js';
import { defaultDraftModelPath, defaultModelPath } from '../paths.js';
import { UsageError } from './errors.js';
import { integer } from './options.js';
import { progressBar } from './progress.js';

export interface ModelFlags {
  model: string;
  gpu: GpuChoice;
  threads?: number;
  ctxSize?: number;
  flashAttn: FlashAttention;
  /** Cache tiers, or none (`--cache off`). */
  cache: TierName[] | 'off';
  cacheDir?: string;
  redis?: string;
  chatTemplateFile?: string;
}

export function addModelFlags(command: Command): Command {
  return command
    .option('-m, --model <path>', 'GGUF model file', defaultModelPath)
    .addOption(backendOption('--gpu <backend>', 'llama.cpp backend', 'auto'))
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', integer(1, 512))
    .option('-c, --ctx-size <n>', "context size in tokens (default: the model's, at most 4096)", integer(16))
    .addOption(flashAttentionOption())
    .option('--cache <tiers>', 'KV prefix cache tiers, in lookup order: ram, disk, redis (comma-separated), or off', cacheTiers, ['ram'] as TierName[])
    .option('--cache-dir <dir>', `folder of the disk tier (default ${defaultCacheFolder()})`)
    .option('--redis <url>', 'Redis URL of the redis tier (redis://[user:pass@]host:port, rediss:// for TLS)')
    .option('--chat-template-file <path>', "a Jinja chat template to use instead of the model's");
}

function cacheTiers(value: string): TierName[] | 'off' {
  if (value === 'off') return 'off';
  try {
    return parseTierList(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** Engine options from the flags, with a load progress bar. */
export function engineOptions(flags: ModelFlags): EngineOptions & { model: string } {
  const bar = progressBar('loading model');
  return {
    model: flags.model,
    gpu: flags.gpu,
    threads: flags.threads,
    contextSize: flags.ctxSize,
    flashAttention: flags.flashAttn,
    cache: flags.cache === 'off' ? undefined : { tiers: flags.cache, dir: flags.cacheDir, redisUrl: flags.redis },
    chatTemplate: flags.chatTemplateFile === undefined ? undefined : readChatTemplate(flags.chatTemplateFile),
    onMeasure: () => process.stderr.write('tachyon: measuring the verify cost curve of this model on this machine (once; cached)\n'),
    onProgress: (fraction) => {
      bar.update(fraction);
      if (fraction >= 1) bar.stop();
    },
  };
}

function readChatTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the chat template file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

const FLASH_ATTENTION_CHOICES: readonly FlashAttention[] = ['auto', 'on', 'off'];

/**
 * llama-server's --flash-attn, for the target and the draft model alike. On a CPU, llama.cpp's
 * flash attention walks the cache row by row for batches under 64 tokens: off, a single sequence's
 * verify batches after a long prefix cost less (embedded m after 1,500 cells: 32 tokens 0.87 s
 * against 1.17 s), while many sequences sharing the unified KV cache, and prompts, cost more.
 */
export function flashAttentionOption(): Option {
  return new Option('--flash-attn <mode>', 'flash attention: auto (llama.cpp decides: on wherever the backend supports it), on or off').choices(FLASH_ATTENTION_CHOICES).default('auto');
}

const BACKEND_CHOICES: readonly GpuChoice[] = ['auto', 'cpu', 'cuda', 'vulkan', 'metal'];

/** A flag naming a llama.cpp backend (--gpu, and the benchmarks' --reference). */
export function backendOption(flags: string, description: string, fallback: GpuChoice): Option {
  return new Option(flags, description).choices(BACKEND_CHOICES).default(fallback);
}

/** Flags of commands that may run a draft model beside the target, or the pair in a realistic shape. */
export interface PairFlags {
  model: string;
  draftModel?: string;
  /** false with --no-draft. */
  draft: boolean;
  shape?: EmbedPairName;
}

/** Adds --draft-model, --no-draft and --shape. */
export function addPairFlags(command: Command): Command {
  return command
    .option('--draft-model <path>', 'draft GGUF (default: the testbed draft when --model is the testbed target)')
    .option('--no-draft', 'run without a draft model')
    .addOption(shapeOption());
}

/** --shape alone, for commands that load no draft model. */
export function shapeOption(): Option {
  return new Option('--shape <name>', 'run on the model (and draft) embedded exactly in a realistic shape (m: target in m ≈ 0.37B, draft in s ≈ 25M; Q8_0, built once and cached)').choices(Object.keys(EMBED_PAIRS));
}

/** The target and draft the flags name, before any embedding (absolute paths). */
export function sourcePair(flags: PairFlags): { model: string; draftModel?: string } {
  const model = resolve(flags.model);
  if (!flags.draft) return { model };
  return { model, draftModel: flags.draftModel ? resolve(flags.draftModel) : model === defaultModelPath ? defaultDraftModelPath : undefined };
}

/** The models to load: the source pair, or it embedded in `--shape` (built on first use). */
export async function modelPair(flags: PairFlags, progress: (line: string) => void): Promise<{ model: string; draftModel?: string }> {
  const sources = sourcePair(flags);
  return flags.shape ? ensureEmbeddedPair(flags.shape, sources, progress) : sources;
}
