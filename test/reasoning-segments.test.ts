/** Thinking/answer split from the model's tokens, on the testbed (which thinks in `<think>` … `</think>`). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { ThinkingSegments, type ThinkingTagTokens } from '../src/reasoning/segments.js';
import { TrimmedSplitText, trimSplitText } from '../src/reasoning/presentation.js';
import type { GenerationChunk, GenerationResult } from '../src/generate/generate.js';
import { testbedPrompts } from './helpers/models.js';

test('emitted text that lags the tokens is split by its offset in the raw text, tags excluded', () => {
  const tags: ThinkingTagTokens = { open: 6, close: 7 };
  const segments = new ThinkingSegments(tags, [1, 3]);
  segments.push(6, '<think>');
  segments.push(100, 'We add.');
  segments.push(7, '</think>');
  segments.push(101, 'The answer');
  // The loop emits text in pieces that cut through tags (a stop string or UTF-8 character was pending).
  assert.deepEqual(segments.take('<thi'), { reasoning: '', content: '' });
  assert.deepEqual(segments.take('nk>We'), { reasoning: 'We', content: '' });
  assert.deepEqual(segments.take(' add.</think>The'), { reasoning: ' add.', content: 'The' });
  assert.equal(segments.thinkingTokens, 1);
  assert.equal(segments.thinkingEnd, 'natural');
  assert.throws(() => segments.take(' answer and more'), /runs past/);
});

test('a prompt that ends inside an open thinking section starts in thinking; a forced close says who closed it', () => {
  const tags: ThinkingTagTokens = { open: 6, close: 7 };
  assert.equal(new ThinkingSegments(tags, [1, 6, 7, 4]).inThinking, false);
  const segments = new ThinkingSegments(tags, [1, 4, 6, 18]);
  assert.equal(segments.inThinking, true);
  assert.equal(segments.thinkingEnd, 'unfinished');
  segments.push(100, 'So');
  segments.push(7, '</think>', 'budget');
  assert.equal(segments.thinkingEnd, 'budget');
  assert.deepEqual(segments.take('So</think>'), { reasoning: 'So', content: '' });
});

test('trimmed presentation: streamed pieces join to each part trimmed, however the text is cut', () => {
  const reasoning = '\nWe add.\n \nSo 132.\n';
  const content = '\nThe answer is 132.\n';
  const whole = trimSplitText({ reasoning, content });
  assert.deepEqual(whole, { reasoning: 'We add.\n \nSo 132.', content: 'The answer is 132.' });
  for (let cut = 0; cut <= reasoning.length; cut++) {
    for (let step = 1; step <= 3; step++) {
      const trimmed = new TrimmedSplitText();
      const shown = { reasoning: '', content: '' };
      const pieces = (text: string, from: number) => [text.slice(0, from), ...Array.from({ length: Math.ceil((text.length - from) / step) }, (_, i) => text.slice(from + i * step, from + (i + 1) * step))];
      for (const piece of pieces(reasoning, cut)) shown.reasoning += trimmed.push({ reasoning: piece, content: '' }).reasoning;
      for (const piece of pieces(content, Math.min(cut, content.length))) shown.content += trimmed.push({ reasoning: '', content: piece }).content;
      assert.deepEqual(shown, whole, `cut at ${cut}, pieces of ${step}`);
    }
  }
  // Whitespace is held only while it might be trailing: the next word brings it out.
  const trimmed = new TrimmedSplitText();
  assert.equal(trimmed.push({ reasoning: 'a\n', content: '' }).reasoning, 'a');
  assert.equal(trimmed.push({ reasoning: '\nb', content: '' }).reasoning, '\n\nb');
});

describe('thinking segments on the testbed', () => {
  let engine: Engine;
  /** The testbed's tag tokens, as the engine's tokenizer sees them (llama.cpp lives in the engine's worker only). */
  let tags: ThinkingTagTokens;
  before(async () => {
    engine = await Engine.load({ gpu: 'cpu' });
    const skipBos = engine.info.model.specialTokens.addBos ? 1 : 0;
    const [open] = (await engine.tokenize('<think>')).slice(skipBos);
    const [close] = (await engine.tokenize('</think>')).slice(skipBos);
    tags = { open, close };
  });
  after(() => engine.dispose());

  async function streamed(prompt: string, options: Parameters<Engine['generate']>[1]): Promise<{ chunks: GenerationChunk[]; result: GenerationResult }> {
    const iterator = engine.generate(prompt, options);
    const chunks: GenerationChunk[] = [];
    for (let step = await iterator.next(); ; step = await iterator.next()) {
      if (step.done) return { chunks, result: step.value };
      chunks.push(step.value);
    }
  }

  test('chunks and the result split thinking from the answer; thinking tokens are counted', async () => {
    const { chunks, result } = await streamed(testbedPrompts.reasoning, { maxTokens: 400, speculation: 'off' });
    assert.equal(result.text, `<think>${result.reasoning}</think>${result.content}`);
    assert.match(result.reasoning, /^\nWe need to compute 47 \+ 85\.\n[^]*So 47 \+ 85 = 132\.\n/);
    assert.equal(result.content, '\nThe answer is 132.');
    assert.equal(chunks.map((c) => c.reasoning).join(''), result.reasoning);
    assert.equal(chunks.map((c) => c.content).join(''), result.content);
    assert.equal(result.stats.thinkingTokens, result.tokens.indexOf(tags.close) - result.tokens.indexOf(tags.open) - 1);
    assert.equal(result.stats.thinkingEnd, 'natural');
  });

  test('a prompt that opens <think> for the model starts in thinking', async () => {
    const result = await engine.complete(`${testbedPrompts.reasoning}<think>\n`, { maxTokens: 400, speculation: 'off' });
    assert.ok(!result.text.includes('<think>'));
    assert.match(result.reasoning, /^We need to compute 47 \+ 85\./);
    assert.equal(result.content, '\nThe answer is 132.');
    assert.equal(result.stats.thinkingEnd, 'natural');
  });

  test('generation that stops inside thinking is unfinished, and a stop string cuts the reasoning', async () => {
    const cut = await engine.complete(testbedPrompts.reasoning, { maxTokens: 20, speculation: 'off' });
    assert.equal(cut.stats.thinkingEnd, 'unfinished');
    assert.equal(cut.stats.thinkingTokens, 19);
    assert.equal(cut.content, '');
    const stopped = await engine.complete(testbedPrompts.reasoning, { maxTokens: 400, stop: ['So 47'], speculation: 'off' });
    assert.equal(stopped.stats.stopReason, 'stop');
    assert.equal(stopped.reasoning, '\nWe need to compute 47 + 85.\nOnes: 7 + 5 = 12. Write 2, carry 1.\nTens: 4 + 8 = 12, 12 + 1 = 13. Write 13.\n');
  });

  test('a generation without thinking is all answer', async () => {
    const result = await engine.complete(testbedPrompts.story, { maxTokens: 30, speculation: 'off' });
    assert.equal(result.content, result.text);
    assert.equal(result.reasoning, '');
    assert.equal(result.stats.thinkingTokens, 0);
    assert.equal('thinkingEnd' in result.stats, false);
  });
});
