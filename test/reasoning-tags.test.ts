/**
 * Looking up a model's thinking tags (llama.cpp on this thread: kept apart from the files that
 * start an Engine, whose worker owns llama.cpp in its process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { thinkingTagTokens } from '../src/reasoning/segments.js';
import { loadModel, testbedTarget, tinyModelPath } from './helpers/models.js';

test('the tags are looked up by their text', async () => {
  const { tokenizer } = await loadModel(testbedTarget);
  const tags = thinkingTagTokens(tokenizer);
  assert.ok(tags);
  assert.equal(tokenizer.detokenize([tags.open]), '<think>');
  assert.equal(tokenizer.detokenize([tags.close]), '</think>');
});

test('a model without the tag tokens has no thinking; tags asked for explicitly must be tokens', async () => {
  const model = await loadModel(await tinyModelPath());
  assert.equal(thinkingTagTokens(model.tokenizer), undefined);
  assert.throws(() => thinkingTagTokens(model.tokenizer, { open: '<reason>', close: '</reason>' }), /must each be one \(distinct\) token/);
});

