/**
 * The engine's worker thread: it alone loads llama.cpp, owns the model, the contexts, the drafters
 * and the planner, and runs the engine loop with synchronous decodes (no cross-thread hop per
 * token). While it works, commands are drained between steps with receiveMessageOnPort (a loop
 * that never yields to the event loop receives no message events); when there is nothing to do,
 * it waits for the next message event.
 */
import { availableParallelism } from 'node:os';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { ChatFormatter } from '../generate/chat.js';
import { Context, DEFAULT_UNIFIED_KV } from '../llama/context.js';
import { detachLlamaLogger } from '../llama/library.js';
import { adoptLlamaThreadRegistry } from '../llama/logger.js';
import { Model } from '../llama/model.js';
import type { Tokenizer } from '../llama/tokenizer.js';
import { createDraftContext, DraftModelDrafter } from '../speculative/draft-model.js';
import { Speculation } from '../speculative/speculation.js';
import { serializeError } from './errors.js';
import { EngineLoop } from './loop.js';
import { EventOutbox } from './event-outbox.js';
import { PrefixCache } from '../kvcache/prefix-cache.js';
import { openTiers } from '../kvcache/tiers/open.js';
import { STATUS_FIELDS, type Command, type EngineInfo, type PromptInput, type Query, type WorkerData, type WorkerMessage, type WireEvent } from './protocol.js';
import type { CostPoint } from '../speculative/cost-model.js';
import type { RequestEvent } from './request.js';

/** Sequence ids beyond the running requests' own: tree branches borrow them for a step. */
const BRANCH_IDS = 64;
/** How often a busy loop with a KV cache lets the event loop turn (its tier writes run there). */
const YIELD_EVERY_MS = 2;
/** llama.cpp's limit on sequence ids. */
const MAX_SEQUENCES = 256;

const { options, commands, status, llamaThreads } = workerData as WorkerData;
adoptLlamaThreadRegistry(llamaThreads);
const statusView = new Float64Array(status);
const send = (message: WorkerMessage) => parentPort!.postMessage(message);
const outbox = new EventOutbox((events) => send({ type: 'events', events }));
/** Posts a message other than request events, after the events that wait (it must not overtake them). */
const post = (message: WorkerMessage) => {
  outbox.flush();
  send(message);
};

interface Loaded {
  model: Model;
  context: Context;
  draft?: { model: Model; context: Context };
  loop: EngineLoop;
  speculation: Speculation;
  cache?: PrefixCache;
  chat: ChatFormatter | undefined;
  /** A query that decodes (a cost-curve measurement) runs between steps: the loop waits for it. */
  between?: Promise<unknown>;
}

async function load(): Promise<Loaded> {
  const onProgress = options.reportProgress ? (fraction: number) => post({ type: 'progress', fraction }) : undefined;
  const model = await Model.load(options.model, { gpu: options.gpu, gpuLayers: options.gpuLayers, onProgress, onNotice: (line) => post({ type: 'notice', line }) });
  const owned: { dispose(): void }[] = [model];
  try {
    const threads = options.threads ?? availableParallelism();
    const maxSequences = options.maxSequences ?? 8;
    const contextSize = options.contextSize ?? Math.min(model.metadata.contextLength || 4096, 4096);
    const { kvCells, sequences } = kvLayout(contextSize, maxSequences);
    const context = Context.create(model, { ...options, contextSize: kvCells, sequences, threads });
    owned.push(context);
    let draft: Loaded['draft'];
    if (options.draftModel) {
      const draftModel = await DraftModelDrafter.loadModel(options.draftModel, model);
      owned.push(draftModel);
      draft = { model: draftModel, context: createDraftContext(draftModel, context, threads) };
    }
    const speculation = new Speculation({ target: context, threads, draft: draft?.context, fixedBudget: options.draftBudget, onMeasure: () => post({ type: 'measuring' }) });
    const loop = new EngineLoop(context, model.tokenizer, speculation, { ...options, sequenceLength: contextSize });
    const cache = options.cache ? await openCache(context, loop) : undefined;
    const chatTemplate = options.chatTemplate ?? model.metadata.chatTemplate;
    return { model, context, draft, loop, speculation, cache, chat: chatTemplate ? ChatFormatter.forModel(model, chatTemplate) : undefined };
  } catch (error) {
    for (const resource of owned.reverse()) resource.dispose();
    throw error;
  }
}

/**
 * The KV cells and sequence ids of the target's context. Unified (default): cells shared by all
 * requests, and ids beyond the requests' own for tree branches to borrow. A buffer per sequence:
 * one id and contextSize cells per request, nothing to borrow (trees are single chains; no cache scratch).
 */
function kvLayout(contextSize: number, maxSequences: number): { kvCells: number; sequences: number } {
  if (options.unifiedKv ?? DEFAULT_UNIFIED_KV) {
    return { kvCells: options.kvCells ?? Math.max(contextSize, Math.min(contextSize * maxSequences, 16384)), sequences: Math.min(MAX_SEQUENCES, maxSequences + BRANCH_IDS) };
  }
  if (options.cache) throw new Error('the KV prefix cache needs the unified KV cache (blocks move through a scratch sequence that shares their cells); drop unifiedKv: false');
  if (options.kvCells !== undefined && options.kvCells !== contextSize * maxSequences) {
    throw new Error(`with a KV buffer per sequence every request has contextSize cells: kvCells must be contextSize × maxSequences (${contextSize * maxSequences}) or unset`);
  }
  return { kvCells: contextSize * maxSequences, sequences: maxSequences };
}

/** The prefix cache over the tiers asked for, saving and restoring through a sequence id of the loop's own. */
async function openCache(context: Context, loop: EngineLoop): Promise<PrefixCache> {
  const { tiers, dir, redisUrl, ramBytes, diskBytes, blockSize } = options.cache!;
  const scratch = loop.ids.acquire()!;
  const opened = await openTiers({ tiers, dir, redisUrl, ramBytes, diskBytes, onWarning: (line) => post({ type: 'notice', line }) });
  const cache = await PrefixCache.create(context, scratch, { tiers: opened, blockSize });
  loop.useCache(cache, scratch);
  return cache;
}

function info({ model, context, loop, chat }: Loaded): EngineInfo {
  return {
    // The template in use: the model's, or the one the engine was given instead.
    model: { ...model.metadata, chatTemplate: chat?.source },
    modelPath: model.path,
    backend: model.library.backend,
    devices: [...model.library.devices],
    contextSize: loop.sequenceLength,
    kvCells: context.contextSize,
    maxSequences: loop.maxSequences,
  };
}

function tokenize(engine: Loaded, prompt: PromptInput): number[] {
  const { tokenizer } = engine.model;
  if (prompt.kind === 'tokens') return prompt.tokens;
  if (prompt.kind === 'text') return tokenizer.tokenize(prompt.text, { addSpecial: prompt.addSpecial });
  const formatter = engine.chat ?? ChatFormatter.forModel(engine.model); // throws the clear "no chat template" error
  const text = formatter.render(prompt.messages);
  return tokenizer.tokenize(text, { addSpecial: !formatter.startsWithBos(text) });
}

/** The text of `tokens`, or (`each`) of each token alone; an id outside the vocabulary throws. */
function detokenize(tokenizer: Tokenizer, tokens: readonly number[], each: boolean): string | string[] {
  return each ? tokens.map((token) => tokenizer.detokenize([token])) : tokenizer.detokenize(tokens);
}

function answer(engine: Loaded, query: Query): unknown {
  switch (query.method) {
    case 'tokenize':
      return tokenize(engine, query.prompt);
    case 'detokenize':
      return detokenize(engine.model.tokenizer, query.tokens, query.each);
    case 'kvAudit':
      return engine.loop.kvAudit();
    case 'cacheStats':
      return engine.cache?.stats();
    case 'logitsAfter':
      return engine.loop.logitsAfter(query.prompt, query.continuation);
    case 'rowAlongTrees':
      return engine.loop.rowAlongTrees(query.prompt, query.output, query.trees, query.at);
    case 'branchRows':
      return engine.loop.branchRows(query.sequence, query.branches);
    case 'costCurve':
      return measureBetweenSteps(engine);
  }
}

/** The target's verify cost curve (measured once, in a scratch sequence, while no step runs; then cached). */
function measureBetweenSteps(engine: Loaded): Promise<CostPoint[]> {
  const seq = engine.loop.ids.acquire();
  if (seq === undefined) throw new Error('no free sequence id to measure the cost curve in');
  const measured = engine.speculation.measuredCostCurve(seq).finally(() => engine.loop.ids.release(seq));
  engine.between = measured.catch(() => undefined);
  return measured.then(({ points }) => points);
}

function toWire(event: RequestEvent): WireEvent {
  return event.type === 'error' ? { type: 'error', error: serializeError(event.error) } : event;
}

/** Runs one command; returns false on dispose. */
function handle(engine: Loaded, command: Command): boolean {
  switch (command.type) {
    case 'generate': {
      const sink = (event: RequestEvent) => outbox.add(command.id, toWire(event));
      try {
        engine.loop.submit(command.id, tokenize(engine, command.prompt), command.options, sink);
      } catch (error) {
        sink({ type: 'error', error });
      }
      return true;
    }
    case 'cancel':
      engine.loop.cancel(command.id);
      return true;
    case 'query':
      try {
        const value = answer(engine, command.query);
        if (!(value instanceof Promise)) post({ type: 'reply', id: command.id, value });
        else value.then((settled) => post({ type: 'reply', id: command.id, value: settled }), (error) => post({ type: 'reply', id: command.id, error: serializeError(error) }));
      } catch (error) {
        post({ type: 'reply', id: command.id, error: serializeError(error) });
      }
      return true;
    case 'dispose':
      return false;
  }
}

function publishStatus(loop: EngineLoop): void {
  const status = loop.status();
  STATUS_FIELDS.forEach((field, index) => (statusView[index] = status[field]));
}

async function run(engine: Loaded): Promise<void> {
  let disposed = false;
  let lastYield = performance.now();
  let wake: (() => void) | undefined;
  // Messages that arrive while the loop is idle (the listener also keeps this thread alive).
  commands.on('message', (command: Command) => {
    if (!handle(engine, command)) disposed = true;
    wake?.();
  });
  while (!disposed) {
    for (let message = receiveMessageOnPort(commands); message && !disposed; message = receiveMessageOnPort(commands)) {
      if (!handle(engine, message.message as Command)) disposed = true;
    }
    if (disposed) break;
    if (engine.between) {
      outbox.flush();
      await engine.between;
      engine.between = undefined;
      continue;
    }
    if (engine.loop.idle) {
      publishStatus(engine.loop);
      outbox.flush();
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      continue;
    }
    // The last step's events, and any a command made (a request refused), when due.
    outbox.flushIfDue();
    await engine.loop.step();
    publishStatus(engine.loop);
    // Cache lookups and background tier writes finish in event-loop callbacks: let them run, at
    // once while a lookup holds a request back, else every few milliseconds.
    if (engine.loop.waitingForIo || (engine.cache && performance.now() - lastYield > YIELD_EVERY_MS)) {
      await new Promise((resolve) => setImmediate(resolve));
      lastYield = performance.now();
    }
  }
}

async function shutdown(engine: Loaded): Promise<void> {
  // A measurement under way decodes on the context: it finishes before the context goes.
  await engine.between;
  engine.loop.dispose();
  // Queued stores already hold their bytes: they are written out after the contexts are gone.
  const closing = engine.cache?.close();
  engine.draft?.context.dispose();
  engine.draft?.model.dispose();
  engine.context.dispose();
  engine.model.dispose();
  await closing;
}

let engine: Loaded | undefined;
try {
  engine = await load();
  publishStatus(engine.loop);
  post({ type: 'ready', info: info(engine) });
  await run(engine);
} catch (error) {
  post({ type: 'failed', error: serializeError(error) });
} finally {
  if (engine) await shutdown(engine);
  // Process-wide callbacks must not point into this thread once it is gone.
  detachLlamaLogger();
  commands.close();
  post({ type: 'disposed' });
}
