/** `tachyon bench decode` / `bench agreement`: statistics, the chart, and short real runs of the CLI. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barChartSvg } from '../src/bench/chart.js';
import { benchContextSize, peerInstalled } from '../src/bench/decode.js';
import { readPrompts } from '../src/bench/agreement.js';
import { median, ratio, summarize } from '../src/bench/stats.js';
import { scratchDir } from './helpers/models.js';
import { tachyon } from './helpers/cli.js';

test('median, summary and ratio', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.deepEqual(summarize([5, 1, Number.NaN, 3]), { median: 3, min: 1, max: 5, n: 3 });
  assert.equal(ratio(3, 2), 1.5);
  assert.equal(ratio(3, null), null);
  assert.equal(ratio(3, 0), null);
});

test('the context holds the prompt and the generated tokens', () => {
  assert.equal(benchContextSize(128, 256), 512);
  assert.equal(benchContextSize(100, 100), 256);
  assert.ok(benchContextSize(1000, 24) >= 1025);
});

test('the chart is one SVG document with a bar per side and group', () => {
  const svg = barChartSvg('title <&>', 'sub', [
    { title: 'prefill', unit: 'tokens/s', bars: [{ label: 'a', median: 10, min: 8, max: 12, color: '#000' }, { label: 'b', median: 5, color: '#999' }] },
    { title: 'decode', unit: 'tokens/s', bars: [{ label: 'a', median: 1, color: '#000' }] },
  ]);
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.equal(svg.match(/<rect /g)?.length, 1 + 3);
  assert.match(svg, /title &lt;&amp;&gt;/);
});

test('prompts are read from JSONL', async () => {
  const file = join(scratchDir(), 'prompts.jsonl');
  writeFileSync(file, '{"prompt": "one"}\n{"text": "two"}\n\n{"prompt": "three"}\n');
  assert.deepEqual(await readPrompts(file, 2), ['one', 'two']);
  writeFileSync(file, '{"other": 1}\n');
  await assert.rejects(readPrompts(file, 2), /no "prompt" or "text" field/);
});

test('bench decode measures both sides on the same prompt and reports medians and ratios', async () => {
  const dir = scratchDir();
  const result = await tachyon('bench', 'decode', '--runs', '2', '--prompt-tokens', '24', '--tokens', '12', '--threads', '1', '--json', '--report', dir);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as Record<string, unknown> & { samples: { side: string }[] };
  assert.equal(report.runs, 2);
  assert.equal(report.threads, 1);
  assert.equal(report.prompt_tokens, 24);
  assert.ok((report.tachyon_decode_tps as number) > 0);
  assert.ok((report.tachyon_prefill_tps as number) > 0);
  assert.match(result.stderr, /run 1\/2 tachyon/);
  if (peerInstalled()) {
    assert.ok((report.peer_decode_tps as number) > 0);
    assert.ok((report.peer_prefill_tps as number) > 0);
    // The report rounds the rates it prints; the ratio comes from the unrounded ones.
    const fromPrinted = (report.tachyon_decode_tps as number) / (report.peer_decode_tps as number);
    assert.ok(Math.abs((report.ratio as number) - fromPrinted) <= 1e-3 * fromPrinted, `ratio ${report.ratio} vs ${fromPrinted}`);
    assert.equal(typeof report.prefill_ratio, 'number');
    assert.deepEqual(report.samples.map((s) => s.side).sort(), ['peer', 'peer', 'tachyon', 'tachyon']);
    // Same binaries, same prompt, greedy: the very first token must agree.
    assert.ok((report.greedy_agreement as { matching_prefix: number }).matching_prefix >= 1);
  } else {
    assert.equal(report.ratio, null);
    assert.match(String(report.peer_note), /not installed/);
  }
  assert.match(readFileSync(join(dir, 'bench-decode.svg'), 'utf8'), /<svg /);
  assert.equal(JSON.parse(readFileSync(join(dir, 'bench-decode.json'), 'utf8')).runs, 2);
});

test('bench decode --no-peer measures Tachyon only and prints a table', async () => {
  const result = await tachyon('bench', 'decode', '--no-peer', '--runs', '1', '--prompt-tokens', '16', '--tokens', '8', '--threads', '1');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^tachyon\s+[\d.]+ \(/m);
  assert.doesNotMatch(result.stdout, /^ratio/m);
});

test('bench decode rejects a model that does not exist with one line', async () => {
  const result = await tachyon('bench', 'decode', '--model', join(scratchDir(), 'missing.gguf'), '--runs', '1');
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /model file not found/);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
});

test('bench agreement of the CPU backend with itself is total', async () => {
  const result = await tachyon('bench', 'agreement', '--gpu', 'cpu', '--reference', 'cpu', '--count', '2', '--tokens', '16', '--threads', '1', '--json');
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { identical_fraction: number; identical_generations: number; prompts: { matching_prefix: number; of: number }[] };
  assert.equal(report.identical_fraction, 1);
  assert.equal(report.identical_generations, 2);
  assert.deepEqual(report.prompts.map((p) => p.of), [16, 16]);
});
