/**
 * The typed entry point: load a model once, then generate from text, tokens or chat messages.
 */
import { Context, type ContextOptions } from './llama/context.js';
import { Model, type LoadModelOptions } from './llama/model.js';
import { ChatFormatter, type ChatMessage } from './generate/chat.js';
import { PlainDecoder, type Decoder } from './generate/decoder.js';
import { generate, generateAll, type GenerationChunk, type GenerationLimits, type GenerationResult } from './generate/generate.js';
import { Sampler, type SamplingOptions } from './generate/sampling.js';
import { defaultModelPath } from './paths.js';

export interface EngineOptions extends LoadModelOptions, ContextOptions {
  /** GGUF file; default: the embedded testbed model. */
  model?: string;
}

export interface GenerateOptions extends SamplingOptions, GenerationLimits {}

export type Prompt = string | readonly number[];

export class Engine {
  private chatFormatter: ChatFormatter | undefined;
  private busy = false;

  private constructor(
    readonly model: Model,
    readonly context: Context,
  ) {}

  static async load(options: EngineOptions = {}): Promise<Engine> {
    const model = await Model.load(options.model ?? defaultModelPath, options);
    try {
      const context = Context.create(model, options);
      return new Engine(model, context);
    } catch (error) {
      model.dispose();
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

  /** Streams a generation. One generation at a time per engine (they share the KV cache). */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult, void> {
    if (this.busy) throw new Error('this engine is already generating; wait for it or use another engine');
    this.busy = true;
    const decoder = this.createDecoder(options);
    try {
      return yield* generate(decoder, this.model.tokenizer, this.tokenize(prompt), options);
    } finally {
      decoder.dispose();
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
    this.context.dispose();
    this.model.dispose();
  }

  protected createDecoder(options: GenerateOptions): Decoder {
    return new PlainDecoder(this.context, new Sampler(options));
  }
}
