/**
 * The OpenAI-compatible HTTP server: routes, schemas and SSE framing over the Engine API. Handlers
 * hold no generation logic; they translate requests into engine calls and engine output into
 * OpenAI objects.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import type { Engine, GenerateOptions, Prompt } from '../engine/engine.js';
import type { GenerationChunk, GenerationResult } from '../generate/generate.js';
import { packageRoot } from '../paths.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { ApiError, invalidRequest, toApiError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import {
  chatFormat,
  chatMessages,
  completionFormat,
  finishReason,
  generationOptions,
  refuseUnsupported,
  responseHeader,
  summaryOf,
  usageOf,
  type ResponseFormat,
} from './openai.js';
import { ChatCompletionRequest, CompletionRequest, type GenerationRequest } from './schemas.js';
import { SseStream } from './sse.js';
import { addTokenizeRoutes } from './tokenize.js';

export interface ServerOptions {
  engine: Engine;
  /** The model id clients name (`model` field); others get 404. */
  modelId: string;
  /** Requests must carry `Authorization: Bearer <apiKey>` (all but /health and the playground page). */
  apiKey?: string;
  /** Allowed browser origin(s) for CORS: true = any. */
  cors?: string | boolean;
  /** Requests generating at once and requests that may wait: /health answers 503 while both are full. */
  parallel: number;
  maxQueued: number;
  /** Largest request body in bytes; default 1 MiB. */
  bodyLimit?: number;
  /** How long a stream may wait for a reader whose buffer is full before it is cancelled; default 10 s. */
  drainTimeoutMs?: number;
  /** Longest a request may take, queue included; default 10 min. */
  requestTimeoutMs?: number;
  /** Time to receive a whole request (headers and body); default 30 s. */
  receiveTimeoutMs?: number;
  /** Idle keep-alive connections close after this; default 5 s. */
  idleTimeoutMs?: number;
  /** Speculative decoding of every request; default `auto`. */
  speculation?: SpeculationMode;
  /** Told about failures that became a 5xx (the client only hears "internal server error"). */
  onServerError?: (error: unknown, request: { method: string; url: string }) => void;
}

export interface TachyonServer {
  app: FastifyInstance;
  /** Stops accepting, lets in-flight requests finish for `graceMs`, then cancels them and closes. */
  shutdown(graceMs: number): Promise<void>;
}

const playgroundPath = join(packageRoot, 'src', 'server', 'playground', 'index.html');

export async function createServer(options: ServerOptions): Promise<TachyonServer> {
  const { engine } = options;
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    requestTimeout: options.receiveTimeoutMs ?? 30_000,
    keepAliveTimeout: options.idleTimeoutMs ?? 5_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Refuse instead of quietly dropping unknown fields or turning "1" into 1.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
  });
  // The API takes JSON only: a text/plain body is a 415, not a string that fails the schema.
  app.removeContentTypeParser('text/plain');
  const metrics = new ServerMetrics(
    () => engine.status(),
    () => engine.cacheStats(),
  );
  const stopping = new AbortController();
  const requestTimeoutMs = options.requestTimeoutMs ?? 600_000;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const playground = readFileSync(playgroundPath, 'utf8');

  app.setErrorHandler((error, request, reply) => {
    const apiError = toApiError(error, request.url.startsWith('/v1/chat/') ? 'messages' : 'prompt');
    if (apiError.status >= 500) options.onServerError?.(error, request);
    void reply.code(apiError.status).headers(apiError.headers).send(apiError.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(new ApiError(404, `no route ${request.method} ${request.url}`, 'invalid_request_error', null, 'not_found').body);
  });
  if (options.cors) await app.register(cors, { origin: options.cors === true ? '*' : options.cors });
  if (options.apiKey) app.addHook('onRequest', requireApiKey(options.apiKey));
  app.addHook('preValidation', async (request) => refuseUnsupported(request.body));

  app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(playground));
  app.get('/health', (_request, reply) => {
    const { running, waiting } = engine.status();
    const ready = !stopping.signal.aborted && (running < options.parallel || waiting < options.maxQueued);
    void reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : stopping.signal.aborted ? 'shutting_down' : 'busy' });
  });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));
  const card = modelCard(options.modelId, engine.info.contextSize);
  app.get('/v1/models', () => ({ object: 'list', data: [card] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', (request) => {
    checkModel(request.params.id, options.modelId, 'id');
    return card;
  });

  const serve = (request: FastifyRequest, reply: FastifyReply, body: GenerationRequest, format: ResponseFormat, prompt: () => Prompt | Promise<Prompt>) => {
    if (body.model != null) checkModel(body.model, options.modelId, 'model');
    const n = body.n ?? 1;
    if (n > options.parallel + options.maxQueued) {
      throw invalidRequest(`'n' is ${n}: this server holds ${options.parallel + options.maxQueued} requests at once (--parallel ${options.parallel} + --max-queued ${options.maxQueued})`, 'n', 'invalid_value');
    }
    const signal = requestSignal(reply, stopping.signal, requestTimeoutMs);
    const reportServerError = (error: unknown) => options.onServerError?.(error, request);
    const generation = { engine, metrics, format, body, started: performance.now(), signal, drainTimeoutMs, modelId: options.modelId, reportServerError };
    const tokenPieces = body.stream_options?.include_drafters === true;
    const requestOptions = { ...generationOptions(body, { contextSize: engine.info.contextSize, vocabularySize: engine.info.model.vocabularySize }), tokenPieces, speculation: options.speculation ?? 'auto' };
    const tokens = once(prompt);
    const start = (choiceSignal: AbortSignal, index: number) => generateFrom(engine, tokens, { ...requestOptions, seed: choiceSeed(requestOptions.seed, index), signal: choiceSignal });
    const choices = new Choices(generation, start, n);
    return body.stream ? streamResponse(generation, choices, reply) : wholeResponse(generation, choices);
  };
  addTokenizeRoutes(app, engine, (requested) => checkModel(requested, options.modelId, 'model'));
  app.post<{ Body: ChatCompletionRequest }>('/v1/chat/completions', { schema: { body: ChatCompletionRequest } }, (request, reply) =>
    serve(request, reply, request.body, chatFormat, () => engine.chatPrompt(chatMessages(request.body))),
  );
  app.post<{ Body: CompletionRequest }>('/v1/completions', { schema: { body: CompletionRequest } }, (request, reply) =>
    serve(request, reply, request.body, completionFormat, () => completionPrompt(request.body.prompt, engine.info.model.vocabularySize)),
  );

  return {
    app,
    async shutdown(graceMs) {
      const closed = app.close();
      const grace = setTimeout(() => stopping.abort(new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down')), graceMs);
      await closed;
      clearTimeout(grace);
    },
  };
}

/** OpenAI's model object, with vLLM's `max_model_len` (the context per request) for clients that size prompts. */
function modelCard(id: string, contextSize: number) {
  return { id, object: 'model', created: 0, owned_by: 'tachyon', max_model_len: contextSize };
}

function checkModel(requested: string, served: string, param: string): void {
  if (requested !== served) throw new ApiError(404, `the model '${requested}' does not exist; this server serves '${served}'`, 'invalid_request_error', param, 'model_not_found');
}

/** The prompt as the engine takes it: text, or token ids that must exist in the vocabulary. */
function completionPrompt(prompt: CompletionRequest['prompt'], vocabularySize: number): Prompt {
  if (typeof prompt === 'string') return prompt;
  const [first] = prompt;
  if (typeof first === 'string') return first;
  const tokens = prompt as number[];
  const outside = tokens.findIndex((token) => token >= vocabularySize);
  if (outside >= 0) throw invalidRequest(`prompt[${outside}] = ${tokens[outside]} is not a token id of this model (0..${vocabularySize - 1})`, 'prompt', 'invalid_value');
  return tokens;
}

function requireApiKey(apiKey: string) {
  const expected = Buffer.from(`Bearer ${apiKey}`);
  return async (request: FastifyRequest) => {
    if (request.method === 'OPTIONS' || request.url === '/health' || (request.method === 'GET' && request.url === '/')) return;
    const given = Buffer.from(request.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError(401, 'missing or wrong API key: send Authorization: Bearer <key>', 'invalid_request_error', null, 'invalid_api_key');
    }
  };
}

/** Aborted when the client goes away, the request runs too long, or the server stops. */
function requestSignal(reply: FastifyReply, stopping: AbortSignal, timeoutMs: number): AbortSignal {
  const disconnected = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) disconnected.abort(new ApiError(499, 'the client closed the connection', 'invalid_request_error'));
  });
  return AbortSignal.any([disconnected.signal, stopping, AbortSignal.timeout(timeoutMs)]);
}

/** Why an aborted request ended, in the client's terms. */
function abortError(signal: AbortSignal): ApiError {
  const reason: unknown = signal.reason;
  if (reason instanceof ApiError) return reason;
  return new ApiError(408, 'the request took longer than the server allows', 'invalid_request_error', null, 'request_timeout');
}

interface Generation {
  engine: Engine;
  metrics: ServerMetrics;
  format: ResponseFormat;
  body: GenerationRequest;
  started: number;
  signal: AbortSignal;
  drainTimeoutMs: number;
  modelId: string;
  /** A failure after the 200 went out: the client gets an error event, the operator the error. */
  reportServerError(error: unknown): void;
}

type EngineStream = AsyncGenerator<GenerationChunk, GenerationResult, void>;

/** Pulls one chunk, timing it for the metrics; an aborted engine wait becomes the abort's reason. */
class TimedStream {
  private previous: number | undefined;

  constructor(
    private readonly generation: Generation,
    private readonly stream: EngineStream,
  ) {}

  async next(): Promise<IteratorResult<GenerationChunk, GenerationResult>> {
    const { signal, metrics, started } = this.generation;
    let step: IteratorResult<GenerationChunk, GenerationResult>;
    try {
      step = await this.stream.next();
    } catch (error) {
      throw signal.aborted ? abortError(signal) : error;
    }
    const now = performance.now();
    if (step.done) {
      const aborted = step.value.stats.stopReason === 'abort';
      metrics.observeFinished(step.value.stats, aborted ? 'abort' : finishReason(step.value.stats.stopReason), (now - started) / 1000);
      if (aborted) throw abortError(signal);
    } else if (step.value.tokens.length > 0) {
      if (this.previous === undefined) metrics.observeFirstToken((now - started) / 1000);
      else metrics.observeTokens(step.value.tokens.length, (now - this.previous) / 1000);
      this.previous = now;
    }
    return step;
  }

  /** Ends the engine's generation early (its turn and KV cells are released). */
  async close(): Promise<void> {
    await this.stream.return(undefined as never);
  }
}

/**
 * A request's choices (`n`), one engine request each: they run side by side in the engine's
 * batches. The first choice that fails cancels the others.
 */
class Choices {
  private readonly streams: TimedStream[] = [];
  private readonly signal: AbortSignal;
  private readonly cancel = new AbortController();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly generation: Generation,
    private readonly start: (signal: AbortSignal, index: number) => EngineStream,
    private readonly count: number,
  ) {
    this.signal = AbortSignal.any([generation.signal, this.cancel.signal]);
  }

  /**
   * Starts the choices and returns the first chunk of each. Choice 0 goes first: once its prompt
   * is in the KV cache, the others share its cells instead of each evaluating the prompt again.
   */
  async firsts(): Promise<IteratorResult<GenerationChunk, GenerationResult>[]> {
    const first = await this.startFrom(0).next();
    for (let index = 1; index < this.count; index++) this.startFrom(index);
    const rest = await this.each((stream) => stream.next(), 1);
    return [first, ...rest];
  }

  /** Runs `task` for every choice from `from` on; rethrows the first failure once every task has stopped. */
  async each<T>(task: (stream: TimedStream, index: number) => Promise<T>, from = 0): Promise<T[]> {
    const results = await Promise.all(
      this.streams.slice(from).map((stream, i) =>
        task(stream, from + i).catch((error: unknown) => {
          this.failure ??= { error };
          this.cancel.abort();
          return undefined;
        }),
      ),
    );
    if (this.failure) throw this.failure.error;
    return results as T[];
  }

  async close(): Promise<void> {
    await Promise.all(this.streams.map((stream) => stream.close()));
  }

  private startFrom(index: number): TimedStream {
    const stream = new TimedStream(this.generation, this.start(this.signal, index));
    this.streams.push(stream);
    return stream;
  }
}

async function wholeResponse(generation: Generation, choices: Choices) {
  try {
    const firsts = await choices.firsts();
    const results = await choices.each(async (stream, index) => {
      let step = firsts[index];
      while (!step.done) step = await stream.next();
      return step.value;
    });
    const header = responseHeader(generation.format, generation.modelId);
    return {
      ...header,
      object: generation.format.object,
      choices: results.map((result, index) => ({ index, logprobs: null, ...generation.format.whole(result), finish_reason: finishReason(result.stats.stopReason) })),
      usage: usageOf(results),
      tachyon: summaryOf(results),
    };
  } finally {
    await choices.close();
  }
}

/**
 * The first chunk of every choice is awaited before the 200 goes out, so errors found on the way
 * in (prompt too long, queue full) still get their own status; later errors become an error
 * event, then [DONE]. Choices interleave their chunks, each naming its index.
 */
async function streamResponse(generation: Generation, choices: Choices, reply: FastifyReply): Promise<void> {
  try {
    const firsts = await choices.firsts();
    const sse = new SseStream(reply.raw, generation.drainTimeoutMs);
    reply.hijack();
    sse.open(reply.getHeaders());
    const header = responseHeader(generation.format, generation.modelId);
    const chunk = (index: number, choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
      ...header,
      object: generation.format.chunkObject,
      choices: [{ index, logprobs: null, finish_reason: null, ...choice }],
      ...extra,
    });
    try {
      const results = await choices.each(async (stream, index) => {
        let step = firsts[index];
        const opening = generation.format.opening;
        if (opening) await sse.send(chunk(index, opening));
        const withDrafters = generation.body.stream_options?.include_drafters === true;
        const delta = generation.format.deltas();
        while (!step.done) {
          const choice = delta(step.value);
          // With drafters asked for, every step's tokens go out, even those whose text is held back.
          if (withDrafters && step.value.tokens.length > 0) await sse.send(chunk(index, choice ?? generation.format.noText, { tachyon: { tokens: draftedTokens(step.value) } }));
          else if (choice) await sse.send(chunk(index, choice));
          step = await stream.next();
        }
        const result = step.value;
        await sse.send(chunk(index, { ...generation.format.noText, finish_reason: finishReason(result.stats.stopReason) }, { tachyon: summaryOf([result]) }));
        return result;
      });
      if (generation.body.stream_options?.include_usage) await sse.send({ ...chunk(0, {}), choices: [], usage: usageOf(results) });
    } catch (error) {
      const apiError = toApiError(error);
      if (apiError.status >= 500) generation.reportServerError(error);
      await sse.send(apiError.body).catch(() => undefined);
    }
    await sse.send('[DONE]').catch(() => undefined);
    sse.end();
  } finally {
    await choices.close();
  }
}

function draftedTokens(chunk: GenerationChunk) {
  return chunk.tokens.map((_, i) => ({ text: chunk.pieces?.[i] ?? '', drafter: chunk.draftedBy[i] }));
}

/** The prompt of a request's choices, computed once (a chat template is a round trip to the engine). */
function once(prompt: () => Prompt | Promise<Prompt>): () => Promise<Prompt> {
  let tokens: Promise<Prompt> | undefined;
  return () => (tokens ??= Promise.resolve().then(prompt));
}

/** Choice i samples with its own seed, so `n` choices differ (and a seeded request repeats all of them). */
function choiceSeed(seed: number, index: number): number {
  return seed + index <= Number.MAX_SAFE_INTEGER ? seed + index : seed - index;
}

/** The engine's stream for a prompt that may need a round trip to the engine first (chat templates); errors surface on the first next(). */
async function* generateFrom(engine: Engine, prompt: () => Prompt | Promise<Prompt>, options: GenerateOptions): AsyncGenerator<GenerationChunk, GenerationResult, void> {
  return yield* engine.generate(await prompt(), options);
}
