/** `tachyon run`: stream a generation from the model and print its statistics. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Engine, type GenerateOptions } from '../engine.js';
import type { GenerationResult, GenerationStats } from '../generate/generate.js';
import { addModelFlags, engineOptions, type ModelFlags } from './engine-options.js';
import { UsageError } from './errors.js';
import { decimal, integer } from './options.js';
import { SPECULATION_MODES, type SpeculationMode } from '../speculative/speculation.js';
import { Option } from 'commander';
import { REASONING_EFFORTS, type ReasoningEffort } from '../reasoning/controller.js';
import { withReasoningPresets } from '../reasoning/presets.js';

interface RunFlags extends ModelFlags {
  maxTokens: number;
  temp: number;
  seed: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  penaltyLastN?: number;
  stop: string[];
  chat?: boolean;
  json?: boolean;
  spec: SpeculationMode;
  draftModel?: string;
  maxThinkingTokens?: number;
  reasoningEffort?: ReasoningEffort;
}

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description('generate text from a prompt (streams to stdout, statistics to stderr)')
    .argument('[prompt]', 'the prompt; read from stdin when omitted');
  addModelFlags(command)
    .option('-n, --max-tokens <n>', 'most tokens to generate', integer(0), 256)
    .option('--temp <t>', 'temperature; 0 = greedy', decimal(0), 0)
    .option('--seed <n>', 'sampling seed', integer(0), 0)
    .option('--top-k <n>', 'top-k (0 = off)', integer(0))
    .option('--top-p <p>', 'top-p (1 = off)', decimal(0, 1))
    .option('--min-p <p>', 'min-p (0 = off)', decimal(0, 1))
    .option('--repeat-penalty <theta>', 'repetition penalty over the last --penalty-last-n tokens (1 = off)', decimal(0.01))
    .option('--penalty-last-n <n>', 'window of the repetition penalty (-1 = all)', integer(-1))
    .option('--stop <text>', 'stop before this text (repeatable)', (value: string, previous: string[]) => [...previous, value], [])
    .option('--chat', "wrap the prompt as a user message with the model's chat template (default when the model has one)")
    .option('--no-chat', 'use the prompt as raw text')
    .addOption(new Option('--spec <mode>', 'speculative decoding (lossless)').choices([...SPECULATION_MODES]).default('auto'))
    .option('--draft-model <path>', 'draft GGUF with the same vocabulary (enables --spec draft; used by auto)')
    .option('--max-thinking-tokens <n>', 'hard thinking budget: close the thinking after N tokens and let the model answer', integer(0))
    .addOption(new Option('--reasoning-effort <level>', "early exit at the model's calibrated presets (changes outputs; plain decoding)").choices([...REASONING_EFFORTS]))
    .option('--json', 'print one JSON object with text, tokens and stats instead of streaming')
    .action(async (prompt: string | undefined, flags: RunFlags) => runCommand(prompt, flags));
}

function readPrompt(prompt: string | undefined): string {
  if (prompt !== undefined) return prompt;
  if (process.stdin.isTTY) throw new UsageError('no prompt: pass one as an argument or on stdin');
  return readFileSync(0, 'utf8');
}

export function samplingFrom(flags: RunFlags): GenerateOptions {
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
  };
}

async function runCommand(promptArgument: string | undefined, flags: RunFlags): Promise<void> {
  const promptText = readPrompt(promptArgument);
  if (flags.spec === 'draft' && !flags.draftModel) throw new UsageError('--spec draft needs --draft-model PATH');
  const engine = await Engine.load({ ...engineOptions(flags), draftModel: flags.draftModel });
  try {
    const useChat = flags.chat ?? engine.model.metadata.chatTemplate !== undefined;
    const prompt = useChat ? engine.chatPrompt([{ role: 'user', content: promptText }]) : engine.tokenize(promptText);
    const options = await withReasoningPresets(engine.model, samplingFrom(flags));
    if (options.exitThresholds && options.speculation !== 'off') {
      // The policy reads every emitted token's logits row; until the engine loop serves those
      // rows from speculative steps, early exit decodes plainly.
      process.stderr.write('tachyon: --reasoning-effort decodes plainly (speculation off)\n');
      options.speculation = 'off';
    }
    const iterator = engine.generate(prompt, options);
    let step = await iterator.next();
    while (!step.done) {
      if (!flags.json) process.stdout.write(step.value.text);
      step = await iterator.next();
    }
    printResult(step.value, flags.json ?? false);
  } finally {
    engine.dispose();
  }
}

function printResult(result: GenerationResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  process.stdout.write('\n');
  process.stderr.write(`${formatStats(result.stats)}\n`);
}

export function formatStats(stats: GenerationStats): string {
  const lines = [
    [
      `${stats.generatedTokens} tokens (${stats.stopReason})`,
      `prompt ${stats.promptTokens} tok at ${stats.prefillTokensPerSecond.toFixed(0)} tok/s`,
      `decode ${stats.decodeTokensPerSecond.toFixed(1)} tok/s`,
      `first token ${stats.timeToFirstTokenMs.toFixed(1)} ms`,
    ].join(' · '),
  ];
  if (stats.thinkingEnd) lines.push(`thinking: ${stats.thinkingTokens} tokens, ended ${stats.thinkingEnd}`);
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
