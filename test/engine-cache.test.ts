/**
 * The KV prefix cache inside the engine loop: a repeated prefix is restored, not recomputed, and
 * the output is the recompute's; salts isolate tenants; the next turn of a chat hits the blocks of
 * the previous answer; a request preempted under KV pressure is swapped out to a tier and back;
 * the disk tier outlives the engine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { readJsonLines } from '../src/bench/jsonl.js';
import { generateAll } from '../src/generate/generate.js';
import { projectRoot, scratchDir } from './helpers/models.js';
import { benchPrompts, solo, together } from './helpers/engine.js';

async function rewritePrompt(): Promise<string> {
  const [{ row }] = await readJsonLines(join(projectRoot, 'bench', 'prompts', 'rewrite.jsonl'));
  return String(row.chat_prompt);
}

const greedy = { maxTokens: 24, speculation: 'off' as const };

test('a repeated prompt is restored from RAM with the same output; another salt shares nothing', async () => {
  const engine = await Engine.load({ gpu: 'cpu', cache: { tiers: ['ram'] } });
  try {
    const prompt = await rewritePrompt();
    const cold = await engine.complete(prompt, greedy);
    assert.ok(cold.stats.promptTokens >= 128, `a prompt of several blocks (${cold.stats.promptTokens} tokens)`);
    const warm = await engine.complete(prompt, greedy);
    assert.deepEqual(warm.tokens, cold.tokens);
    const afterWarm = (await engine.cacheStats())!;
    assert.ok(cold.stats.promptTokens % afterWarm.blockSize > 1, 'the prompt ends inside a block');
    assert.equal(afterWarm.restoredTokens, cold.stats.promptTokens - 1, 'whole blocks and the partial one, all but the last prompt token (decoded again for its logits)');
    assert.equal(cold.stats.cachedPromptTokens, 0);
    assert.equal(warm.stats.cachedPromptTokens, afterWarm.restoredTokens, 'the result says how much of its prompt was reused');

    const other = await engine.complete(prompt, { ...greedy, cacheSalt: 'tenant-b' });
    assert.deepEqual(other.tokens, cold.tokens);
    assert.equal(other.stats.cachedPromptTokens, 0);
    assert.equal((await engine.cacheStats())!.restoredTokens, afterWarm.restoredTokens, 'nothing restored across salts');
    assert.deepEqual(await engine.kvAudit(), [], 'restores left no cells behind');
  } finally {
    await engine.dispose();
  }
});

test("a chat's next turn restores the blocks of the previous answer too", async () => {
  const engine = await Engine.load({ gpu: 'cpu', cache: { tiers: ['ram'], blockSize: 16 } });
  try {
    const question = { role: 'user' as const, content: 'Write a long bedtime story about a shy crow called Otto.' };
    const first = await generateAll(engine.chat([question], { maxTokens: 96, speculation: 'off' }));
    const turn = [question, { role: 'assistant' as const, content: first.text }, { role: 'user' as const, content: 'And then?' }];
    const before = (await engine.cacheStats())!.restoredTokens;
    const second = await generateAll(engine.chat(turn, { maxTokens: 8, speculation: 'off' }));
    const restored = (await engine.cacheStats())!.restoredTokens - before;
    assert.ok(restored > first.stats.promptTokens, `restored ${restored} tokens, beyond the first prompt's ${first.stats.promptTokens}`);
    assert.ok(second.tokens.length > 0);
  } finally {
    await engine.dispose();
  }
});

test('under KV pressure a preempted request is swapped out to the cache and restored, not recomputed; outputs do not change', async () => {
  const prompts = (await benchPrompts()).slice(0, 4);
  const options = { maxTokens: 120, ignoreEos: true, speculation: 'off' as const };
  const plain = await Engine.load({ gpu: 'cpu' });
  const alone = await solo(plain, prompts, options).finally(() => plain.dispose());
  // Four prompts of 20–40 tokens growing by 120 each need more than 512 cells at once.
  const engine = await Engine.load({ gpu: 'cpu', maxSequences: 4, contextSize: 512, kvCells: 512, cache: { tiers: ['ram'], blockSize: 16 } });
  try {
    assert.deepEqual(await together(engine, prompts, () => options), alone);
    // All four were submitted at once, before any block was stored: only a preempted request's
    // own blocks (prompt and generated tokens) can have been restored.
    const { restoredTokens } = (await engine.cacheStats())!;
    assert.ok(restoredTokens >= 16, `${restoredTokens} tokens swapped back in`);
    assert.deepEqual(await engine.kvAudit(), []);
  } finally {
    await engine.dispose();
  }
});

test('the disk tier outlives the engine: a new engine restores what the last one stored, with the same output', async () => {
  const dir = scratchDir();
  const prompt = await rewritePrompt();
  const first = await Engine.load({ gpu: 'cpu', cache: { tiers: ['disk'], dir } });
  const cold = await first.complete(prompt, greedy);
  await first.dispose(); // writes what is queued
  const second = await Engine.load({ gpu: 'cpu', cache: { tiers: ['disk'], dir } });
  try {
    const warm = await second.complete(prompt, greedy);
    assert.deepEqual(warm.tokens, cold.tokens);
    assert.ok((await second.cacheStats())!.restoredTokens > 0);
  } finally {
    await second.dispose();
  }
});
