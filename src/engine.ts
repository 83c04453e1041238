/**
 * The typed entry point: load a model (and optionally a draft model) once, then generate from
 * text, tokens or chat messages, speculatively by default.
 */
import { availableParallelism } from 'node:os';
import { Context, type ContextOptions } from './llama/context.js';
import { Model, type LoadModelOptions } from './llama/model.js';
import { ChatFormatter, type ChatMessage } from './generate/chat.js';
import { checkPromptFits, type Decoder } from './generate/decoder.js';
import { generate, generateAll, type GenerationChunk, type GenerationLimits, type GenerationResult } from './generate/generate.js';
import { Sampler, type SamplingOptions } from './generate/sampling.js';
import { createDraftContext, DraftModelDrafter } from './speculative/draft-model.js';
import { Speculation, type SpeculationMode } from './speculative/speculation.js';
import { defaultModelPath } from './paths.js';
import { QueueFullError } from './engine/errors.js';

export interface EngineOptions extends LoadModelOptions, ContextOptions {
  /** GGUF file; default: the embedded testbed model. */
  model?: string;
  /** A small GGUF with the same vocabulary, for draft-model speculation. */
  draftModel?: string;
  /** Called before the one-time measurement of the verify cost curve. */
  onMeasure?: () => void;
  /** Requests generating at once (engine-loop interface; this engine runs one at a time). */
  maxSequences?: number;
  /** Requests that may wait for a turn; more get QueueFullError. Default: unbounded. */
  maxQueued?: number;
}

/** What the engine is doing now (for health checks, metrics and admission). */
export interface EngineStatus {
  running: number;
  waiting: number;
  kvCellsInUse: number;
  kvCells: number;
}

/** A chunk with the drafter that proposed each token (null: the target's own token). */
export interface EngineChunk extends GenerationChunk {
  draftedBy: readonly (string | null)[];
}

export interface GenerateOptions extends SamplingOptions, GenerationLimits {
  /** Speculative decoding: `auto` (default) lets the engine pick drafters and tree size; `off` decodes plainly. */
  speculation?: SpeculationMode;
}

export type Prompt = string | readonly number[];

/** Sequence ids of the target context: one per token-tree branch. */
const DEFAULT_SEQUENCES = 16;

export class Engine {
  private chatFormatter: ChatFormatter | undefined;
  private busy = false;
  /** Requests waiting for their turn, first come first served. */
  private readonly waiting: (() => void)[] = [];

  private constructor(
    readonly model: Model,
    readonly context: Context,
    readonly speculation: Speculation,
    private readonly maxQueued: number,
    private readonly draft?: { model: Model; context: Context },
  ) {}

  static async load(options: EngineOptions = {}): Promise<Engine> {
    const model = await Model.load(options.model ?? defaultModelPath, options);
    const owned: { dispose(): void }[] = [model];
    try {
      const threads = options.threads ?? availableParallelism();
      const context = Context.create(model, { sequences: DEFAULT_SEQUENCES, ...options, threads });
      owned.push(context);
      let draft: { model: Model; context: Context } | undefined;
      if (options.draftModel) {
        const draftModel = await DraftModelDrafter.loadModel(options.draftModel, model);
        owned.push(draftModel);
        draft = { model: draftModel, context: createDraftContext(draftModel, context, threads) };
      }
      const speculation = new Speculation({ target: context, threads, draft: draft?.context, onMeasure: options.onMeasure });
      return new Engine(model, context, speculation, options.maxQueued ?? Number.POSITIVE_INFINITY, draft);
    } catch (error) {
      for (const resource of owned.reverse()) resource.dispose();
      throw error;
    }
  }

  get tokenizer() {
    return this.model.tokenizer;
  }

  /** Text prompts get BOS (if the model wants it) and control tokens written as text are recognised. */
  tokenize(prompt: Prompt): number[] {
    return typeof prompt === 'string' ? this.model.tokenizer.tokenize(prompt) : [...prompt];
  }

  /** Renders messages with the model's chat template and tokenizes the result. */
  chatPrompt(messages: readonly ChatMessage[]): number[] {
    this.chatFormatter ??= ChatFormatter.forModel(this.model);
    const text = this.chatFormatter.render(messages);
    return this.model.tokenizer.tokenize(text, { addSpecial: !this.chatFormatter.startsWithBos(text) });
  }

  /** One user message: through the model's chat template when it has one, else the text as it is. */
  userPrompt(text: string): number[] {
    return this.model.metadata.chatTemplate ? this.chatPrompt([{ role: 'user', content: text }]) : this.tokenize(text);
  }

  status(): EngineStatus {
    const first = this.context.seqPosMin(0);
    return {
      running: this.busy ? 1 : 0,
      waiting: this.waiting.length,
      kvCellsInUse: first < 0 ? 0 : this.context.seqPosMax(0) - first + 1,
      kvCells: this.context.contextSize,
    };
  }

  /** Streams a generation; concurrent calls wait for their turn (they share the KV cache). */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<EngineChunk, GenerationResult, void> {
    const tokens = this.tokenize(prompt);
    checkPromptFits(this.context, tokens.length);
    await this.takeTurn(options.signal);
    try {
      const decoder = await this.speculation.decoder(options.speculation ?? 'auto', new Sampler(options));
      try {
        return yield* withDrafters(generate(decoder, this.model.tokenizer, tokens, options), decoder);
      } finally {
        decoder.dispose();
        this.context.seqRemove(0);
      }
    } finally {
      this.busy = false;
      this.waiting.shift()?.();
    }
  }

  private async takeTurn(signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (!this.busy) {
      this.busy = true;
      return;
    }
    if (this.waiting.length >= this.maxQueued) throw new QueueFullError(`${this.waiting.length} requests are already waiting`);
    await new Promise<void>((resolve, reject) => {
      const turn = () => {
        signal?.removeEventListener('abort', leave);
        this.busy = true;
        resolve();
      };
      const leave = () => {
        this.waiting.splice(this.waiting.indexOf(turn), 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', leave, { once: true });
      this.waiting.push(turn);
    });
  }

  complete(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    return generateAll(this.generate(prompt, options));
  }

  chat(messages: readonly ChatMessage[], options: GenerateOptions = {}): AsyncGenerator<EngineChunk, GenerationResult, void> {
    return this.generate(this.chatPrompt(messages), options);
  }

  dispose(): void {
    this.draft?.context.dispose();
    this.draft?.model.dispose();
    this.context.dispose();
    this.model.dispose();
  }
}

/**
 * Marks each token with the drafter that proposed it. A drafter's tree grows from the step's root,
 * so the accepted drafts it proposed are a prefix of the step's tokens: a drafter whose accepted
 * count grew by k proposed the first k. Tokens past every drafter's prefix are the target's own.
 */
async function* withDrafters(
  stream: AsyncGenerator<GenerationChunk, GenerationResult, void>,
  decoder: Decoder,
): AsyncGenerator<EngineChunk, GenerationResult, void> {
  let before = acceptedByDrafter(decoder);
  try {
    for (;;) {
      const step = await stream.next();
      if (step.done) return step.value;
      const after = acceptedByDrafter(decoder);
      const grown = [...after].map(([name, accepted]) => ({ name, count: accepted - (before.get(name) ?? 0) }));
      before = after;
      const draftedBy = step.value.tokens.map((_, i) => grown.find(({ count }) => count > i)?.name ?? null);
      yield { ...step.value, draftedBy };
    }
  } finally {
    await stream.return(undefined as never);
  }
}

function acceptedByDrafter(decoder: Decoder): Map<string, number> {
  return new Map(Object.entries(decoder.speculation?.drafters ?? {}).map(([name, stats]) => [name, stats.accepted]));
}
