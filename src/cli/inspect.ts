/** `tachyon inspect`: what a GGUF file holds, read in TypeScript (no weights are loaded). */
import type { Command } from 'commander';
import { describeModel, readGgufHeader } from '../gguf/reader.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('print the metadata of a GGUF model file')
    .argument('<path>', 'GGUF model file')
    .option('--json', 'print JSON')
    .action(async (path: string, flags: { json?: boolean }) => {
      const info = await readGgufHeader(path);
      const description = describeModel(info);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ path, version: info.version, tensors: info.tensors.length, ...description })}\n`);
        return;
      }
      const rows: [string, unknown][] = [
        ['file', path],
        ['GGUF version', info.version],
        ['architecture', description.architecture],
        ['name', description.name],
        ['parameters', description.parameterCount.toLocaleString('en-US')],
        ['tensors', info.tensors.length],
        ['context length', description.contextLength],
        ['embedding size', description.embeddingLength],
        ['layers', description.blockCount],
        ['heads / KV heads', `${description.headCount} / ${description.headCountKv}`],
        ['feed-forward size', description.feedForwardLength],
        ['vocabulary', `${description.vocabSize} (${description.tokenizerModel ?? 'no tokenizer'})`],
        ['BOS / EOS / EOT', `${description.bosTokenId} / ${description.eosTokenId} / ${description.eotTokenId ?? '-'}`],
        ['chat template', description.chatTemplate ? `${description.chatTemplate.length} chars` : 'none'],
      ];
      for (const [label, value] of rows) process.stdout.write(`${label.padEnd(18)} ${value ?? '-'}\n`);
    });
}
