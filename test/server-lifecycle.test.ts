/** The server under load and through its lifecycle: concurrency, cancellation, slow readers, metrics, CORS, signals. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import OpenAI from 'openai';
import { SlowReaderError, SseStream } from '../src/server/sse.js';
import { MODEL_ID, sseData, startServer, verifyEveryDraft, type RunningServer } from './helpers/server.js';
import { projectRoot } from './helpers/models.js';

let running: RunningServer;
let client: OpenAI;

before(async () => {
  running = await startServer({}, { cors: true });
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(() => running.close());

/** Waits until the engine has nothing running (bounded: a hang fails the test instead of stalling it). */
async function engineIdle(server: RunningServer = running): Promise<void> {
  for (let i = 0; i < 500 && server.engine.status().running > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(server.engine.status().running, 0, 'the engine must go idle');
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${running.url}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith(name));
  return line === undefined ? Number.NaN : Number(line.split(' ').at(-1));
}

describe('concurrency and cancellation', () => {
  test('16 greedy streams at once produce what 16 solo runs produce', async () => {
    const prompts = Array.from({ length: 16 }, (_, i) => `What is ${10 + i} + ${30 + 2 * i}?`);
    const streamed = async (content: string) => {
      const stream = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content }], temperature: 0, max_tokens: 32, stream: true });
      let text = '';
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
        text += (delta?.reasoning_content ?? '') + (delta?.content ?? '');
      }
      return text;
    };
    const solo: string[] = [];
    for (const prompt of prompts) solo.push(await streamed(prompt));
    const together = await Promise.all(prompts.map(streamed));
    assert.deepEqual(together, solo);
    assert.ok(new Set(solo).size > 8, 'the prompts must lead to different outputs');
  });

  test('a client that disconnects cancels its request and its KV cells return to the baseline', async () => {
    await engineIdle();
    const baseline = running.engine.status().kvCellsInUse;
    const abortsBefore = (await metric('tachyon:request_success_total{finished_reason="abort"}')) || 0;
    const story = [{ role: 'user' as const, content: 'Write a long bedtime story about a shy crow called Otto.' }];
    const stream = await client.chat.completions.create({ model: MODEL_ID, messages: story, temperature: 0, max_tokens: 1000, stream: true });
    let chunks = 0;
    for await (const chunk of stream) {
      void chunk;
      if (++chunks === 3) break; // leaving the loop aborts the HTTP request
    }
    await engineIdle();
    assert.equal(running.engine.status().kvCellsInUse, baseline);
    assert.equal(await metric('tachyon:request_success_total{finished_reason="abort"}'), abortsBefore + 1);
  });
});

describe('streams and readers', () => {
  test('a reader that stops reading is cut off once its buffers are full and the drain wait passes', async () => {
    const server = createHttpServer(async (_request, response) => {
      const sse = new SseStream(response, 100);
      sse.open({});
      const outcome = (async () => {
        for (let i = 0; i < 2000; i++) await sse.send({ padding: 'x'.repeat(64 * 1024) });
      })();
      server.emit('outcome', await outcome.then(() => 'all written', (error: unknown) => error));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    socket.pause();
    const [outcome] = await once(server, 'outcome');
    socket.destroy();
    server.close();
    assert.ok(outcome instanceof SlowReaderError, `expected SlowReaderError, got ${String(outcome)}`);
  });

  test('the opt-in drafter field names the drafter of each accepted draft token', async () => {
    const drafting = await startServer(verifyEveryDraft);
    const response = await fetch(`${drafting.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL_ID,
        messages: [{ role: 'user', content: 'What is 47 + 85?' }],
        temperature: 0,
        max_tokens: 300,
        stream: true,
        stream_options: { include_drafters: true, include_usage: true },
      }),
    });
    const body = await response.text();
    await drafting.close();
    const chunks = sseData(body)
      .filter((data) => data !== '[DONE]')
      .map((data) => JSON.parse(data) as { tachyon?: { tokens?: { text: string; drafter: string | null }[]; drafters?: Record<string, { accepted: number }> }; usage?: { completion_tokens: number } });
    const tokens = chunks.flatMap((chunk) => chunk.tachyon?.tokens ?? []);
    // Every generated token is named, also those whose text was not shown yet (the blank line after </think>).
    assert.equal(tokens.length, chunks.at(-1)!.usage!.completion_tokens);
    assert.ok(tokens.length > 100);
    const drafted = tokens.filter((token) => token.drafter !== null);
    // The testbed's reasoning repeats its own lines: the n-gram and suffix drafters get tokens accepted.
    assert.ok(drafted.length > 10, 'some tokens must come from accepted drafts');
    for (const token of drafted) assert.ok(['ngram', 'suffix'].includes(token.drafter!));
    // A token both drafters proposed counts as accepted for each of them and is named once.
    const accepted = Object.entries(chunks.at(-2)!.tachyon!.drafters!);
    for (const [drafter, stats] of accepted) assert.ok(drafted.filter((token) => token.drafter === drafter).length <= stats.accepted, drafter);
    assert.ok(drafted.length >= Math.max(...accepted.map(([, stats]) => stats.accepted)));
  });
});

describe('metrics, CORS and health', () => {
  test('/metrics speaks Prometheus with vLLM-style names under tachyon:', async () => {
    await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'What is 2 + 3?' }], max_tokens: 8 });
    const response = await fetch(`${running.url}/metrics`);
    assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
    const text = await response.text();
    for (const name of [
      'tachyon:num_requests_running',
      'tachyon:num_requests_waiting',
      'tachyon:kv_cache_usage_perc',
      'tachyon:kv_cache_tokens',
      'tachyon:time_to_first_token_seconds_bucket',
      'tachyon:inter_token_latency_seconds_bucket',
      'tachyon:e2e_request_latency_seconds_bucket',
      'tachyon:spec_decode_num_drafts_total',
      'tachyon:spec_decode_num_draft_tokens_total{drafter="ngram"}',
      'tachyon:spec_decode_num_accepted_tokens_total{drafter="ngram"}',
    ]) {
      assert.ok(text.includes(name), `missing ${name}`);
    }
    assert.ok((await metric('tachyon:prompt_tokens_total')) > 0);
    assert.ok((await metric('tachyon:generation_tokens_total')) > 0);
  });

  test("/metrics tells where the engine loop's time goes, phase by phase", async () => {
    const phases = ['scheduling', 'batching', 'decoding', 'accepting'];
    const read = () => Promise.all(phases.map((phase) => metric(`tachyon:engine_step_seconds{phase="${phase}"}`)));
    const before = await read();
    const started = performance.now();
    const completion = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Write a long story about a lighthouse keeper.' }], max_tokens: 48, temperature: 0 });
    const elapsed = (performance.now() - started) / 1000;
    const after = await read();
    assert.equal(completion.usage?.completion_tokens, 48);
    const spent = after.map((seconds, i) => seconds - before[i]);
    for (const [i, seconds] of spent.entries()) assert.ok(seconds >= 0 && Number.isFinite(seconds), `${phases[i]}: ${seconds}`);
    assert.ok(spent[2] > 0, 'decoding time grew');
    // The loop's phases happen within the request's time (the loop ran for nothing else).
    assert.ok(spent.reduce((a, b) => a + b, 0) <= elapsed, `phases ${spent.join(', ')} s within ${elapsed} s`);
  });

  test("/metrics shows the KV prefix cache's hits per tier and the tokens it restored", async () => {
    const cached = await startServer({ cache: { tiers: ['ram'] } });
    try {
      const passage = 'The quick brown fox jumps over the lazy dog near the old stone bridge. '.repeat(12);
      const ask = () => fetch(`${cached.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID, prompt: passage, max_tokens: 4, temperature: 0 }) });
      assert.equal((await ask()).status, 200);
      assert.equal((await ask()).status, 200);
      const text = await (await fetch(`${cached.url}/metrics`)).text();
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      assert.ok(value('tachyon:prefix_cache_restored_tokens') >= 64, 'the second request restored its prompt blocks');
      assert.ok(value('tachyon:prefix_cache_tier_hits{tier="ram"}') >= 1);
      assert.ok(value('tachyon:prefix_cache_tier_bytes_stored{tier="ram"}') > 0);
    } finally {
      await cached.close();
    }
  });

  test('--cors answers browser preflights', async () => {
    const response = await fetch(`${running.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
    });
    assert.ok(response.status < 300);
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
  });
});

describe('timeouts', () => {
  test('a request over the time limit is a 408, mid-stream an error event then [DONE]; the engine is free after', async () => {
    const hurried = await startServer({}, { requestTimeoutMs: 50 });
    try {
      const story = { model: MODEL_ID, messages: [{ role: 'user', content: 'Write a long bedtime story about a shy crow called Otto.' }], temperature: 0, max_tokens: 1000 };
      const post = (body: object) => fetch(`${hurried.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const whole = await post(story);
      assert.equal(whole.status, 408);
      assert.equal(((await whole.json()) as { error: { code: string } }).error.code, 'request_timeout');
      // The first token comes within a few ms, so the limit strikes mid-stream (before it, the answer is a 408).
      const streamed = await post({ ...story, stream: true });
      const text = await streamed.text();
      if (streamed.status === 200) {
        const events = sseData(text);
        assert.equal(events.at(-1), '[DONE]');
        assert.match(events.at(-2)!, /request_timeout/);
      } else {
        assert.equal(streamed.status, 408);
      }
      // The engine learns of the timeout by a cancellation, which it takes before its next step.
      await engineIdle(hurried);
    } finally {
      await hurried.close();
    }
  });
});

describe('tachyon serve', () => {
  test('prints its URL, serves, and on SIGTERM lets the in-flight stream finish, then exits 0', async () => {
    const child = spawn(process.execPath, [join(projectRoot, 'bin', 'tachyon.js'), 'serve', '--port', '0', '--threads', '1', '--gpu', 'cpu', '--alias', 'tb'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    let stdout = '';
    child.stdout.setEncoding('utf8');
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (text: string) => {
        stdout += text;
        const match = /at (http:\/\/\S+) /.exec(stdout);
        if (match) resolve(match[1]);
      });
      child.once('exit', (code) => reject(new Error(`tachyon serve exited with ${code} before printing its URL`)));
    });
    try {
      assert.equal((await fetch(`${url}/health`)).status, 200);
      const response = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tb', prompt: 'Once upon a time', temperature: 0, max_tokens: 400, stream: true }),
      });
      assert.equal(response.status, 200);
      child.kill('SIGTERM');
      const events = sseData(await response.text());
      assert.equal(events.at(-1), '[DONE]');
      const closing = JSON.parse(events.at(-2)!) as { choices: { finish_reason: string }[] };
      assert.equal(closing.choices[0].finish_reason, 'length');
      const [code, signal] = await exited;
      assert.equal(signal, null);
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
