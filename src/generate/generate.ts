/**
 * What a generation streams and returns: chunks of tokens and text, stop strings, end-of-generation
 * tokens, a token limit and per-request statistics.
 */
import type { Tokenizer } from '../llama/tokenizer.js';
import { TextStreamDecoder } from '../llama/tokenizer.js';
import type { DecoderTimings, SequenceDecoder } from './decoder.js';
import type { SpeculationStats } from '../speculative/decoder.js';
import { StopMatcher } from './stop.js';

export type StopReason = 'eos' | 'stop' | 'length' | 'abort' | 'context';

export interface GenerationLimits {
  /** Most tokens to generate; default 256. */
  maxTokens?: number;
  /** Generation ends before the first of these strings; it is not part of the text. */
  stop?: readonly string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  signal?: AbortSignal;
}

export interface GenerationChunk {
  /** Tokens emitted since the previous chunk (one for plain decoding, several when speculating). */
  tokens: readonly number[];
  /** Text that became final with these tokens (may be empty while a UTF-8 character or stop string is pending). */
  text: string;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  /** Engine steps after the first token (each one target decode). */
  steps: number;
  timeToFirstTokenMs: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** Time after the first token. */
  decodeMs: number;
  decodeTokensPerSecond: number;
  totalMs: number;
  timings: DecoderTimings;
  /** Present when a speculative decoder ran: τ, per-drafter acceptance. */
  speculation?: SpeculationStats;
  stopReason: StopReason;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  stats: GenerationStats;
}

/**
 * One request's output as the engine loop emits tokens for it: the token limit, end-of-generation
 * tokens, stop strings, streamed text (UTF-8 characters and possible stop strings held back until
 * final) and the statistics of the result.
 */
export class GenerationOutput {
  private readonly maxTokens: number;
  private readonly stopMatcher: StopMatcher;
  private readonly textDecoder: TextStreamDecoder;
  private readonly generated: number[] = [];
  private text = '';
  private steps = 0;
  private firstTokenAt: number | undefined;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly promptTokens: number,
    private readonly limits: GenerationLimits,
    /** When the request arrived (its time to first token includes waiting for admission). */
    private readonly started: number,
  ) {
    this.maxTokens = limits.maxTokens ?? 256;
    this.stopMatcher = new StopMatcher(limits.stop ?? []);
    this.textDecoder = new TextStreamDecoder(tokenizer);
  }

  get tokenCount(): number {
    return this.generated.length;
  }

  /** Whether the request wants any token at all (maxTokens 0 ends before the prompt is evaluated). */
  get wantsTokens(): boolean {
    return this.maxTokens > 0;
  }

  /**
   * Takes the tokens a step emitted (the first token counts as the prompt's step). Returns the
   * chunk to stream, if any, and why generation ends when it does.
   */
  push(tokens: readonly number[]): { chunk?: GenerationChunk; stopReason?: StopReason } {
    if (this.firstTokenAt === undefined) this.firstTokenAt = performance.now();
    else this.steps++;
    const accepted = acceptTokens(tokens, this.maxTokens - this.generated.length, this.tokenizer, this.limits.ignoreEos ?? false);
    this.generated.push(...accepted.tokens);
    const piece = this.stopMatcher.push(this.textDecoder.push(accepted.tokens));
    this.text += piece.text;
    const chunk = accepted.tokens.length > 0 || piece.text ? { tokens: accepted.tokens, text: piece.text } : undefined;
    if (piece.stopped) return { chunk, stopReason: 'stop' };
    if (accepted.endOfGeneration) return { chunk, stopReason: 'eos' };
    if (this.generated.length >= this.maxTokens) return { chunk, stopReason: 'length' };
    return { chunk };
  }

  /** Ends the generation: text still held back, and the result. */
  finish(stopReason: StopReason, decoder: Pick<SequenceDecoder, 'timings' | 'speculation'>): { tail?: GenerationChunk; result: GenerationResult } {
    let tail: GenerationChunk | undefined;
    if (stopReason !== 'stop') {
      const text = this.stopMatcher.push(this.textDecoder.flush()).text + this.stopMatcher.flush();
      this.text += text;
      if (text) tail = { tokens: [], text };
    }
    const stats = this.stats(decoder, stopReason);
    return { tail, result: { text: this.text, tokens: this.generated, stats } };
  }

  private stats(decoder: Pick<SequenceDecoder, 'timings' | 'speculation'>, stopReason: StopReason): GenerationStats {
    const now = performance.now();
    const firstTokenAt = this.firstTokenAt ?? now;
    const prefillMs = decoder.timings.prefillMs;
    const decodeMs = now - firstTokenAt;
    const generatedTokens = this.generated.length;
    return {
      promptTokens: this.promptTokens,
      generatedTokens,
      steps: this.steps,
      timeToFirstTokenMs: firstTokenAt - this.started,
      prefillMs,
      prefillTokensPerSecond: prefillMs > 0 ? (this.promptTokens / prefillMs) * 1000 : 0,
      decodeMs,
      decodeTokensPerSecond: decodeMs > 0 && generatedTokens > 1 ? ((generatedTokens - 1) / decodeMs) * 1000 : 0,
      totalMs: now - this.started,
      timings: { ...decoder.timings },
      speculation: decoder.speculation,
      stopReason,
    };
  }
}

/** Takes tokens up to the limit and up to (excluding) an end-of-generation token. */
function acceptTokens(tokens: readonly number[], limit: number, tokenizer: Tokenizer, ignoreEos: boolean) {
  const taken: number[] = [];
  for (const token of tokens) {
    if (taken.length >= limit) break;
    if (!ignoreEos && tokenizer.isEndOfGeneration(token)) return { tokens: taken, endOfGeneration: true };
    taken.push(token);
  }
  return { tokens: taken, endOfGeneration: false };
}

/** Runs a generation to the end and returns its result. */
export async function generateAll(iterator: AsyncGenerator<GenerationChunk, GenerationResult, void>): Promise<GenerationResult> {
  for (;;) {
    const step = await iterator.next();
    if (step.done) return step.value;
  }
}
