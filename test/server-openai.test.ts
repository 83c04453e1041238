/** The official `openai` client against a running `tachyon serve` on the testbed model. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_ID, sseData, startServer, type RunningServer } from './helpers/server.js';
import { join } from 'node:path';
import { readJsonLines } from '../src/bench/jsonl.js';
import { projectRoot, testbedPrompts } from './helpers/models.js';

const question = [{ role: 'user' as const, content: 'What is 47 + 85?' }];
const greedy = { model: MODEL_ID, temperature: 0, max_tokens: 40 };

let running: RunningServer;
let client: OpenAI;

before(async () => {
  running = await startServer();
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(() => running.close());

describe('chat completions', () => {
  test('non-streaming: thinking in reasoning_content, answer in content, usage and speculation extras', async () => {
    const completion = await client.chat.completions.create({ ...greedy, messages: question, max_tokens: 300 });
    const choice = completion.choices[0];
    const message = choice.message as typeof choice.message & { reasoning_content?: string };
    assert.equal(completion.object, 'chat.completion');
    assert.equal(choice.finish_reason, 'stop');
    assert.match(message.reasoning_content ?? '', /^We need to compute 47 \+ 85\.\n[^]*\S$/, 'thinking without the newlines around its tags');
    assert.equal(message.content, 'The answer is 132.', 'the answer without the newline after </think>');
    assert.doesNotMatch(`${message.content}${message.reasoning_content}`, /<\/?think>/);
    const usage = completion.usage!;
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.ok(usage.completion_tokens_details!.reasoning_tokens! > 0);
    assert.ok(usage.completion_tokens_details!.reasoning_tokens! < usage.completion_tokens);
    const extras = (completion as unknown as { tachyon: { tau: number; drafters: Record<string, { accepted: number }> } }).tachyon;
    assert.ok(extras.tau >= 1);
    assert.ok('ngram' in extras.drafters);
  });

  test('reasoning_effort ends the thinking early at the model\'s calibrated thresholds', async () => {
    // A three-number sum: the testbed checks it over and over, and its result settles early.
    const overthought = [{ role: 'user' as const, content: 'What is 87 + 69 + 94?' }];
    const reasoningTokens = async (effort?: 'low') => {
      const completion = await client.chat.completions.create({ ...greedy, messages: overthought, max_tokens: 600, ...(effort ? { reasoning_effort: effort } : {}) });
      assert.match(completion.choices[0].message.content ?? '', /The answer is \d+/, 'the model still answers');
      return completion.usage!.completion_tokens_details!.reasoning_tokens!;
    };
    const full = await reasoningTokens();
    const low = await reasoningTokens('low');
    assert.ok(low < full, `low effort thought ${low} tokens, full ${full}`);
  });

  test('streaming with include_usage: role first, one finish_reason, usage last with no choices, same text as non-streaming', async () => {
    const whole = await client.chat.completions.create({ ...greedy, messages: question });
    const stream = await client.chat.completions.create({ ...greedy, messages: question, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const finishes = chunks.flatMap((chunk) => chunk.choices.filter((choice) => choice.finish_reason !== null));
    assert.equal(finishes.length, 1);
    assert.equal(finishes[0].finish_reason, 'length');
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
    const delta = (chunk: OpenAI.ChatCompletionChunk) => chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
    assert.equal(chunks.map((chunk) => delta(chunk)?.reasoning_content ?? '').join(''), (whole.choices[0].message as { reasoning_content?: string }).reasoning_content);
    assert.equal(chunks.map((chunk) => delta(chunk)?.content ?? '').join(''), whole.choices[0].message.content);
  });

  test('usage.prompt_tokens_details.cached_tokens counts the prompt tokens the prefix cache restored', async () => {
    const caching = await startServer({ cache: { tiers: ['ram'] } });
    try {
      const cachingClient = new OpenAI({ baseURL: `${caching.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const [{ row }] = await readJsonLines(join(projectRoot, 'bench', 'prompts', 'rewrite.jsonl'));
      const rewrite = String(row.prompt);
      const ask = () => cachingClient.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: rewrite }], max_tokens: 8 });
      const cold = (await ask()).usage!;
      const warm = (await ask()).usage!;
      assert.ok(cold.prompt_tokens >= 128, `a prompt of several blocks (${cold.prompt_tokens} tokens)`);
      assert.equal(cold.prompt_tokens_details?.cached_tokens, 0);
      assert.equal(warm.prompt_tokens_details?.cached_tokens, warm.prompt_tokens - 1, 'all but the last prompt token (evaluated again for its logits)');
    } finally {
      await caching.close();
    }
  });

  test('logprobs: one entry per token with its top alternatives, streamed and whole alike', async () => {
    const request = { ...greedy, messages: question, logprobs: true, top_logprobs: 2 };
    const whole = await client.chat.completions.create(request);
    const entries = whole.choices[0].logprobs!.content!;
    assert.equal(entries.length, whole.usage!.completion_tokens);
    assert.equal(entries[0].token, '<think>');
    for (const entry of entries) {
      assert.ok(entry.logprob <= 0);
      assert.equal(entry.top_logprobs.length, 2);
      assert.equal(entry.top_logprobs[0].token, entry.token, 'greedy: the emitted token is the most likely');
      assert.deepEqual(entry.bytes, [...Buffer.from(entry.token)]);
    }
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.deepEqual(
      streamed.map((entry) => entry.token),
      entries.map((entry) => entry.token),
    );
    const plain = await client.chat.completions.create({ ...greedy, messages: question });
    assert.equal(plain.choices[0].logprobs, null, 'none unless asked for');
  });

  test('logit_bias: a banned token never comes (here the thinking tag: the model answers without thinking)', async () => {
    const think = (await running.engine.tokenize('<think>')).at(-1)!;
    const completion = await client.chat.completions.create({ ...greedy, messages: question, max_tokens: 60, logit_bias: { [think]: -100 } });
    const message = completion.choices[0].message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    assert.equal(message.reasoning_content, undefined);
    assert.ok((message.content ?? '').length > 0);
    assert.equal(completion.usage!.completion_tokens_details!.reasoning_tokens, 0);
  });

  test('n choices: each its own sample (a seed repeats them all), usage sums their tokens, the prompt is evaluated once', async () => {
    const story = [{ role: 'user' as const, content: 'Write a long bedtime story about a shy crow called Otto.' }];
    const sharedBefore = running.engine.status().sharedPrefixTokens;
    const sampled = () => client.chat.completions.create({ model: MODEL_ID, messages: story, max_tokens: 16, n: 3, seed: 11 });
    const [a, b] = [await sampled(), await sampled()];
    assert.deepEqual(
      a.choices.map((choice) => choice.index),
      [0, 1, 2],
    );
    const contents = a.choices.map((choice) => choice.message.content);
    assert.deepEqual(
      b.choices.map((choice) => choice.message.content),
      contents,
    );
    assert.ok(new Set(contents).size > 1, 'the choices sample apart');
    assert.equal(a.usage!.completion_tokens, 48);
    assert.ok(running.engine.status().sharedPrefixTokens - sharedBefore >= 4 * (a.usage!.prompt_tokens - 1), 'choices 1 and 2 shared the prompt of choice 0');

    const solo = await client.chat.completions.create({ ...greedy, messages: question, max_tokens: 300 });
    assert.equal(solo.choices[0].message.content, 'The answer is 132.');
    const streamed = ['', ''];
    const finishes = [0, 0];
    for await (const chunk of await client.chat.completions.create({ ...greedy, messages: question, max_tokens: 300, n: 2, stream: true })) {
      for (const choice of chunk.choices) {
        streamed[choice.index] += choice.delta.content ?? '';
        if (choice.finish_reason) finishes[choice.index]++;
      }
    }
    assert.deepEqual(streamed, [solo.choices[0].message.content, solo.choices[0].message.content], 'greedy choices equal a solo run');
    assert.deepEqual(finishes, [1, 1]);
  });

  test('more choices than the server holds at once is a 400 naming n, not a queue-full 429', async () => {
    const small = await startServer({ maxSequences: 2, maxQueued: 2 });
    try {
      const smallClient = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      await assert.rejects(
        smallClient.chat.completions.create({ ...greedy, messages: question, n: 5 }),
        (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'n' && /holds 4 requests at once/.test(error.message),
      );
      assert.equal((await smallClient.chat.completions.create({ ...greedy, messages: question, max_tokens: 4, n: 4 })).choices.length, 4);
    } finally {
      await small.close();
    }
  });

  test('response_format json_schema: after its thinking the model answers in JSON that follows the schema, streamed alike', async () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer' }, pet: { enum: ['cat', 'dog'] } },
      required: ['name', 'age', 'pet'],
      additionalProperties: false,
    };
    const request = {
      ...greedy,
      max_tokens: 400,
      messages: [{ role: 'user' as const, content: 'Describe a person as JSON.' }],
      response_format: { type: 'json_schema' as const, json_schema: { name: 'person', strict: true, schema } },
    };
    const completion = await client.chat.completions.create(request);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    const content = completion.choices[0].message.content ?? '';
    const person = JSON.parse(content) as Record<string, unknown>;
    assert.deepEqual(Object.keys(person), ['name', 'age', 'pet']);
    assert.ok(typeof person.name === 'string' && person.name.length <= 12);
    assert.ok(Number.isInteger(person.age));
    assert.ok(person.pet === 'cat' || person.pet === 'dog');
    // The model thinks first, freely; without the format it then answers in prose: the grammar made the JSON.
    assert.match((completion.choices[0].message as { reasoning_content?: string }).reasoning_content ?? '', /^We need to compute/);
    const free = await client.chat.completions.create({ ...greedy, max_tokens: 400, messages: request.messages });
    assert.throws(() => JSON.parse(free.choices[0].message.content ?? ''));
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) streamed += chunk.choices[0]?.delta.content ?? '';
    assert.equal(streamed, content);
  });

  test('response_format json_object on /v1/completions: after a closed thinking section the text is held to a JSON object from its first token', async () => {
    const prompt = '<|user|>\nGive me a JSON object.<|end|>\n<|assistant|>\n<think>\n</think>\n';
    const completion = await client.completions.create({ model: MODEL_ID, temperature: 0, max_tokens: 100, prompt, response_format: { type: 'json_object' } } as never);
    const text = (completion as OpenAI.Completion).choices[0].text;
    assert.match(text, /^\s*\{\s*"/);
    // The testbed never closes an object it was not trained to write: max_tokens cuts it.
    assert.equal((completion as OpenAI.Completion).choices[0].finish_reason, 'length');
    const free = await client.completions.create({ model: MODEL_ID, temperature: 0, max_tokens: 100, prompt });
    assert.doesNotMatch(free.choices[0].text, /^\s*\{/);
  });

  test('grammar (llama-server\'s field): the answer after the thinking is in the grammar\'s language', async () => {
    const completion = (await client.chat.completions.create({ ...greedy, max_tokens: 300, messages: question, grammar: 'root ::= "yes" | "no" | [0-9]{1,4}' } as never)) as OpenAI.ChatCompletion;
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.match(completion.choices[0].message.content ?? '', /^(yes|no|[0-9]{1,4})$/);
  });

  test('stream().finalChatCompletion() assembles the streamed message', async () => {
    const final = await client.chat.completions.stream({ ...greedy, messages: question, max_tokens: 300 }).finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.match(final.choices[0].message.content ?? '', /132/);
  });

  test('content as an array of text parts equals the same content as a string', async () => {
    const parts = await client.chat.completions.create({
      ...greedy,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is ' }, { type: 'text', text: '47 + 85?' }] }],
    });
    const text = await client.chat.completions.create({ ...greedy, messages: question });
    assert.equal(parts.choices[0].message.content, text.choices[0].message.content);
    assert.equal(parts.usage!.prompt_tokens, text.usage!.prompt_tokens);
  });

  test('a seed makes sampling repeat; OpenAI defaults (temperature 1) apply when unset', async () => {
    const sampled = (seed: number) => client.chat.completions.create({ model: MODEL_ID, messages: question, max_tokens: 24, seed });
    const [a, b] = [await sampled(7), await sampled(7)];
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.equal((a.choices[0].message as { reasoning_content?: string }).reasoning_content, (b.choices[0].message as { reasoning_content?: string }).reasoning_content);
    const texts = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const unseeded = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Write a long bedtime story about a shy crow called Otto.' }], max_tokens: 24 });
      texts.add(JSON.stringify(unseeded.choices[0].message));
    }
    assert.ok(texts.size > 1, 'unset temperature and seed must sample (temperature 1, a random seed), not decode greedily');
  });
});

describe('completions', () => {
  test('non-streaming and streaming agree, raw text with its tags', async () => {
    const request = { model: MODEL_ID, prompt: testbedPrompts.reasoning, temperature: 0, max_tokens: 30 };
    const whole = await client.completions.create(request);
    assert.equal(whole.object, 'text_completion');
    assert.match(whole.choices[0].text, /^<think>/);
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.equal(whole.usage!.completion_tokens, 30);
    const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finishes = 0;
    let usage;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.text;
        if (choice.finish_reason) finishes++;
      }
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finishes, 1);
    assert.deepEqual(usage, whole.usage);
  });

  test('logprobs: n gives the legacy lists, offsets into the text', async () => {
    const completion = await client.completions.create({ model: MODEL_ID, prompt: testbedPrompts.reasoning, temperature: 0, max_tokens: 12, logprobs: 3 });
    const { text, logprobs } = completion.choices[0];
    assert.equal(logprobs!.tokens!.join(''), text);
    assert.equal(logprobs!.token_logprobs!.length, 12);
    assert.deepEqual(logprobs!.text_offset, logprobs!.tokens!.map((_, i) => logprobs!.tokens!.slice(0, i).join('').length));
    for (const [i, top] of logprobs!.top_logprobs!.entries()) {
      assert.equal(Object.keys(top).length, 3);
      assert.equal(top[logprobs!.tokens![i]], logprobs!.token_logprobs![i]);
    }
  });

  test('ignore_eos generates to max_tokens past the end of the answer', async () => {
    const request = { model: MODEL_ID, prompt: testbedPrompts.reasoning, temperature: 0, max_tokens: 220 };
    const ended = await client.completions.create(request);
    assert.equal(ended.choices[0].finish_reason, 'stop');
    assert.ok(ended.usage!.completion_tokens < 220);
    const going = await client.completions.create({ ...request, ignore_eos: true } as typeof request);
    assert.equal(going.choices[0].finish_reason, 'length');
    assert.equal(going.usage!.completion_tokens, 220);
    assert.ok(going.choices[0].text.startsWith(ended.choices[0].text));
  });

  test('a prompt of token ids equals the same prompt as text', async () => {
    const tokens = await running.engine.tokenize(testbedPrompts.reasoning);
    const fromTokens = await client.completions.create({ model: MODEL_ID, prompt: tokens, temperature: 0, max_tokens: 12 });
    const fromText = await client.completions.create({ model: MODEL_ID, prompt: testbedPrompts.reasoning, temperature: 0, max_tokens: 12 });
    assert.equal(fromTokens.choices[0].text, fromText.choices[0].text);
  });

  test('a stop string ends the text before it', async () => {
    const completion = await client.completions.create({ model: MODEL_ID, prompt: testbedPrompts.reasoning, temperature: 0, max_tokens: 100, stop: ['47'] });
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.doesNotMatch(completion.choices[0].text, /47/);
  });
});

describe('tokenize and detokenize (llama-server\'s and vLLM\'s shapes)', () => {
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${running.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> & { tokens: unknown[]; count: number; error?: { param: string } } };
  };

  test('text as content (no BOS) or prompt (BOS), chat messages through the template, pieces, and back', async () => {
    const text = 'What is 47 + 85?';
    const content = await post('/tokenize', { content: text });
    const prompt = await post('/tokenize', { prompt: text });
    const bos = running.engine.info.model.specialTokens.bos;
    assert.deepEqual(prompt.body.tokens, [bos, ...content.body.tokens]);
    assert.deepEqual(prompt.body.tokens, await running.engine.tokenize(text));
    assert.equal(prompt.body.count, prompt.body.tokens.length);
    assert.equal(prompt.body.max_model_len, running.engine.info.contextSize);
    assert.deepEqual((await post('/tokenize', { content: text, add_special: true })).body.tokens, prompt.body.tokens);
    assert.deepEqual((await post('/tokenize', { prompt: text, add_special_tokens: false })).body.tokens, content.body.tokens);
    const messages = [{ role: 'user', content: text }];
    assert.deepEqual((await post('/tokenize', { messages })).body.tokens, await running.engine.userPrompt(text));
    const pieces = (await post('/tokenize', { content: text, with_pieces: true })).body.tokens as { id: number; piece: string }[];
    assert.deepEqual(pieces.map(({ id }) => id), content.body.tokens);
    assert.equal(pieces.map(({ piece }) => piece).join(''), text);
    const back = await post('/detokenize', { tokens: content.body.tokens });
    assert.deepEqual(back.body, { content: text, prompt: text });
  });

  test('bad input is a 400 naming the field', async () => {
    assert.equal((await post('/tokenize', {})).body.error?.param, 'content');
    assert.equal((await post('/tokenize', { content: 'a', prompt: 'b' })).body.error?.param, 'prompt');
    assert.equal((await post('/tokenize', { content: 1 })).status, 400);
    const outside = await post('/detokenize', { tokens: [1, running.engine.info.model.vocabularySize] });
    assert.equal(outside.status, 400);
    assert.equal(outside.body.error?.param, 'tokens');
    assert.equal((await post('/detokenize', { tokens: [-1] })).status, 400);
  });
});

describe('models and errors', () => {
  test('the model list names the served model and its context per request', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((model) => model.id),
      [MODEL_ID],
    );
    assert.equal((models.data[0] as OpenAI.Model & { max_model_len: number }).max_model_len, running.engine.info.contextSize);
  });

  test('bad values are 400s naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: -1 }, 'temperature'],
      [{ top_p: 2 }, 'top_p'],
      [{ max_tokens: 1e9 }, 'max_tokens'],
      [{ seed: 1.5 }, 'seed'],
      [{ seed: 2 ** 60 }, 'seed'],
      [{ n: 17 }, 'n'],
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
      [{ response_format: { type: 'xml' } }, 'response_format.type'],
      [{ response_format: { type: 'json_schema' } }, 'response_format.json_schema'],
      [{ response_format: { type: 'json_object', json_schema: { name: 'x', schema: {} } } }, 'response_format.json_schema'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } }, 'response_format.json_schema.schema'],
      [{ response_format: { type: 'json_object' }, reasoning_effort: 'low' }, 'response_format'],
      [{ response_format: { type: 'json_object' }, grammar: 'root ::= "x"' }, 'grammar'],
      [{ grammar: 'root ::= undefined-rule' }, 'grammar'],
      [{ surprise: true }, 'surprise'],
      [{ stream_options: { include_usage: true } }, 'stream_options'],
      [{ reasoning_effort: 'max' }, 'reasoning_effort'],
      [{ messages: undefined }, 'messages'],
      [{ messages: [{ role: 'robot', content: 'hi' }] }, 'messages.0.role'],
      [{ messages: [{ role: 'tool', content: '4', tool_call_id: 'call_1' }] }, 'messages.0.role'],
      [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] }] }, 'messages.0.tool_calls'],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }, 'messages.0.content.0.type'],
      [{ top_logprobs: 2 }, 'top_logprobs'],
      [{ logit_bias: { 5: 101 } }, 'logit_bias.5'],
      [{ logit_bias: { 123456789: 1 } }, 'logit_bias'],
      [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      [{ logprobs: true, reasoning_effort: 'low' }, 'logprobs'],
    ];
    for (const [fields, param] of cases) {
      await assert.rejects(
        client.chat.completions.create({ ...greedy, messages: question, ...fields } as never),
        (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === param && error.message.includes(param),
        `${JSON.stringify(fields)} must be refused naming ${param}`,
      );
    }
  });

  test('a prompt longer than the context is a 400 with its token count and the context size', async () => {
    const long = 'hello '.repeat(3000);
    const tokens = (await running.engine.userPrompt(long)).length;
    await assert.rejects(client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: long }] }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(error.code, 'context_length_exceeded');
      assert.match(error.message, new RegExp(`${tokens} tokens.*${running.engine.info.contextSize} tokens`));
      return true;
    });
  });

  test('the refusals say what is wrong, not only where', async () => {
    const refusal = async (body: Record<string, unknown>) => {
      const response = await fetch(`${running.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(response.status, 400);
      return ((await response.json()) as { error: { message: string; code: string } }).error;
    };
    assert.equal((await refusal({})).code, 'missing_required_parameter');
    assert.match((await refusal({ messages: [{ role: 'robot', content: 'hi' }] })).message, /one of "system", "developer", "user", "assistant"/);
    assert.match((await refusal({ messages: [{ role: 'tool', content: '4' }] })).message, /no tool calling/);
    assert.match((await refusal({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] })).message, /text parts only/);
  });

  test('a request without a model is served by the one model (as llama-server and vLLM do); names and nulls for unset fields are accepted', async () => {
    const response = await fetch(`${running.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'What is 47 + 85?', name: 'ada' }], temperature: 0, max_tokens: 300, stream: null, user: null, seed: null }),
    });
    assert.equal(response.status, 200);
    const completion = (await response.json()) as OpenAI.ChatCompletion;
    assert.equal(completion.model, MODEL_ID);
    assert.equal(completion.choices[0].message.content, 'The answer is 132.');
  });

  test('an unknown model is a 404', async () => {
    await assert.rejects(client.chat.completions.create({ ...greedy, model: 'gpt-4o', messages: question }), OpenAI.NotFoundError);
    await assert.rejects(client.completions.create({ model: 'gpt-4o', prompt: 'hi' }), OpenAI.NotFoundError);
  });

  test('a body over the size limit is a 413', async () => {
    await assert.rejects(
      client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] }),
      (error: unknown) => error instanceof OpenAI.APIError && error.status === 413,
    );
  });

  test('malformed JSON and a non-object body are 400s in OpenAI shape', async () => {
    for (const body of ['{"model":', '[1,2]', 'null', '"text"']) {
      const response = await fetch(`${running.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(response.status, 400, body);
      const { error } = (await response.json()) as { error: { message: string; type: string } };
      assert.equal(error.type, 'invalid_request_error');
      assert.ok(error.message.length > 0);
    }
  });
});

describe('queue, key and failures', () => {
  let busy: RunningServer;
  const serverErrors: unknown[] = [];
  before(async () => {
    busy = await startServer({ maxQueued: 0, maxSequences: 1 }, { apiKey: 'sesame', onServerError: (error) => serverErrors.push(error) });
  });
  after(() => busy.close());
  const authorized = () => new OpenAI({ baseURL: `${busy.url}/v1`, apiKey: 'sesame', maxRetries: 0 });

  test('with --api-key: no key or a wrong key is a 401, the key works, /health needs none', async () => {
    const stranger = new OpenAI({ baseURL: `${busy.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(stranger.models.list(), OpenAI.AuthenticationError);
    const anonymous = await fetch(`${busy.url}/v1/models`);
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, 'invalid_api_key');
    assert.equal((await authorized().models.list()).data[0].id, MODEL_ID);
    assert.equal((await fetch(`${busy.url}/health`)).status, 200);
    assert.equal((await fetch(`${busy.url}/metrics`)).status, 401);
    const metrics = await fetch(`${busy.url}/metrics`, { headers: { authorization: 'Bearer sesame' } });
    assert.equal(metrics.status, 200);
  });

  test('a full queue is a 429 with Retry-After', async () => {
    const openai = authorized();
    // A long generation, not read until the 429 is in: it holds the only turn meanwhile.
    const story = [{ role: 'user' as const, content: 'Write a long bedtime story about a shy crow called Otto.' }];
    const first = await openai.chat.completions.create({ ...greedy, messages: story, max_tokens: 900, stream: true });
    await assert.rejects(openai.chat.completions.create({ ...greedy, messages: question }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.RateLimitError);
      assert.equal(error.headers?.get('retry-after'), '1');
      return true;
    });
    let finishes = 0;
    for await (const chunk of first) finishes += chunk.choices.filter((choice) => choice.finish_reason).length;
    assert.equal(finishes, 1);
  });

  test('an engine failure mid-stream is an error event, then [DONE]', async () => {
    const { engine } = busy;
    const generate = engine.generate.bind(engine);
    engine.generate = async function* (prompt, options) {
      const inner = generate(prompt, options);
      const first = await inner.next();
      await inner.return(undefined as never);
      if (!first.done) yield first.value;
      throw new Error('injected engine failure');
    };
    try {
      const response = await fetch(`${busy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sesame' },
        body: JSON.stringify({ ...greedy, messages: question, stream: true }),
      });
      assert.equal(response.status, 200);
      const events = sseData(await response.text());
      assert.equal(events.at(-1), '[DONE]');
      const error = JSON.parse(events.at(-2)!) as { error: { type: string; message: string } };
      assert.equal(error.error.type, 'server_error');
      assert.equal(events.filter((event) => event.includes('"error"')).length, 1);
      assert.deepEqual(
        serverErrors.map((error) => (error as Error).message),
        ['injected engine failure'],
        'the operator is told what the client only hears as a server error',
      );
    } finally {
      engine.generate = generate;
    }
    // The failed request's cancellation reaches the engine loop before its next step; until then
    // its only slot is taken (and no queue place is configured), so /health rightly says busy.
    // The status it reads is published after each step, so the slot may show as taken only after
    // the client saw the first token: poll /health itself.
    let health = 0;
    for (let wait = 0; wait < 100 && health !== 200; wait++) {
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      health = (await fetch(`${busy.url}/health`)).status;
    }
    assert.equal(health, 200);
  });
});
