/**
 * The load harness behind `tachyon bench batch`: its percentile and aggregation math on synthetic
 * timings, how it spreads multi-token pieces and keeps requests in flight, the OpenAI streaming
 * client on a server that streams as llama-server does, and a smoke run of the command itself.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OpenAiCompletionsTarget, runLoad, summarizeLoad, type Arrival, type LoadRequest, type LoadRun, type LoadTarget, type RequestTiming } from '../src/bench/load.js';
import { median, percentile } from '../src/bench/stats.js';
import { tachyon } from './helpers/cli.js';
import { projectRoot, scratchDir } from './helpers/models.js';

test('percentiles interpolate between the nearest ranks and ignore non-finite values', () => {
  const values = Array.from({ length: 101 }, (_, i) => 100 - i); // 0…100, unsorted
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
  assert.ok(Math.abs(percentile([1, 2, 3, 4], 99) - 3.97) < 1e-12);
  assert.equal(percentile([7, Number.NaN, Infinity], 99), 7);
  assert.equal(percentile([3], 0), 3);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.equal(median([5, 1, 3, 2]), 2.5);
});

test('a run is summarized from its successful requests: aggregate tokens/s over wall time, TTFT and ITL percentiles', () => {
  const timing = (id: string, ttft: number, itl: number[], error?: string): RequestTiming => ({
    id,
    sentAt: 0,
    ttft,
    itl,
    tokens: itl.length + 1,
    e2e: ttft + itl.reduce((a, b) => a + b, 0),
    ...(error ? { error } : {}),
  });
  const run: LoadRun = {
    target: 'synthetic',
    concurrency: 2,
    wallMs: 500,
    requests: [timing('a', 10, [1, 1, 1, 1]), timing('b', 30, [2, 2, 2, 2, 10]), timing('c', 1000, [50], 'HTTP 500')],
  };
  const summary = summarizeLoad(run);
  assert.equal(summary.requests, 3);
  assert.equal(summary.failed, 1);
  assert.equal(summary.tokens, 11);
  assert.equal(summary.tokens_per_second, (11 / 500) * 1000);
  assert.equal(summary.ttft_p50_ms, 20);
  assert.equal(summary.ttft_p99_ms, 10 + 20 * 0.99);
  assert.equal(summary.itl_p50_ms, 2); // 1 1 1 1 2 2 2 2 10: the failed request's 50 is left out
  assert.equal(summary.itl_p99_ms, 2 + 8 * (0.99 * 8 - 7));
  assert.equal(summary.e2e_p50_ms, (14 + 48) / 2);
  assert.equal(summary.first_error, 'HTTP 500');
});

test('steady throughput counts the tokens that arrived while every client had a request in flight, up to the first to end after the last was sent', () => {
  // Two clients. a and b start together; c follows b (sent at 50), d follows a (sent at 100);
  // c ends at 120, and from there only d runs: the drain, left out.
  const timing = (id: string, sentAt: number, ttft: number, itl: number[]): RequestTiming => ({ id, sentAt, ttft, itl, tokens: itl.length + 1, e2e: ttft + itl.reduce((a, b) => a + b, 0) });
  const run: LoadRun = {
    target: 'synthetic',
    concurrency: 2,
    wallMs: 200,
    requests: [timing('a', 0, 10, Array(9).fill(10)), timing('b', 0, 5, Array(9).fill(5)), timing('c', 50, 10, Array(6).fill(10)), timing('d', 100, 10, Array(9).fill(10))],
  };
  const summary = summarizeLoad(run);
  assert.equal(summary.tokens_per_second, (37 / 200) * 1000);
  // By 120: a's 10 tokens (10…100), b's 10 (5…50), c's 7 (60…120), d's 2 (110, 120).
  assert.equal(summary.steady_tokens_per_second, (29 / 120) * 1000);
  // Requests that end together have no drain: steady equals aggregate.
  const together: LoadRun = { ...run, wallMs: 100, requests: [timing('a', 0, 10, Array(9).fill(10)), timing('b', 0, 10, Array(9).fill(10))] };
  assert.equal(summarizeLoad(together).steady_tokens_per_second, summarizeLoad(together).tokens_per_second);
});

/** A scripted target: pieces of the given sizes, a pause before each; counts requests in flight. */
class ScriptedTarget implements LoadTarget {
  readonly name = 'scripted';
  inFlight = 0;
  mostInFlight = 0;
  readonly order: string[] = [];

  constructor(private readonly pieces: readonly number[]) {}

  async *stream(request: LoadRequest): AsyncGenerator<Arrival, number | undefined, void> {
    this.order.push(request.id);
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    try {
      if (request.id === 'bad') throw new Error('refused');
      for (const tokens of this.pieces) {
        await sleep(2);
        yield { tokens };
      }
      return undefined;
    } finally {
      this.inFlight--;
    }
  }
}

const requests = (ids: string[]): LoadRequest[] => ids.map((id) => ({ id, prompt: id, maxTokens: 16 }));

test('the harness keeps the given number of requests in flight, in order, and records failures without stopping', async () => {
  const target = new ScriptedTarget([1, 1, 1]);
  const run = await runLoad(target, requests(['r0', 'r1', 'bad', 'r3', 'r4', 'r5', 'r6']), { concurrency: 3 });
  assert.equal(target.mostInFlight, 3);
  assert.deepEqual(target.order, ['r0', 'r1', 'bad', 'r3', 'r4', 'r5', 'r6']);
  assert.deepEqual(run.requests.map((r) => r.id), target.order);
  assert.equal(run.requests.find((r) => r.id === 'bad')!.error, 'refused');
  assert.equal(summarizeLoad(run).tokens, 6 * 3);
});

test('a piece of several tokens counts as that many inter-token gaps sharing its wait', async () => {
  const run = await runLoad(new ScriptedTarget([2, 3, 1, 4]), requests(['only']), { concurrency: 1 });
  const [timing] = run.requests;
  assert.equal(timing.tokens, 10);
  // The first piece's tokens arrive together at TTFT; each later token gets a share of its piece's wait.
  assert.equal(timing.itl.length, 3 + 1 + 4);
  assert.deepEqual(timing.itl.slice(0, 3), Array(3).fill(timing.itl[0]));
  const itlTotal = timing.itl.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(timing.ttft + itlTotal - timing.e2e) < 1e-6, 'TTFT plus the gaps is the whole request');
});

/** Streams each request the way llama-server does: one SSE event per token, usage last, then [DONE]. */
async function sseServer(pieces: string[], usageTokens: number): Promise<{ url: string; bodies: unknown[]; server: Server }> {
  const bodies: unknown[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      bodies.push(JSON.parse(body));
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const text of pieces) response.write(`data: ${JSON.stringify({ object: 'text_completion', choices: [{ index: 0, text, finish_reason: null }] })}\n\n`);
      response.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: usageTokens } })}\n\n`);
      response.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}`, bodies, server };
}

test('the OpenAI completions client streams pieces and takes the token count from usage', async () => {
  const { url, bodies, server } = await sseServer(['The', ' answer', '', ' is', ' 5.'], 6);
  try {
    const target = new OpenAiCompletionsTarget('peer', url, { model: 'm' });
    const run = await runLoad(target, [{ id: 'q', prompt: '<|user|>\nWhat is 2 + 3?<|end|>\n<|assistant|>\n', maxTokens: 8 }], { concurrency: 1 });
    const [timing] = run.requests;
    assert.equal(timing.error, undefined);
    assert.equal(timing.tokens, 6, 'usage.completion_tokens wins over the count of pieces');
    assert.equal(timing.itl.length, 3, 'four non-empty pieces: three gaps after the first');
    assert.deepEqual(bodies[0], { model: 'm', prompt: '<|user|>\nWhat is 2 + 3?<|end|>\n<|assistant|>\n', max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
  } finally {
    server.close();
  }
});

test('an HTTP error is a failed request that names the status', async () => {
  const server = createServer((_request, response) => response.writeHead(429, { 'content-type': 'application/json' }).end('{"error":{"message":"queue full"}}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const target = new OpenAiCompletionsTarget('peer', `http://127.0.0.1:${(server.address() as { port: number }).port}`);
    const run = await runLoad(target, requests(['q']), { concurrency: 1 });
    assert.match(run.requests[0].error ?? '', /peer: HTTP 429: .*queue full/);
  } finally {
    server.close();
  }
});

test('a connection closed before any response is sent again, up to 3 tries; one closed 3 times fails and says why', async () => {
  // Closes the first `drops` connections as soon as a request arrives, as a server closing an idle keep-alive connection does.
  const serve = async (drops: number) => {
    let seen = 0;
    const { url, server } = await sseServer(['a', 'b'], 2);
    const handler = server.listeners('request')[0] as (...args: unknown[]) => void;
    server.removeAllListeners('request');
    server.on('request', (request: { socket: { destroy(): void } }, response: unknown) => (seen++ < drops ? request.socket.destroy() : handler(request, response)));
    return { url, server, sent: () => seen };
  };
  const twice = await serve(2);
  try {
    const run = await runLoad(new OpenAiCompletionsTarget('peer', twice.url), requests(['q']), { concurrency: 1 });
    assert.equal(run.requests[0].error, undefined);
    assert.equal(run.requests[0].tokens, 2);
    assert.equal(twice.sent(), 3);
  } finally {
    twice.server.close();
  }
  const thrice = await serve(3);
  try {
    const run = await runLoad(new OpenAiCompletionsTarget('peer', thrice.url), requests(['q']), { concurrency: 1 });
    assert.match(run.requests[0].error ?? '', /^fetch failed: .*\((UND_ERR_SOCKET|ECONNRESET)\)/);
    assert.equal(thrice.sent(), 3, 'three tries, not more');
  } finally {
    thrice.server.close();
  }
});

test('bench batch runs every concurrency and mode on the testbed and writes its report', async () => {
  const dir = scratchDir();
  const result = await tachyon('bench', 'batch', '--concurrency', '1,2', '--n', '2', '--max-tokens', '8', '--threads', '1', '--no-peer', '--json', '--report', dir);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    model: string;
    ms_per_decode: number;
    single_stream_vs_llama_server: number | null;
    concurrency: Record<string, { plain_tps: number; spec_tps: number; spec_speedup: number; peer_tps: number | null; itl_p50_ms: number; runs: Record<string, { requests: number; failed: number; tokens: number }> }>;
  };
  assert.match(report.model, /target\.gguf$/);
  assert.deepEqual(Object.keys(report.concurrency), ['1', '2']);
  for (const level of Object.values(report.concurrency)) {
    assert.deepEqual(Object.keys(level.runs).sort(), ['tachyon', 'tachyon spec auto']);
    for (const run of Object.values(level.runs)) {
      assert.equal(run.requests, 2);
      assert.equal(run.failed, 0);
      assert.ok(run.tokens > 0 && run.tokens <= 16);
    }
    assert.ok(level.plain_tps > 0 && level.spec_tps > 0 && level.spec_speedup > 0);
    assert.equal(level.peer_tps, null);
  }
  assert.equal(report.ms_per_decode, report.concurrency['1'].itl_p50_ms);
  assert.equal(report.single_stream_vs_llama_server, null);
  for (const file of ['batch-report.md', 'batch-report.json', 'batch-throughput.svg', 'batch-itl-p99.svg']) assert.ok(existsSync(join(dir, file)), file);
  assert.match(readFileSync(join(dir, 'batch-throughput.svg'), 'utf8'), /<svg[\s\S]*2 concurrent/);
  assert.match(readFileSync(join(dir, 'batch-report.md'), 'utf8'), /\| 2 \| tachyon spec auto \|/);
});

/** A llama-server already built by bench/peers/build-llama-cpp.sh (building one takes half an hour: never here). */
function builtLlamaServer(): string | undefined {
  if (process.env.TACHYON_LLAMA_SERVER) return process.env.TACHYON_LLAMA_SERVER;
  const cache = join(projectRoot, '.cache', 'llama.cpp');
  const builds = existsSync(cache) ? readdirSync(cache).map((commit) => join(cache, commit, 'build', 'bin', 'llama-server')) : [];
  return builds.find((path) => existsSync(path));
}

const llamaServer = builtLlamaServer();

test('bench batch drives llama-server --parallel N over HTTP with the same requests', { skip: llamaServer ? false : 'no llama-server built (bench/peers/build-llama-cpp.sh)' }, async () => {
  const result = await tachyon('bench', 'batch', '--concurrency', '1,2', '--n', '2', '--max-tokens', '8', '--threads', '1', '--spec', 'off', '--llama-server', llamaServer!, '--json');
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    single_stream_vs_llama_server: number;
    settings: { peer: { flags: string[] } };
    concurrency: Record<string, { peer_tps: number; runs: Record<string, { requests: number; failed: number; tokens: number }> }>;
  };
  assert.ok(report.single_stream_vs_llama_server > 0);
  assert.ok(report.settings.peer.flags.includes('--cont-batching'));
  for (const level of Object.values(report.concurrency)) {
    assert.ok(level.peer_tps > 0);
    const { tachyon: ours, 'llama-server': peer } = level.runs;
    assert.deepEqual([peer.requests, peer.failed], [2, 0]);
    // The same greedy requests on the same model: as many tokens either way.
    assert.equal(peer.tokens, ours.tokens);
  }
});

test('bench batch refuses a bad concurrency or mode with one clear line', async () => {
  const zero = await tachyon('bench', 'batch', '--concurrency', '1,0');
  assert.equal(zero.code, 1);
  assert.match(zero.stderr, /--concurrency.*expected an integer from 1/);
  const mode = await tachyon('bench', 'batch', '--spec', 'off,warp');
  assert.equal(mode.code, 1);
  assert.match(mode.stderr, /"warp" is not one of/);
});
