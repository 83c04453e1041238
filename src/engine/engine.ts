/**
 * The typed entry point. `Engine.load` starts a worker thread that loads the model (and optionally
 * a draft model) and runs the engine loop; this thread keeps the async API: any number of
 * concurrent generations, streamed back as token deltas, cancelled by an AbortSignal or by
 * stopping the iteration. The event loop here stays free while the model decodes.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { ChatMessage } from '../generate/chat.js';
import type { GenerationChunk, GenerationResult } from '../generate/generate.js';
import { generateAll } from '../generate/generate.js';
import type { ContextOptions } from '../llama/context.js';
import type { LoadModelOptions } from '../llama/model.js';
import { ModelLoadError } from '../llama/model.js';
import { llamaThreadRegistry } from '../llama/logger.js';
import { defaultModelPath } from '../paths.js';
import { withReasoningPresets } from '../reasoning/presets.js';
import { deserializeError, EngineDisposedError, type SerializedError } from './errors.js';
import type { EngineLoopOptions, EngineStatus } from './loop.js';
import type { DraftBudget, TreeShape } from '../speculative/tree.js';
import type { CostPoint } from '../speculative/cost-model.js';
import type { TierName } from '../kvcache/tiers/tier.js';
import type { PrefixCacheStats } from '../kvcache/prefix-cache.js';

export type { EngineStatus };
import { STATUS_FIELDS, type Command, type EngineInfo, type PromptInput, type Query, type WireEvent, type WorkerData, type WorkerMessage, type WorkerOptions } from './protocol.js';
import type { RequestOptions } from './request.js';

export interface EngineOptions extends LoadModelOptions, Omit<ContextOptions, 'contextSize' | 'sequences'>, EngineLoopOptions {
  /** GGUF file; default: the embedded testbed model. */
  model?: string;
  /** A small GGUF with the same vocabulary, for draft-model speculation. */
  draftModel?: string;
  /** Positions one request may use, prompt included; default min(the model's training context, 4096). */
  contextSize?: number;
  /** KV cells shared by all requests; default contextSize × maxSequences (at most 16,384, at least contextSize). */
  kvCells?: number;
  /** Called before the one-time measurement of the verify cost curve. */
  onMeasure?: () => void;
  /**
   * Verify every draft within this budget instead of letting the adaptive planner decide what
   * pays (ablations, and tests that need drafts verified on a model where they never pay).
   */
  draftBudget?: DraftBudget;
  /** A KV prefix cache: repeated prompt prefixes are loaded from its tiers instead of recomputed. */
  cache?: EngineCacheOptions;
  /** A Jinja chat template to use instead of the model's `tokenizer.chat_template` (llama-server's --chat-template-file). */
  chatTemplate?: string;
}

/** Where the prefix cache keeps blocks (see src/kvcache/). */
export interface EngineCacheOptions {
  /** Looked up in this order (RAM, disk, Redis). */
  tiers: TierName[];
  /** Disk tier folder; default under the user's cache folder. */
  dir?: string;
  /** Redis tier URL (AUTH and TLS through it: redis://user:pass@host, rediss://…). */
  redisUrl?: string;
  /** Tokens per block; default 64. */
  blockSize?: number;
  ramBytes?: number;
  diskBytes?: number;
}

export interface GenerateOptions extends RequestOptions {
  signal?: AbortSignal;
}

export type Prompt = string | readonly number[];

/** Events of one request, buffered until its consumer asks for them. */
class RequestChannel {
  private readonly buffered: WireEvent[] = [];
  private waiter: ((event: WireEvent) => void) | undefined;

  push(event: WireEvent): void {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(event);
    } else this.buffered.push(event);
  }

  next(): Promise<WireEvent> {
    const event = this.buffered.shift();
    return event ? Promise.resolve(event) : new Promise((resolve) => (this.waiter = resolve));
  }
}

export class Engine {
  private readonly requests = new Map<number, RequestChannel>();
  private readonly replies = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private disposing: Promise<void> | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly commands: MessagePort,
    private readonly statusView: Float64Array,
    /** The model and the limits the engine runs with. */
    readonly info: EngineInfo,
  ) {
    worker.on('message', (message: WorkerMessage) => this.receive(message));
    worker.on('error', (error) => this.fail(error));
    worker.on('exit', () => this.fail(new EngineDisposedError()));
    this.updateRef();
  }

  static async load(options: EngineOptions = {}): Promise<Engine> {
    const { onProgress, onNotice, onMeasure, ...rest } = options;
    const workerOptions: WorkerOptions = { ...rest, model: options.model ?? defaultModelPath, reportProgress: onProgress !== undefined };
    const channel = new MessageChannel();
    const status = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT * STATUS_FIELDS.length);
    const worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { options: workerOptions, commands: channel.port2, status, llamaThreads: llamaThreadRegistry() } satisfies WorkerData,
      transferList: [channel.port2],
    });
    const info = await new Promise<EngineInfo>((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.type === 'progress') onProgress?.(message.fraction);
        else if (message.type === 'notice') (onNotice ?? ((line: string) => process.stderr.write(`${line}\n`)))(message.line);
        else if (message.type === 'ready') settle(() => resolve(message.info));
        // The rejection waits for the worker to end: a caller that exits the process on it
        // (the CLI does) must not tear the worker down while it is still counting itself out of
        // llama.cpp and finishing its module.
        else if (message.type === 'failed') settle(() => worker.on('error', () => {}).once('exit', () => reject(deserializeError(message.error))));
      };
      const onError = (error: Error) => settle(() => reject(error));
      const onExit = () => settle(() => reject(new ModelLoadError('the engine worker exited while loading')));
      const settle = (then: () => void) => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        then();
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
    // The cost curve is measured on the first speculative request, after load.
    if (onMeasure) worker.on('message', (message: WorkerMessage) => message.type === 'measuring' && onMeasure());
    return new Engine(worker, channel.port1, new Float64Array(status), info);
  }

  /**
   * Text prompts get BOS (if the model wants it; `addSpecial: false` leaves it out) and control
   * tokens written as text are recognised.
   */
  tokenize(prompt: Prompt, options: { addSpecial?: boolean } = {}): Promise<number[]> {
    const input = promptInput(prompt);
    return this.query({ method: 'tokenize', prompt: input.kind === 'text' ? { ...input, addSpecial: options.addSpecial } : input }) as Promise<number[]>;
  }

  /** The text of `tokens` (control tokens written out); each must be an id of the vocabulary. */
  detokenize(tokens: readonly number[]): Promise<string> {
    return this.query({ method: 'detokenize', tokens: [...tokens], each: false }) as Promise<string>;
  }

  /** Each token's text alone (a byte of a multi-byte character reads as U+FFFD). */
  tokenPieces(tokens: readonly number[]): Promise<string[]> {
    return this.query({ method: 'detokenize', tokens: [...tokens], each: true }) as Promise<string[]>;
  }

  /** Renders messages with the model's chat template and tokenizes the result. */
  chatPrompt(messages: readonly ChatMessage[]): Promise<number[]> {
    return this.query({ method: 'tokenize', prompt: { kind: 'messages', messages: [...messages] } }) as Promise<number[]>;
  }

  /** One user message: through the model's chat template when it has one, else the text as it is. */
  userPrompt(text: string): Promise<number[]> {
    return this.info.model.chatTemplate ? this.chatPrompt([{ role: 'user', content: text }]) : this.tokenize(text);
  }

  /** Requests running and waiting, KV cells in use (read without a round trip: the loop publishes them every step). */
  status(): EngineStatus {
    return Object.fromEntries(STATUS_FIELDS.map((field, index) => [field, this.statusView[index]])) as Record<(typeof STATUS_FIELDS)[number], number>;
  }

  /** The prefix cache's figures (per tier hits, misses, bytes, latency; blocks restored and stored), or undefined without a cache. */
  cacheStats(): Promise<PrefixCacheStats | undefined> {
    return this.query({ method: 'cacheStats' }) as Promise<PrefixCacheStats | undefined>;
  }

  /**
   * The target's measured verify cost curve on this machine: seconds per decode of n tokens (the
   * one speculation plans with; measured on first use, in a few seconds, then cached on disk).
   */
  costCurve(): Promise<CostPoint[]> {
    return this.query({ method: 'costCurve' }) as Promise<CostPoint[]>;
  }

  /** Every sequence id that holds KV cells, with its positions (for tests and diagnostics). */
  kvAudit(): Promise<{ seq: number; min: number; max: number }[]> {
    return this.query({ method: 'kvAudit' }) as Promise<{ seq: number; min: number; max: number }[]>;
  }

  /** Logits after `prompt` + `continuation`, the continuation evaluated one token per decode as plain decoding evaluates it. */
  logitsAfter(prompt: readonly number[], continuation: readonly number[]): Promise<Float32Array> {
    return this.query({ method: 'logitsAfter', prompt: [...prompt], continuation: [...continuation] }) as Promise<Float32Array>;
  }

  /**
   * The logits row that chose `output[at]` in a speculative run, evaluated again in that run's
   * own decode batches: `trees` are the trees its steps verified (`GenerationResult.verifiedTrees`,
   * recorded with `recordTrees`). Tells kernel numerics apart from a verification bug where a run
   * departs from plain decoding.
   */
  rowAlongTrees(prompt: readonly number[], output: readonly number[], trees: readonly TreeShape[], at: number): Promise<Float32Array> {
    return this.query({ method: 'rowAlongTrees', prompt: [...prompt], output: [...output], trees: trees.map((tree) => ({ tokens: [...tree.tokens], parents: [...tree.parents] })), at }) as Promise<Float32Array>;
  }

  /**
   * Branches off one sequence, scored as a verification scores a tree's branches: per branch, the
   * target's rows after the sequence's first `at` tokens and after each longer prefix of that +
   * `tokens` (row m: after the first m of `tokens`). The sequence is evaluated once for all.
   */
  branchRows(sequence: readonly number[], branches: readonly { at: number; tokens: readonly number[] }[]): Promise<Float32Array[][]> {
    return this.query({ method: 'branchRows', sequence: [...sequence], branches: branches.map(({ at, tokens }) => ({ at, tokens: [...tokens] })) }) as Promise<Float32Array[][]>;
  }

  /** Streams a generation. Any number may run at once; each gets its own sequence in the engine loop. */
  generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    return this.stream(promptInput(prompt), options);
  }

  complete(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    return generateAll(this.generate(prompt, options));
  }

  chat(messages: readonly ChatMessage[], options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    return this.stream({ kind: 'messages', messages: [...messages] }, options);
  }

  /**
   * Stops the engine: requests in flight end at once with stop reason `abort` (their streams end
   * normally), later calls throw EngineDisposedError, and the worker frees the model and exits.
   */
  dispose(): Promise<void> {
    this.disposing ??= new Promise<void>((resolve) => {
      this.worker.once('exit', () => resolve());
      this.send({ type: 'dispose' });
      this.worker.ref();
    });
    return this.disposing;
  }

  private async *stream(prompt: PromptInput, options: GenerateOptions): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    const { signal, ...rest } = options;
    this.checkUsable();
    // An effort level becomes this model's thresholds here, where the model file is known.
    const requestOptions = await withReasoningPresets(this.info.modelPath, rest);
    const id = ++this.nextId;
    const channel = new RequestChannel();
    this.requests.set(id, channel);
    this.updateRef();
    const cancel = () => this.send({ type: 'cancel', id });
    signal?.addEventListener('abort', cancel, { once: true });
    let ended = false;
    try {
      this.send({ type: 'generate', id, prompt, options: requestOptions });
      if (signal?.aborted) cancel();
      for (;;) {
        const event = await channel.next();
        if (event.type === 'chunk') {
          yield event.chunk;
          continue;
        }
        ended = true;
        if (event.type === 'done') return event.result;
        throw deserializeError(event.error);
      }
    } finally {
      signal?.removeEventListener('abort', cancel);
      // A consumer that stops iterating cancels the request; its KV is freed on the next step.
      if (!ended && !this.disposing && !this.failure) cancel();
      this.requests.delete(id);
      this.updateRef();
    }
  }

  private query(query: Query): Promise<unknown> {
    this.checkUsable();
    const id = ++this.nextId;
    const reply = new Promise<unknown>((resolve, reject) => this.replies.set(id, { resolve, reject }));
    this.updateRef();
    this.send({ type: 'query', id, query });
    return reply;
  }

  private receive(message: WorkerMessage): void {
    if (message.type === 'events') for (const { id, event } of message.events) this.requests.get(id)?.push(event);
    else if (message.type === 'reply') {
      const pending = this.replies.get(message.id);
      this.replies.delete(message.id);
      this.updateRef();
      if (message.error) pending?.reject(deserializeError(message.error));
      else pending?.resolve(message.value);
    }
  }

  private send(command: Command): void {
    this.commands.postMessage(command);
  }

  /** The worker keeps the process alive only while something is in flight (an idle engine lets a script end). */
  private updateRef(): void {
    if (this.requests.size > 0 || this.replies.size > 0 || this.disposing) this.worker.ref();
    else this.worker.unref();
  }

  private checkUsable(): void {
    if (this.failure) throw this.failure;
    if (this.disposing) throw new EngineDisposedError();
  }

  /** The worker died or was disposed: everything in flight ends with the error. */
  private fail(error: Error): void {
    this.failure ??= error;
    const serialized: SerializedError = { name: error.name, message: error.message };
    for (const channel of this.requests.values()) channel.push({ type: 'error', error: serialized });
    for (const pending of this.replies.values()) pending.reject(error);
    this.replies.clear();
  }
}

function promptInput(prompt: Prompt): PromptInput {
  return typeof prompt === 'string' ? { kind: 'text', text: prompt } : { kind: 'tokens', tokens: [...prompt] };
}
