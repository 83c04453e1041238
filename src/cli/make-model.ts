/**
 * `tachyon make-model`: write a seeded random-weight GGUF (tests and cost measurements need no
 * downloads), or, with --embed, a small model embedded exactly in a larger shape (trained
 * behaviour at a realistic cost).
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { EMBED_SHAPES, type EmbedShapeName, embedModel } from '../gguf/embed.js';
import { makeModel, type ModelPresetName, type ModelQuant } from '../gguf/make-model.js';
import { UsageError } from './errors.js';
import { integer } from './options.js';
import { progressBar } from './progress.js';

interface MakeModelFlags {
  out: string;
  preset: ModelPresetName;
  quant: ModelQuant;
  seed: number;
  embed?: string;
  shape?: EmbedShapeName;
}

export function registerMakeModel(program: Command): void {
  program
    .command('make-model')
    .description('write a seeded random-weight Llama-architecture model with a built-in vocabulary, or embed a small model in a larger shape')
    .requiredOption('-o, --out <path>', 'where to write the GGUF file')
    .addOption(new Option('--preset <name>', 'model shape').choices(['tiny', 'qwen2.5-0.5b']).default('tiny'))
    .addOption(new Option('--quant <type>', 'weight type of the matrices').choices(['f16', 'q8_0']).default('f16'))
    .option('--seed <n>', 'weights seed', integer(0, 2 ** 32 - 1), 0)
    .option('--embed <small.gguf>', 'embed this llama model exactly (same function) in the shape given by --shape')
    .addOption(new Option('--shape <name>', 'shape for --embed: m = d 1024, 24 layers, 16/4 heads, FFN 4096; s = d 512, 8 layers, 8/2 heads, FFN 1536').choices(Object.keys(EMBED_SHAPES)))
    .action(async (flags: MakeModelFlags, command: Command) => {
      if (flags.embed === undefined) {
        if (flags.shape !== undefined) throw new UsageError('--shape needs --embed SMALL.gguf');
        const bar = progressBar(`writing ${flags.preset}`);
        const result = await makeModel({ ...flags, onProgress: (fraction) => bar.update(fraction) });
        bar.stop();
        process.stdout.write(`${result.path}: ${result.parameterCount.toLocaleString('en-US')} parameters, vocabulary ${result.vocabSize}, ${(result.bytes / 2 ** 20).toFixed(1)} MiB\n`);
        return;
      }
      for (const random of ['preset', 'seed']) {
        if (command.getOptionValueSource(random) === 'cli') throw new UsageError(`--${random} does not apply to --embed (the weights come from the embedded model)`);
      }
      if (flags.shape === undefined) throw new UsageError(`--embed needs --shape (${Object.keys(EMBED_SHAPES).join(' or ')})`);
      const bar = progressBar(`embedding in shape ${flags.shape}`);
      const result = await embedModel({ source: flags.embed, shape: EMBED_SHAPES[flags.shape], shapeName: flags.shape, out: flags.out, quant: flags.quant, onProgress: (fraction) => bar.update(fraction) });
      bar.stop();
      process.stdout.write(`${result.path}: ${flags.embed} embedded in shape ${flags.shape}, ${result.parameterCount.toLocaleString('en-US')} parameters, ${(result.bytes / 2 ** 20).toFixed(1)} MiB\n`);
    });
}
