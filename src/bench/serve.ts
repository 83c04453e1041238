/**
 * `tachyon bench serve`: `tachyon serve` and `llama-server` on the same model, slots, per-slot
 * context and threads, each without and with its speculative decoding, driven over HTTP by one
 * client with the same prompts: throughput, time to first token and inter-token latency at
 * several concurrency levels.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { llamaServers, rawCompletionFlags } from './peer-server.js';
import { packageRoot } from '../paths.js';
import { median } from './stats.js';

export const SETUPS = ['tachyon', 'tachyon_spec', 'llama', 'llama_spec'] as const;
export type Setup = (typeof SETUPS)[number];

export interface ServeBenchOptions {
  model: string;
  draftModel?: string;
  concurrency: readonly number[];
  /** Requests per concurrency level (at least the level itself). */
  requests: number;
  maxTokens: number;
  /** Prompt texts, already chat-formatted; requests cycle through them. */
  prompts: readonly string[];
  parallel: number;
  /** Context per slot. */
  ctxSize: number;
  threads: number;
  /** llama-server binary; undefined: measure Tachyon only. */
  llamaServer?: string;
  /** llama-server's speculative flags (its best setting on this model). */
  llamaSpecFlags: readonly string[];
  onProgress: (line: string) => void;
}

/** One streamed request as the client saw it. */
interface RequestTiming {
  tokens: number;
  ttftMs: number;
  /** Gaps between streamed tokens (a chunk of k tokens counts as k gaps of a k-th of its wait). */
  itlMs: number[];
}

export interface LevelMeasurement {
  tokensPerSecond: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  itlP50Ms: number;
  itlP99Ms: number;
  requests: number;
  tokens: number;
}

export interface ServeBenchReport {
  model: string;
  /** Tachyon's plain inter-token p50 with one client: what one decode of this model costs here. */
  ms_per_decode: number | null;
  settings: Omit<ServeBenchOptions, 'onProgress' | 'prompts'> & { prompts: number };
  /** The `--json` summary: throughput of each setup, latency of Tachyon with speculation. */
  concurrency: Record<string, Partial<Record<`${Setup}_tps`, number>> & { ttft_p50_ms?: number; ttft_p99_ms?: number; itl_p50_ms?: number; itl_p99_ms?: number }>;
  details: Partial<Record<Setup, Record<string, LevelMeasurement>>>;
}

export async function runServeBench(options: ServeBenchOptions): Promise<ServeBenchReport> {
  const setups = SETUPS.filter((setup) => options.llamaServer !== undefined || setup.startsWith('tachyon'));
  const details: ServeBenchReport['details'] = {};
  for (const setup of setups) {
    options.onProgress(`${setup}: starting the server`);
    const server = await startSetup(setup, options);
    try {
      details[setup] = {};
      for (const level of options.concurrency) {
        await streamCompletion(server, options.prompts[0], 8); // warm-up: first-request costs are not the level's
        const measured = await measureLevel(server, level, options);
        details[setup][level] = measured;
        options.onProgress(`${setup} × ${level}: ${measured.tokensPerSecond.toFixed(1)} tok/s, TTFT p50 ${measured.ttftP50Ms.toFixed(1)} ms, ITL p50 ${measured.itlP50Ms.toFixed(2)} ms`);
      }
    } finally {
      await server.stop();
    }
  }
  return {
    model: options.model,
    ms_per_decode: details.tachyon?.[options.concurrency[0]]?.itlP50Ms ?? null,
    settings: { ...settingsOf(options), prompts: options.prompts.length },
    concurrency: summary(details, options.concurrency),
    details,
  };
}

function settingsOf({ onProgress: _onProgress, prompts: _prompts, ...settings }: ServeBenchOptions) {
  return settings;
}

function summary(details: ServeBenchReport['details'], levels: readonly number[]): ServeBenchReport['concurrency'] {
  const result: ServeBenchReport['concurrency'] = {};
  for (const level of levels) {
    const row: ServeBenchReport['concurrency'][string] = {};
    for (const setup of SETUPS) {
      const measured = details[setup]?.[level];
      if (measured) row[`${setup}_tps`] = measured.tokensPerSecond;
    }
    const headline = details.tachyon_spec?.[level];
    if (headline) Object.assign(row, { ttft_p50_ms: headline.ttftP50Ms, ttft_p99_ms: headline.ttftP99Ms, itl_p50_ms: headline.itlP50Ms, itl_p99_ms: headline.itlP99Ms });
    result[level] = row;
  }
  return result;
}

async function measureLevel(server: RunningSetup, level: number, options: ServeBenchOptions): Promise<LevelMeasurement> {
  const total = Math.max(level, options.requests);
  let next = 0;
  const timings: RequestTiming[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: level }, async () => {
      while (next < total) {
        const prompt = options.prompts[next++ % options.prompts.length];
        timings.push(await streamCompletion(server, prompt, options.maxTokens));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const tokens = timings.reduce((sum, timing) => sum + timing.tokens, 0);
  const ttft = timings.map((timing) => timing.ttftMs);
  const itl = timings.flatMap((timing) => timing.itlMs);
  return {
    tokensPerSecond: tokens / seconds,
    ttftP50Ms: median(ttft),
    ttftP99Ms: percentile(ttft, 0.99),
    itlP50Ms: median(itl),
    itlP99Ms: percentile(itl, 0.99),
    requests: timings.length,
    tokens,
  };
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)];
}

interface RunningSetup {
  url: string;
  /** Tachyon names each chunk's tokens (include_drafters), so a chunk of k tokens counts k. */
  tachyon: boolean;
  stop(): Promise<void>;
}

/** Streams one greedy completion through /v1/completions and times what the client sees. */
async function streamCompletion(server: RunningSetup, prompt: string, maxTokens: number): Promise<RequestTiming> {
  const started = performance.now();
  const response = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench',
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: server.tachyon ? { include_usage: true, include_drafters: true } : { include_usage: true },
    }),
  });
  if (!response.ok || !response.body) throw new Error(`${server.url}: HTTP ${response.status} ${await response.text()}`);
  let ttftMs = Number.NaN;
  let previous = 0;
  let tokens = 0;
  const itlMs: number[] = [];
  let buffer = '';
  for await (const bytes of response.body.pipeThrough(new TextDecoderStream())) {
    buffer += bytes;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end).replace(/^data: /, '');
      buffer = buffer.slice(end + 2);
      if (event === '[DONE]' || !event.startsWith('{')) continue;
      const chunk = JSON.parse(event) as { choices?: { text?: string }[]; tachyon?: { tokens?: unknown[] }; usage?: { completion_tokens: number } };
      const count = server.tachyon ? (chunk.tachyon?.tokens?.length ?? 0) : chunk.choices?.[0]?.text ? 1 : 0;
      if (count === 0) continue;
      const now = performance.now();
      if (tokens === 0) ttftMs = now - started;
      else for (let i = 0; i < count; i++) itlMs.push((now - previous) / count);
      previous = now;
      tokens += count;
    }
  }
  return { tokens, ttftMs, itlMs };
}

async function startSetup(setup: Setup, options: ServeBenchOptions): Promise<RunningSetup> {
  if (setup.startsWith('tachyon')) {
    const args = ['serve', '--port', '0', '--model', options.model, '--alias', 'bench', '--parallel', String(options.parallel), '--ctx-size', String(options.ctxSize)];
    args.push('--threads', String(options.threads), '--max-queued', '4096', '--spec', setup === 'tachyon_spec' ? 'auto' : 'off');
    if (setup === 'tachyon_spec' && options.draftModel) args.push('--draft-model', options.draftModel);
    const child = spawn(process.execPath, [join(packageRoot, 'bin', 'tachyon.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await printedUrl(child, /at (http:\/\/\S+) /);
    return { url, tachyon: true, stop: () => stopChild(child) };
  }
  const servers = await llamaServers();
  const args = ['-m', options.model, '-np', String(options.parallel), '-c', String(options.parallel * options.ctxSize)];
  args.push('-t', String(options.threads), '-tb', String(options.threads), '-ngl', '0', ...rawCompletionFlags(servers, servers.serverHelp(options.llamaServer!)));
  if (setup === 'llama_spec') args.push(...options.llamaSpecFlags);
  const server = await new servers.LlamaServer(options.llamaServer!, setup, args, { log: options.onProgress }).start();
  return { url: server.url, tachyon: false, stop: () => server.stop() };
}

async function printedUrl(child: ChildProcess, pattern: RegExp): Promise<string> {
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (text: Buffer) => (stderr = (stderr + text.toString()).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (text: Buffer) => {
      stdout += text.toString();
      const match = pattern.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code} before it was ready:\n${stderr}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const forced = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(forced);
}

