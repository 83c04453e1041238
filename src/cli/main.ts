/** The `tachyon` command line. */
import { Command, CommanderError } from 'commander';
import { reportFatal } from './errors.js';
import { registerInspect } from './inspect.js';
import { registerMakeModel } from './make-model.js';
import { registerRun } from './run.js';
import { registerBench } from './bench.js';
import { registerCalibrate } from './calibrate.js';
import { registerServe } from './serve.js';
import { registerChat } from './chat.js';
import { registerCache } from './cache.js';
import { watchStdout } from './stdout.js';

export function buildProgram(): Command {
  const program = new Command('tachyon')
    .description('Lossless LLM inference acceleration on llama.cpp')
    .version('0.1.0')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text.startsWith('error:') ? `tachyon: ${text}` : text) });
  registerRun(program);
  registerChat(program);
  registerInspect(program);
  registerMakeModel(program);
  registerBench(program);
  registerCalibrate(program);
  registerServe(program);
  registerCache(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  watchStdout();
  try {
    await buildProgram().parseAsync([...argv], { from: 'user' });
  } catch (error) {
    // Commander already printed its one-line message (unknown flag, missing argument, --help).
    if (error instanceof CommanderError) process.exit(error.exitCode);
    reportFatal(error);
  }
}
