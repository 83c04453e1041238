/** `tachyon make-model`: write a seeded random-weight GGUF (tests and cost measurements need no downloads). */
import type { Command } from 'commander';
import { Option } from 'commander';
import { makeModel, type ModelPresetName, type ModelQuant } from '../gguf/make-model.js';
import { integer } from './options.js';
import { progressBar } from './progress.js';

export function registerMakeModel(program: Command): void {
  program
    .command('make-model')
    .description('write a seeded random-weight Llama-architecture model with a built-in vocabulary')
    .requiredOption('-o, --out <path>', 'where to write the GGUF file')
    .addOption(new Option('--preset <name>', 'model shape').choices(['tiny', 'qwen2.5-0.5b']).default('tiny'))
    .addOption(new Option('--quant <type>', 'weight type of the matrices').choices(['f16', 'q8_0']).default('f16'))
    .option('--seed <n>', 'weights seed', integer(0, 2 ** 32 - 1), 0)
    .action(async (flags: { out: string; preset: ModelPresetName; quant: ModelQuant; seed: number }) => {
      const bar = progressBar(`writing ${flags.preset}`);
      const result = await makeModel({ ...flags, onProgress: (fraction) => bar.update(fraction) });
      bar.stop();
      process.stdout.write(`${result.path}: ${result.parameterCount.toLocaleString('en-US')} parameters, vocabulary ${result.vocabSize}, ${(result.bytes / 2 ** 20).toFixed(1)} MiB\n`);
    });
}
