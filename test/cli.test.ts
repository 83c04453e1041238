/** The CLI as a user meets it: the default model answers; bad input gets one clear line and a non-zero exit. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kv, writeGguf } from '../src/gguf/writer.js';
import { GgmlType } from '../src/gguf/types.js';
import { scratchDir, testbedTarget } from './helpers/models.js';
import { tachyon, tachyonIntoClosingPipe } from './helpers/cli.js';

/** One line on stderr that names the problem, and no stack trace. */
function assertCleanFailure(result: { code: number; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0);
  const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('tachyon: no GPU'));
  assert.equal(lines.length, 1, `one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
}

const dir = scratchDir();

test('the embedded default model answers a prompt', async () => {
  const result = await tachyon('run', 'What is 47 + 85?', '--json', '--gpu', 'cpu');
  assert.equal(result.code, 0, result.stderr);
  const output = JSON.parse(result.stdout) as { text: string; tokens: number[]; stats: { stopReason: string; generatedTokens: number } };
  assert.match(output.text, /The answer is 132\./);
  assert.equal(output.stats.stopReason, 'eos');
  assert.equal(output.tokens.length, output.stats.generatedTokens);
});

test('streaming run prints the text and statistics', async () => {
  const result = await tachyon('run', 'What is 47 + 85?', '--max-tokens', '12', '--gpu', 'cpu');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^<think>\nWe need to compute 47 \+ 8/);
  assert.match(result.stderr, /12 tokens \(length\).*tok\/s/);
});

test('a reader that closes the pipe early (`tachyon run … | head`) ends the run quietly', async () => {
  const result = await tachyonIntoClosingPipe(8, 'run', 'Tell me a long story about a dragon', '--max-tokens', '2000', '--gpu', 'cpu');
  assert.equal(result.signal, null, result.stderr);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr.replace(/^tachyon: no GPU.*\n/m, ''), '', 'nothing on stderr: no EPIPE stack trace, no statistics of an abandoned run');
});

test('inspect prints the metadata of a GGUF file', async () => {
  const result = await tachyon('inspect', testbedTarget, '--json');
  assert.equal(result.code, 0, result.stderr);
  const info = JSON.parse(result.stdout) as { architecture: string; vocabSize: number; contextLength: number };
  assert.deepEqual([info.architecture, info.vocabSize, info.contextLength], ['llama', 1024, 1024]);
});

test('a missing model file', async () => {
  assertCleanFailure(await tachyon('run', 'hi', '--model', join(dir, 'nope.gguf')), /model file not found/);
});

test('a file that is not GGUF', async () => {
  const path = join(dir, 'text.gguf');
  writeFileSync(path, 'this is not a model\n'.repeat(100));
  assertCleanFailure(await tachyon('run', 'hi', '--model', path), /not a GGUF file/);
  assertCleanFailure(await tachyon('inspect', path), /not a GGUF file/);
});

test('a truncated GGUF is caught before llama.cpp sees it', async () => {
  const path = join(dir, 'truncated.gguf');
  const bytes = readFileSync(testbedTarget);
  writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  assertCleanFailure(await tachyon('run', 'hi', '--model', path), /truncated GGUF/);
});

test('a GGUF whose header is cut inside the metadata', async () => {
  const path = join(dir, 'header-cut.gguf');
  writeFileSync(path, readFileSync(testbedTarget).subarray(0, 2000));
  assertCleanFailure(await tachyon('run', 'hi', '--model', path), /truncated|GGUF/);
});

test('an unsupported architecture', async () => {
  const path = join(dir, 'alien.gguf');
  await writeGguf(path, {
    metadata: [
      ['general.architecture', kv.string('nosucharch')],
      ['general.name', kv.string('alien')],
    ],
    tensors: [{ name: 'token_embd.weight', dims: [32, 4], type: GgmlType.F32, data: new Float32Array(128) }],
  });
  assertCleanFailure(await tachyon('run', 'hi', '--model', path, '--gpu', 'cpu'), /nosucharch/);
});

test('a prompt longer than the context', async () => {
  const prompt = 'Ella walked and walked until she came to a field of flowers. '.repeat(40);
  assertCleanFailure(await tachyon('run', prompt, '--ctx-size', '64', '--gpu', 'cpu'), /prompt of \d+ tokens does not fit the context of \d+ tokens/);
});

test('unknown flags and bad flag values', async () => {
  assertCleanFailure(await tachyon('run', 'hi', '--no-such-flag'), /unknown option '--no-such-flag'/);
  assertCleanFailure(await tachyon('run', 'hi', '--max-tokens', 'many'), /max-tokens.*integer/);
  assertCleanFailure(await tachyon('frobnicate'), /unknown command/);
  assertCleanFailure(await tachyon('bench', 'spec', '--tasks', 'longgen,nosuch'), /unknown prompt set 'nosuch' \(known: .*longgen/);
  assertCleanFailure(await tachyon('serve', '--port', '0', '--kv', 'per-sequence'), /--kv per-sequence needs --cache off/);
  assertCleanFailure(await tachyon('run', 'hi', '--flash-attn', 'sideways'), /'--flash-attn <mode>' argument 'sideways' is invalid\. Allowed choices are auto, on, off/);
  assertCleanFailure(await tachyon('run', 'hi', '--chat-template-file', '/no/such/template.jinja'), /cannot read the chat template file \/no\/such\/template\.jinja: ENOENT/);
});
