/**
 * The typed entry point: load a model (and optionally a draft model) once, then generate from
 * text, tokens or chat messages, speculatively by default.
 */
import { availableParallelism } from 'node:os';
import { Context, type ContextOptions } from './llama/context.js';
import { Model, type LoadModelOptions } from './llama/model.js';
import { ChatFormatter, type ChatMessage } from './generate/chat.js';
import { checkPromptFits } from './generate/decoder.js';
import { generate, generateAll, type GenerationChunk, type GenerationLimits, type GenerationResult } from './generate/generate.js';
import { Sampler, type SamplingOptions } from './generate/sampling.js';
import { createDraftContext, DraftModelDrafter } from './speculative/draft-model.js';
import { Speculation, type SpeculationMode } from './speculative/speculation.js';
import { defaultModelPath } from './paths.js';

export interface EngineOptions extends LoadModelOptions, ContextOptions {
  /** GGUF file; default: the embedded testbed model. */
  model?: string;
  /** A small GGUF with the same vocabulary, for draft-model speculation. */
  draftModel?: string;
  /** Called before the one-time measurement of the verify cost curve. */
  onMeasure?: () => void;
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

  private constructor(
    readonly model: Model,
    readonly context: Context,
    readonly speculation: Speculation,
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
      return new Engine(model, context, speculation, draft);
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

  /** Streams a generation. One generation at a time per engine (they share the KV cache). */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    if (this.busy) throw new Error('this engine is already generating; wait for it or use another engine');
    this.busy = true;
    try {
      const tokens = this.tokenize(prompt);
      // Before anything else (the first speculative request measures the cost curve).
      checkPromptFits(this.context, tokens.length);
      const decoder = await this.speculation.decoder(options.speculation ?? 'auto', new Sampler(options));
      try {
        return yield* generate(decoder, this.model.tokenizer, tokens, options);
      } finally {
        decoder.dispose();
      }
    } finally {
      this.busy = false;
    }
  }

  complete(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    return generateAll(this.generate(prompt, options));
  }

  chat(messages: readonly ChatMessage[], options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    return this.generate(this.chatPrompt(messages), options);
  }

  dispose(): void {
    this.draft?.context.dispose();
    this.draft?.model.dispose();
    this.context.dispose();
    this.model.dispose();
  }
}
