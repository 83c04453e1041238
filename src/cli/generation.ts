/** What every generating command (`run`, `chat`) shares: its flags, the engine they describe, the statistics lines. */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { JsonSchemaError, jsonSchemaGrammar } from '../generate/json-grammar.js';
import { Engine, type GenerateOptions } from '../engine/engine.js';
import type { GenerationStats } from '../generate/generate.js';
import { SPECULATION_MODES, type SpeculationMode } from '../speculative/speculation.js';
import { addModelFlags, engineOptions, type ModelFlags } from './engine-options.js';
import { UsageError } from './errors.js';
import { decimal, integer } from './options.js';
import { REASONING_EFFORTS, type ReasoningEffort } from '../reasoning/controller.js';

/** Flags of every command that generates: sampling, limits, speculation. */
export interface GenerationFlags extends ModelFlags {
  maxTokens: number;
  temp: number;
  seed: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  penaltyLastN?: number;
  stop: string[];
  spec: SpeculationMode;
  draftModel?: string;
  maxThinkingTokens?: number;
  reasoningEffort?: ReasoningEffort;
  cacheSalt?: string;
  grammarFile?: string;
  jsonSchema?: string;
  jsonSchemaFile?: string;
}

/** The model, sampling, limit and speculation flags shared by `run` and `chat`. */
export function addGenerationFlags(command: Command): Command {
  return addModelFlags(command)
    .option('-n, --max-tokens <n>', 'most tokens to generate', integer(0), 256)
    .option('--temp <t>', 'temperature; 0 = greedy', decimal(0), 0)
    .option('--seed <n>', 'sampling seed', integer(0), 0)
    .option('--top-k <n>', 'top-k (0 = off)', integer(0))
    .option('--top-p <p>', 'top-p (1 = off)', decimal(0, 1))
    .option('--min-p <p>', 'min-p (0 = off)', decimal(0, 1))
    .option('--repeat-penalty <theta>', 'repetition penalty over the last --penalty-last-n tokens (1 = off)', decimal(0.01))
    .option('--penalty-last-n <n>', 'window of the repetition penalty (-1 = all)', integer(-1))
    .option('--stop <text>', 'stop before this text (repeatable)', (value: string, previous: string[]) => [...previous, value], [])
    .addOption(new Option('--spec <mode>', 'speculative decoding (lossless)').choices([...SPECULATION_MODES]).default('auto'))
    .option('--draft-model <path>', 'draft GGUF with the same vocabulary (enables --spec draft; used by auto)')
    .option('--max-thinking-tokens <n>', 'hard thinking budget: close the thinking after N tokens and let the model answer', integer(0))
    .addOption(new Option('--reasoning-effort <level>', "early exit from the thinking at the model's calibrated presets (changes outputs)").choices([...REASONING_EFFORTS]))
    .option('--cache-salt <salt>', 'tenant of the KV cache and the drafting history: different salts share nothing')
    .option('-j, --json-schema <schema>', 'answer in JSON that this JSON Schema describes ({} for any JSON value)')
    .option('--json-schema-file <path>', '--json-schema, read from a file')
    .option('--grammar-file <path>', 'answer in the language of this GBNF grammar (llama.cpp\'s format, start symbol root)');
}

/** Loads the engine the generation flags describe. */
export function loadEngine(flags: GenerationFlags): Promise<Engine> {
  if (flags.spec === 'draft' && !flags.draftModel) throw new UsageError('--spec draft needs --draft-model PATH');
  return Engine.load({ ...engineOptions(flags), draftModel: flags.draftModel });
}

export function samplingFrom(flags: GenerationFlags): GenerateOptions {
  return {
    maxTokens: flags.maxTokens,
    temperature: flags.temp,
    seed: flags.seed,
    topK: flags.topK,
    topP: flags.topP,
    minP: flags.minP,
    repeatPenalty: flags.repeatPenalty,
    penaltyLastN: flags.penaltyLastN,
    stop: flags.stop,
    speculation: flags.spec,
    maxThinkingTokens: flags.maxThinkingTokens,
    reasoningEffort: flags.reasoningEffort,
    cacheSalt: flags.cacheSalt,
    grammar: grammarFrom(flags),
  };
}

/** The grammar the answer must follow (--json-schema, --json-schema-file or --grammar-file; undefined: none). */
function grammarFrom(flags: GenerationFlags): string | undefined {
  const given = [flags.jsonSchema, flags.jsonSchemaFile, flags.grammarFile].filter((value) => value !== undefined);
  if (given.length > 1) throw new UsageError('give one of --json-schema, --json-schema-file and --grammar-file');
  if (flags.grammarFile !== undefined) return readText(flags.grammarFile, '--grammar-file');
  const text = flags.jsonSchemaFile !== undefined ? readText(flags.jsonSchemaFile, '--json-schema-file') : flags.jsonSchema;
  if (text === undefined) return undefined;
  const flag = flags.jsonSchemaFile !== undefined ? '--json-schema-file' : '--json-schema';
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${flag}: not JSON (${(error as Error).message})`);
  }
  try {
    return jsonSchemaGrammar(schema);
  } catch (error) {
    if (error instanceof JsonSchemaError) throw new UsageError(`${flag}: ${error.message}`);
    throw error;
  }
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

export function formatStats(stats: GenerationStats): string {
  const lines = [
    [
      `${stats.generatedTokens} tokens (${stats.stopReason})${stats.thinkingEnd ? `, ${stats.thinkingTokens} thinking (${stats.thinkingEnd})` : ''}`,
      `prompt ${stats.promptTokens} tok${stats.cachedPromptTokens > 0 ? ` (${stats.cachedPromptTokens} cached)` : ''} at ${stats.prefillTokensPerSecond.toFixed(0)} tok/s`,
      `decode ${stats.decodeTokensPerSecond.toFixed(1)} tok/s`,
      `first token ${stats.timeToFirstTokenMs.toFixed(1)} ms`,
    ].join(' · '),
  ];
  const spec = stats.speculation;
  if (spec) {
    const drafters = Object.entries(spec.drafters)
      .map(([name, d]) => `${name} ${d.accepted}/${d.proposed}`)
      .join(', ');
    const t = stats.timings;
    lines.push(
      `speculation: τ ${spec.tau.toFixed(2)} tokens/step over ${spec.steps} steps · accepted ${drafters || 'none'} · draft ${t.draftMs.toFixed(0)} ms, verify ${t.verifyMs.toFixed(0)} ms, sampling ${t.samplingMs.toFixed(0)} ms`,
    );
  }
  return lines.join('\n');
}
