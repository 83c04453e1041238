/**
 * bench spec on the testbed pair (one short prompt): every report states its regime, the oracle
 * bound per task and, with peers (from a file, or llama-server run live), llama.cpp's best
 * speedup; JSON, Markdown and SVG agree.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mismatchGap, runSpecBench } from '../src/bench/spec.js';
import { Engine } from '../src/engine/engine.js';
import { argmax, projectRoot, scratchDir, testbedDraft, testbedPrompts, testbedTarget } from './helpers/models.js';

const scratch = scratchDir();
after(() => rm(scratch, { recursive: true, force: true }));

test('bench spec reports the regime, the oracle bound and the best peer', async () => {
  const peersFile = join(scratch, 'peers.json');
  const peers = { plain: 100, 'draft-simple': 130, 'ngram-cache': 90 };
  await writeFile(peersFile, JSON.stringify({
    configs: Object.fromEntries(Object.entries(peers).map(([name, tps]) => [name, { perTask: { reasoning: { median_tps: tps, speedup_vs_plain: tps / 100 } } }])),
  }));
  const reportDir = join(scratch, 'report');
  const lines: string[] = [];
  const result = await runSpecBench({
    model: testbedTarget, draftModel: testbedDraft, gpu: 'cpu', threads: 1, tasks: ['reasoning'], n: 1, maxTokens: 48,
    configs: ['auto'], peersFile, reportDir, onProgress: (line) => lines.push(line),
  });
  assert.ok(result.ms_per_decode > 0);
  assert.deepEqual(Object.keys(result.cost_curve), ['2', '8', '32', '64']);
  const costs = Object.values(result.cost_curve);
  // The curve keeps the dips kernels have (a size that fills the threads' tiles can cost less than
  // a smaller one), but no batch is cheaper than one token or dearer than 3 per token.
  const sizes = Object.keys(result.cost_curve).map(Number);
  assert.ok(costs.every((c, i) => c >= 1 && c <= 3 * sizes[i]) && costs[3] > costs[0], `c(n) ${costs}`);
  const task = result.tasks.reasoning;
  assert.equal(task.identical_rate, 1);
  // Plain decoding is one of the oracle's schedules, so the bound is never below it.
  assert.ok(task.oracle_speedup !== null && task.oracle_speedup >= 1, `oracle ${task.oracle_speedup}`);
  assert.ok(task.oracle_tau !== null && task.oracle_tau > 1, `oracle τ ${task.oracle_tau}`);
  assert.ok(Math.abs(task.realized_vs_oracle! - task.speedup! / task.oracle_speedup) < 0.002);
  assert.equal(task.peer_best_speedup, 1.3);
  assert.ok(lines.some((line) => line.startsWith('measuring the regime')));
  const json = JSON.parse(await readFile(join(reportDir, 'spec-report.json'), 'utf8')) as typeof result;
  assert.equal(json.ms_per_decode, result.ms_per_decode);
  assert.match(await readFile(join(reportDir, 'spec-report.md'), 'utf8'), /Regime \(re-measured in this run\): [\d.]+ ms per decode, c\(2\) [\d.]+, c\(8\)[^\n]*\n[\s\S]*\| oracle bound \|/);
  assert.match(await readFile(join(reportDir, 'spec-speedup.svg'), 'utf8'), /oracle bound/);
});

/** A llama-server already built here (never built by the tests: that takes minutes). */
function builtLlamaServer(): string | undefined {
  if (process.env.TACHYON_LLAMA_SERVER) return process.env.TACHYON_LLAMA_SERVER;
  const root = join(projectRoot, '.cache', 'llama.cpp');
  if (!existsSync(root)) return undefined;
  return readdirSync(root).map((commit) => join(root, commit, 'build', 'bin', 'llama-server')).find((path) => existsSync(path));
}

const llamaServer = builtLlamaServer();

test('bench spec runs llama.cpp peers live in the same rotation, from the same prompt tokens', { skip: llamaServer ? false : 'no llama-server built (bench/peers/build-llama-cpp.sh)' }, async () => {
  const result = await runSpecBench({
    model: testbedTarget, draftModel: testbedDraft, gpu: 'cpu', threads: 1, tasks: ['reasoning', 'longgen'], n: 2, maxTokens: 400,
    configs: ['auto'], llamaPeers: ['plain', 'ngram-mod'], llamaServer,
  });
  assert.equal(result.peers?.source, 'same run');
  for (const task of Object.values(result.tasks)) {
    assert.deepEqual(Object.keys(task.peers ?? {}), ['plain', 'ngram-mod']);
    // The same tokens in, greedy, one token per decode on both sides: llama.cpp's plain decoding
    // writes what ours does, also where both stop at the end of generation (the reasoning answers
    // end within 400 tokens; llama-server lists the end token, Tachyon does not).
    assert.equal(task.peers!.plain.identical_to_tachyon_plain, 1);
    assert.equal(task.peers!.plain.speedup, 1);
    assert.ok(task.peers!['ngram-mod'].median_tps! > 0);
    assert.ok(task.vs_best_peer! > 0);
  }
});

test('bench spec names a llama-server that is not there', async () => {
  await assert.rejects(
    runSpecBench({ model: testbedTarget, gpu: 'cpu', threads: 1, tasks: ['reasoning'], n: 1, maxTokens: 4, configs: ['auto'], llamaPeers: ['plain'], llamaServer: '/nonexistent/llama-server' }),
    /llama-server \/nonexistent\/llama-server does not exist/,
  );
});

test('a mismatch is evaluated again in the speculative run\'s own decode batches', async () => {
  const engine = await Engine.load({ model: testbedTarget, gpu: 'cpu', threads: 1 });
  try {
    const prompt = await engine.tokenize(testbedPrompts.reasoning);
    const { tokens: plain } = await engine.complete(prompt, { maxTokens: 24, speculation: 'off' });
    // A position where plain decoding's choice is clear, and an output that takes the runner-up there.
    let at = 8;
    let runnerUp = -1;
    for (; at < plain.length; at++) {
      const logits = await engine.logitsAfter(prompt, plain.slice(0, at));
      runnerUp = argmax(logits.map((value, token) => (token === plain[at] ? -Infinity : value)));
      if (logits[plain[at]] - logits[runnerUp] > 0.5) break;
    }
    const other = [...plain.slice(0, at), runnerUp];
    // Its steps: a chain of the next three tokens after each one emitted, a wrong sibling beside the first.
    const trees = [];
    for (let root = 0; root < at; root += 4) {
      const chain = other.slice(root + 1, root + 4);
      trees.push({ tokens: [other[root], ...chain, chain[0] + 1], parents: [-1, ...chain.map((_, i) => i), 0] });
    }
    const mismatch = await mismatchGap(engine, prompt, plain, other, trees);
    assert.equal(mismatch.at, at);
    assert.ok(mismatch.top2Gap > 0.5);
    assert.ok(mismatch.kernelDrift < 0.05, `drift ${mismatch.kernelDrift}`);
    assert.ok(mismatch.rowDrift < 0.1, `row drift ${mismatch.rowDrift}`);
    assert.ok(mismatch.runLead < -0.4, 'batching does not turn a clear choice');
    assert.equal(mismatch.reproduced, false);
    assert.deepEqual(await engine.kvAudit(), []);
  } finally {
    await engine.dispose();
  }
});
