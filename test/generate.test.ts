/** The generation loop and the engine API on the embedded model: stop strings, limits, abort, chat, stats. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { StopMatcher } from '../src/generate/stop.js';
import { testbedPrompts } from './helpers/models.js';

test('the stop matcher holds back a partial stop string and cuts before a complete one', () => {
  const matcher = new StopMatcher(['So 47']);
  assert.deepEqual(matcher.push('compute. S'), { text: 'compute. ', stopped: false });
  assert.deepEqual(matcher.push('o 4'), { text: '', stopped: false });
  assert.deepEqual(matcher.push('7 + 85'), { text: '', stopped: true });
  const open = new StopMatcher(['END']);
  assert.deepEqual(open.push('the E'), { text: 'the ', stopped: false });
  assert.equal(open.flush(), 'E');
});

describe('engine on the embedded model', () => {
  let engine: Engine;
  before(async () => (engine = await Engine.load({ gpu: 'cpu' })));
  after(() => engine.dispose());

  test('streams chunks whose text adds up to the result, with statistics', async () => {
    const iterator = engine.generate(testbedPrompts.reasoning, { maxTokens: 40, speculation: 'off' });
    let streamed = '';
    let tokens = 0;
    let step = await iterator.next();
    while (!step.done) {
      streamed += step.value.text;
      tokens += step.value.tokens.length;
      step = await iterator.next();
    }
    const result = step.value;
    assert.equal(streamed, result.text);
    assert.equal(tokens, 40);
    assert.equal(result.stats.stopReason, 'length');
    assert.equal(result.stats.generatedTokens, 40);
    assert.ok(result.stats.prefillTokensPerSecond > 0 && result.stats.decodeTokensPerSecond > 0);
    assert.ok(result.stats.timeToFirstTokenMs > 0);
  });

  test('a stop string ends generation before it, and is not part of the text', async () => {
    const full = await engine.complete(testbedPrompts.reasoning, { maxTokens: 300 });
    assert.match(full.text, /So 47 \+ 85 = 132\./);
    const stopped = await engine.complete(testbedPrompts.reasoning, { maxTokens: 300, stop: ['So 47'] });
    assert.equal(stopped.stats.stopReason, 'stop');
    assert.equal(stopped.text, full.text.slice(0, full.text.indexOf('So 47')));
  });

  test('the end-of-generation token ends the answer', async () => {
    const result = await engine.complete(testbedPrompts.reasoning, { maxTokens: 400 });
    assert.equal(result.stats.stopReason, 'eos');
    assert.match(result.text, /The answer is 132\.$/);
  });

  test('an AbortSignal stops a running generation', async () => {
    const controller = new AbortController();
    let chunks = 0;
    const iterator = engine.generate(testbedPrompts.story, { maxTokens: 1000, ignoreEos: true, signal: controller.signal, speculation: 'off' });
    let step = await iterator.next();
    while (!step.done) {
      if (++chunks === 5) controller.abort();
      step = await iterator.next();
    }
    assert.equal(step.value.stats.stopReason, 'abort');
    // The loop runs ahead of this consumer until the cancellation reaches it, before its next step.
    assert.ok(step.value.tokens.length >= 5 && step.value.tokens.length < 1000, `${step.value.tokens.length} tokens`);
  });

  test('chat messages render through the GGUF chat template', async () => {
    const withSystem = await engine.chatPrompt([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What is 47 + 85?' },
    ]);
    assert.deepEqual(withSystem, await engine.tokenize('<|user|>\nBe brief.\n\nWhat is 47 + 85?<|end|>\n<|assistant|>\n'), 'the system message is folded into the user turn');
    const prompt = await engine.chatPrompt([{ role: 'user', content: 'What is 47 + 85?' }]);
    assert.deepEqual(prompt, await engine.tokenize(testbedPrompts.reasoning));
    assert.deepEqual(await engine.userPrompt('What is 47 + 85?'), prompt, 'a user prompt goes through the template when the model has one');
  });

  test("a chat template given to the engine replaces the model's; one that does not parse fails the load clearly", async () => {
    const chatTemplate = '{% for m in messages %}<|user|>\nPlease: {{ m.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}';
    const custom = await Engine.load({ gpu: 'cpu', chatTemplate });
    try {
      assert.equal(custom.info.model.chatTemplate, chatTemplate);
      assert.deepEqual(await custom.userPrompt('What is 47 + 85?'), await custom.tokenize('<|user|>\nPlease: What is 47 + 85?<|end|>\n<|assistant|>\n'));
    } finally {
      await custom.dispose();
    }
    await assert.rejects(Engine.load({ gpu: 'cpu', chatTemplate: '{% for m in messages %' }), /the chat template does not parse/);
  });
});
