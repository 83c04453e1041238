/**
 * The load harness: one client that drives a *target* at a fixed concurrency over a prompt set and
 * records, for every request, when each token arrived. Targets: the in-process Engine (concurrent
 * `generate` streams) and any OpenAI-compatible HTTP server streaming `/v1/completions` (llama-server,
 * `tachyon serve`). Every target gets the same requests from the same code, so what differs between
 * two runs is the target alone.
 */
import { getMaxListeners, setMaxListeners } from 'node:events';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { Engine } from '../engine/engine.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { percentile } from './stats.js';

export interface LoadRequest {
  id: string;
  /** The prompt text, chat template already applied; every target tokenizes it (with BOS) itself. */
  prompt: string;
  maxTokens: number;
}

/** How a piece of a streamed answer arrived. */
export interface Arrival {
  /** Tokens in this piece (a speculative step may emit several at once). */
  tokens: number;
}

export interface LoadTarget {
  readonly name: string;
  /**
   * Streams one greedy completion, yielding each piece as it arrives; returns the number of tokens
   * generated when the target reports it (an HTTP stream's pieces need not be one token each).
   */
  stream(request: LoadRequest, signal: AbortSignal): AsyncGenerator<Arrival, number | undefined, void>;
}

/** One request as the client saw it; times in milliseconds. */
export interface RequestTiming {
  id: string;
  /** When it was sent, from the start of the run. */
  sentAt: number;
  /** From sending to the first token. */
  ttft: number;
  /**
   * Gaps between tokens after the first piece. A piece of k tokens arriving g after the previous one
   * counts as k gaps of g/k: tokens per unit of time, as a stream of one token per piece measures it.
   */
  itl: number[];
  tokens: number;
  /** From sending to the last token. */
  e2e: number;
  /** Why it failed, when it did (a failed request's timings are not summarized). */
  error?: string;
}

export interface LoadRun {
  target: string;
  concurrency: number;
  /** From the first request sent to the last one finished. */
  wallMs: number;
  requests: RequestTiming[];
}

export interface LoadOptions {
  concurrency: number;
  /** Called after each request (progress). */
  onRequestDone?: (timing: RequestTiming) => void;
  signal?: AbortSignal;
}

/**
 * Sends every request, keeping `concurrency` in flight at all times (a closed loop: a client sends
 * its next request when its previous one ends), first come first served in the given order.
 */
export async function runLoad(target: LoadTarget, requests: readonly LoadRequest[], options: LoadOptions): Promise<LoadRun> {
  const signal = options.signal ?? new AbortController().signal;
  // Every request in flight listens to the run's signal (a stream, a fetch): 16 clients are not a leak.
  setMaxListeners(Math.max(getMaxListeners(signal), 4 * options.concurrency), signal);
  const timings: RequestTiming[] = new Array(requests.length);
  let next = 0;
  const started = performance.now();
  const client = async () => {
    while (next < requests.length && !signal.aborted) {
      const index = next++;
      timings[index] = await timeRequest(target, requests[index], started, signal);
      options.onRequestDone?.(timings[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, requests.length) }, client));
  return { target: target.name, concurrency: options.concurrency, wallMs: performance.now() - started, requests: timings.filter(Boolean) };
}

async function timeRequest(target: LoadTarget, request: LoadRequest, runStarted: number, signal: AbortSignal): Promise<RequestTiming> {
  const sent = performance.now();
  const timing: RequestTiming = { id: request.id, sentAt: sent - runStarted, ttft: Number.NaN, itl: [], tokens: 0, e2e: Number.NaN };
  let last = sent;
  try {
    const stream = target.stream(request, signal);
    let step = await stream.next();
    while (!step.done) {
      const now = performance.now();
      const { tokens } = step.value;
      if (timing.tokens === 0) timing.ttft = now - sent;
      else for (let k = 0; k < tokens; k++) timing.itl.push((now - last) / tokens);
      timing.tokens += tokens;
      last = now;
      step = await stream.next();
    }
    if (step.value !== undefined) timing.tokens = step.value;
    timing.e2e = last - sent;
  } catch (error) {
    timing.error = describeError(error);
  }
  return timing;
}

/** Tries of a request whose connection closes before any response (the `openai` client makes 3). */
const CONNECTION_TRIES = 3;

/**
 * Sends again when the connection closed before any response (a keep-alive connection the server
 * closed as it was reused: llama-server does so after a few idle seconds, and the request never
 * reached it; the next pooled connection may be just as stale), as the `openai` client does. The
 * time to first token counts from the first try.
 */
async function withConnectionRetry(send: () => Promise<Response>, signal: AbortSignal): Promise<Response> {
  for (let tries = 1; ; tries++) {
    try {
      return await send();
    } catch (error) {
      if (signal.aborted || !closedBeforeResponse(error) || tries === CONNECTION_TRIES) throw error;
    }
  }
}

function closedBeforeResponse(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined;
  const code = cause instanceof Error && 'code' in cause ? cause.code : undefined;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET';
}

/** The message with its causes: fetch says only "fetch failed"; why (a reset socket, a timeout) is in `cause`. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let current = error; current !== undefined && parts.length < 4; current = current instanceof Error ? current.cause : undefined) {
    const code = current instanceof Error && 'code' in current && typeof current.code === 'string' ? ` (${current.code})` : '';
    parts.push(current instanceof Error ? `${current.message}${code}` : String(current));
  }
  return parts.join(': ');
}

export interface LoadSummary {
  target: string;
  concurrency: number;
  requests: number;
  failed: number;
  tokens: number;
  /** Aggregate: all requests' tokens over the run's wall time. */
  tokens_per_second: number;
  /**
   * While `concurrency` requests were in flight: the tokens that arrived before the run began to
   * drain (the first request to end after the last one was sent), over that time. The drain is
   * how the prompt set ends, not how the target serves that many: requests that finish together
   * (plain decoding of equal-length answers) have none, while speculation, which moves each request
   * at its own pace, ends with a few requests running alone (at 8 concurrent, 16 requests of 256
   * tokens, 5-13 s of a 45 s run).
   */
  steady_tokens_per_second: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  e2e_p50_ms: number;
  /** The first failure's message, when a request failed. */
  first_error?: string;
}

export function summarizeLoad(run: LoadRun): LoadSummary {
  const done = run.requests.filter((timing) => timing.error === undefined);
  const tokens = done.reduce((sum, timing) => sum + timing.tokens, 0);
  const ttft = done.map((timing) => timing.ttft);
  const itl = done.flatMap((timing) => timing.itl);
  const e2e = done.map((timing) => timing.e2e);
  return {
    target: run.target,
    concurrency: run.concurrency,
    requests: run.requests.length,
    failed: run.requests.length - done.length,
    tokens,
    tokens_per_second: run.wallMs > 0 ? (tokens / run.wallMs) * 1000 : Number.NaN,
    steady_tokens_per_second: steadyTokensPerSecond(run.requests, done),
    ttft_p50_ms: percentile(ttft, 50),
    ttft_p99_ms: percentile(ttft, 99),
    itl_p50_ms: percentile(itl, 50),
    itl_p99_ms: percentile(itl, 99),
    e2e_p50_ms: percentile(e2e, 50),
    ...(done.length < run.requests.length ? { first_error: run.requests.find((timing) => timing.error !== undefined)!.error } : {}),
  };
}

/** See LoadSummary.steady_tokens_per_second; `done`: the requests that succeeded. */
function steadyTokensPerSecond(requests: readonly RequestTiming[], done: readonly RequestTiming[]): number {
  const lastSent = Math.max(...requests.map((timing) => timing.sentAt));
  const ends = done.map((timing) => timing.sentAt + timing.e2e).filter((end) => end > lastSent);
  if (ends.length === 0) return Number.NaN;
  const drainsAt = Math.min(...ends);
  let tokens = 0;
  for (const timing of done) {
    // The first token, then one per gap (a piece of k tokens: k gaps of a k-th of its wait).
    let at = timing.sentAt + timing.ttft;
    if (at > drainsAt) continue;
    tokens++;
    for (const gap of timing.itl) {
      at += gap;
      if (at > drainsAt) break;
      tokens++;
    }
  }
  return drainsAt > 0 ? (tokens / drainsAt) * 1000 : Number.NaN;
}

/** `tachyon` for plain decoding, `tachyon spec auto` for a speculative mode. */
export function engineTargetName(speculation: SpeculationMode): string {
  return speculation === 'off' ? 'tachyon' : `tachyon spec ${speculation}`;
}

/** The in-process engine: each request is one `engine.generate` stream, greedy. */
export class EngineTarget implements LoadTarget {
  readonly name: string;

  /**
   * `salt`: the requests' cache salt. Runs that send the same prompts again give each run its own:
   * the suffix drafter keeps a history of answers per salt and would replay a repeated prompt's
   * answer (and the prefix cache would restore its KV).
   */
  constructor(
    private readonly engine: Engine,
    private readonly speculation: SpeculationMode,
    private readonly salt?: string,
  ) {
    this.name = engineTargetName(speculation);
  }

  async *stream(request: LoadRequest, signal: AbortSignal): AsyncGenerator<Arrival, number, void> {
    const generation = this.engine.generate(request.prompt, { maxTokens: request.maxTokens, temperature: 0, speculation: this.speculation, signal, cacheSalt: this.salt });
    for (;;) {
      const step = await generation.next();
      if (step.done) return step.value.tokens.length;
      if (step.value.tokens.length > 0) yield { tokens: step.value.tokens.length };
    }
  }
}

/** An OpenAI-compatible server: `POST /v1/completions` with a prompt string, streamed as server-sent events. */
export class OpenAiCompletionsTarget implements LoadTarget {
  constructor(
    readonly name: string,
    private readonly baseUrl: string,
    private readonly options: {
      model?: string;
      apiKey?: string;
      /** The server is `tachyon serve`: its chunks name their tokens (include_drafters), so a chunk of k tokens counts k. */
      tachyon?: boolean;
    } = {},
  ) {}

  async *stream(request: LoadRequest, signal: AbortSignal): AsyncGenerator<Arrival, number | undefined, void> {
    const response = await withConnectionRetry(() => fetch(`${this.baseUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) },
      body: JSON.stringify({
        model: this.options.model,
        prompt: request.prompt,
        max_tokens: request.maxTokens,
        temperature: 0,
        stream: true,
        stream_options: this.options.tachyon ? { include_usage: true, include_drafters: true } : { include_usage: true },
      }),
      signal,
    }), signal);
    if (!response.ok || !response.body) throw new Error(`${this.name}: HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`);
    let completionTokens: number | undefined;
    const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    for await (const event of events) {
      if (event.data === '[DONE]') break;
      const chunk = parseChunk(this.name, event.data);
      const tokens = this.options.tachyon ? chunk.tachyonTokens : chunk.text ? 1 : 0;
      if (tokens > 0) yield { tokens };
      completionTokens = chunk.completionTokens ?? completionTokens;
    }
    return completionTokens;
  }
}

interface CompletionChunk {
  text: string;
  /** Tokens `tachyon serve` names in the chunk (0 from other servers). */
  tachyonTokens: number;
  completionTokens?: number;
}

/** One streamed `text_completion` chunk: its text, and the token count when it carries `usage`. */
function parseChunk(target: string, data: string): CompletionChunk {
  let chunk: { choices?: { text?: unknown }[]; usage?: { completion_tokens?: unknown }; tachyon?: { tokens?: unknown }; error?: { message?: unknown } };
  try {
    chunk = JSON.parse(data) as typeof chunk;
  } catch {
    throw new Error(`${target}: a streamed event is not JSON: ${data.slice(0, 200)}`);
  }
  if (chunk.error) throw new Error(`${target}: ${String(chunk.error.message ?? JSON.stringify(chunk.error))}`);
  const text = chunk.choices?.[0]?.text;
  const completionTokens = chunk.usage?.completion_tokens;
  const tachyonTokens = Array.isArray(chunk.tachyon?.tokens) ? chunk.tachyon.tokens.length : 0;
  return { text: typeof text === 'string' ? text : '', tachyonTokens, completionTokens: typeof completionTokens === 'number' ? completionTokens : undefined };
}
