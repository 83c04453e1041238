/** `tachyon bench serve` end to end on the testbed, Tachyon side only (llama-server is built separately). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tachyon } from './helpers/cli.js';
import { scratchDir } from './helpers/models.js';

test('bench serve --no-llama measures tachyon serve with and without speculation and writes its report', async () => {
  const dir = scratchDir();
  const result = await tachyon('bench', 'serve', '--no-llama', '--concurrency', '1,2', '--rounds', '2', '--requests', '2', '--max-tokens', '8', '-n', '2', '--threads', '1', '--json', '--report', dir);
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as { concurrency: Record<string, Record<string, number>>; ms_per_decode: number };
  assert.deepEqual(Object.keys(summary.concurrency), ['1', '2']);
  for (const row of Object.values(summary.concurrency)) {
    assert.ok(row.tachyon_tps > 0 && row.tachyon_spec_tps > 0);
    assert.ok(row.ttft_p50_ms > 0 && row.ttft_p99_ms >= row.ttft_p50_ms);
    assert.ok(row.itl_p50_ms > 0 && row.itl_p99_ms >= row.itl_p50_ms);
    assert.equal(row.llama_tps, undefined);
  }
  assert.ok(summary.ms_per_decode > 0);
  type Level = { tokens: number; requests: number; tokensPerSecond: number; roundsTokensPerSecond: number[]; phases: Record<string, number> };
  const report = JSON.parse(readFileSync(join(dir, 'bench-serve.json'), 'utf8')) as { details: { tachyon: Record<string, Level>; tachyon_spec: Record<string, Level> } };
  // Each level says where the engine loop spent its time: shares of the level's wall time, decoding among them.
  for (const setup of [report.details.tachyon, report.details.tachyon_spec]) {
    for (const { phases } of Object.values(setup)) {
      assert.deepEqual(Object.keys(phases), ['scheduling', 'batching', 'decoding', 'accepting']);
      assert.ok(phases.decoding > 0);
      const total = Object.values(phases).reduce((a, b) => a + b, 0);
      assert.ok(Object.values(phases).every((share) => share >= 0) && total <= 1, JSON.stringify(phases));
    }
  }
  const rounds = report.details.tachyon['2'].roundsTokensPerSecond;
  assert.equal(rounds.length, 2);
  assert.equal(report.details.tachyon['2'].tokensPerSecond, Math.min(...rounds), 'of two rounds, the lower is the median');
  assert.equal(report.details.tachyon['2'].requests, 2);
  assert.equal(report.details.tachyon['2'].tokens, 16, 'two greedy requests of 8 tokens');
  assert.match(readFileSync(join(dir, 'bench-serve.svg'), 'utf8'), /^<svg/);
  assert.match(readFileSync(join(dir, 'bench-serve.md'), 'utf8'), /\| 2 \|/);
  assert.match(readFileSync(join(dir, 'bench-serve.md'), 'utf8'), /\| tachyon_spec \| 2 \| [\d.]+% \| [\d.]+% \| [\d.]+% \| [\d.]+% \| [\d.]+% \|/, 'the phase table');
  assert.match(readFileSync(join(dir, 'bench-serve.md'), 'utf8'), /Prompts repeated/, '2 prompts for 8 requests');
});

test('bench serve names a missing llama-server instead of failing later', async () => {
  const result = await tachyon('bench', 'serve', '--llama-server', '/nonexistent/llama-server', '--concurrency', '1');
  assert.equal(result.code, 2);
  assert.match(result.stderr, /no llama-server at \/nonexistent\/llama-server/);
});

test('bench serve reports a server that will not start, measures the rest, and exits 1', async () => {
  const dir = scratchDir();
  const result = await tachyon('bench', 'serve', '--llama-server', '/bin/false', '--setups', 'tachyon,llama', '--concurrency', '1', '--requests', '1', '--max-tokens', '4', '-n', '1', '--threads', '1', '--json', '--report', dir);
  assert.equal(result.code, 1, result.stderr);
  const summary = JSON.parse(result.stdout) as { concurrency: Record<string, Record<string, number>>; failures: string[] };
  assert.ok(summary.concurrency['1'].tachyon_tps > 0);
  assert.equal(summary.concurrency['1'].tachyon_spec_tps, undefined, 'not among --setups');
  assert.equal(summary.concurrency['1'].llama_tps, undefined);
  assert.equal(summary.failures.length, 1);
  assert.match(summary.failures[0], /^llama: /);
  assert.match(readFileSync(join(dir, 'bench-serve.md'), 'utf8'), /Not measured:\n\n- llama: /);
});

test('bench serve refuses an unknown setup', async () => {
  const result = await tachyon('bench', 'serve', '--no-llama', '--setups', 'tachyon,vllm');
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--setups: unknown setup "vllm"/);
});
