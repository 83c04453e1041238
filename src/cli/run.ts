/** `tachyon run`: stream a generation from the model and print its statistics. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { GenerationResult } from '../generate/generate.js';
import { chatCommand } from './chat.js';
import { UsageError } from './errors.js';
import { stdoutClosed } from './stdout.js';
import { addGenerationFlags, formatStats, loadEngine, samplingFrom, type GenerationFlags } from './generation.js';

interface RunFlags extends GenerationFlags {
  chat?: boolean;
  json?: boolean;
}

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description('generate text from a prompt (streams to stdout, statistics to stderr); no prompt on a terminal: an interactive chat')
    .argument('[prompt]', 'the prompt; read from stdin when omitted (an interactive chat when stdin is a terminal)');
  addGenerationFlags(command)
    .option('--chat', "wrap the prompt as a user message with the model's chat template (default when the model has one)")
    .option('--no-chat', 'use the prompt as raw text')
    .option('--json', 'print one JSON object with text, tokens and stats instead of streaming')
    .action(async (prompt: string | undefined, flags: RunFlags) => {
      if (prompt !== undefined || !process.stdin.isTTY) await runCommand(readPrompt(prompt), flags);
      else if (flags.json) throw new UsageError('--json needs a prompt (an argument or stdin)');
      else await chatCommand(flags);
    });
}

/** The prompt argument, else all of stdin (a trailing newline, as `echo` adds, is not part of it). */
function readPrompt(prompt: string | undefined): string {
  if (prompt !== undefined) return prompt;
  const text = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (text.trim().length === 0) throw new UsageError('no prompt: pass one as an argument or on stdin (stdin was empty)');
  return text;
}

async function runCommand(promptText: string, flags: RunFlags): Promise<void> {
  const engine = await loadEngine(flags);
  try {
    const useChat = flags.chat ?? engine.info.model.chatTemplate !== undefined;
    // A reader that leaves (`| head`) ends the generation: nothing more would be read.
    const options = { ...samplingFrom(flags), signal: stdoutClosed };
    const iterator = useChat ? engine.chat([{ role: 'user', content: promptText }], options) : engine.generate(promptText, options);
    let step = await iterator.next();
    while (!step.done) {
      if (!flags.json) process.stdout.write(step.value.text);
      step = await iterator.next();
    }
    if (!stdoutClosed.aborted) printResult(step.value, flags.json ?? false);
  } finally {
    await engine.dispose();
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
