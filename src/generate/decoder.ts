/**
 * A decoder turns the sequence so far into the next token(s). Plain decoding emits one token per
 * step; speculative decoders emit several, and must emit exactly what plain decoding would.
 */
import { TokenBatch } from '../llama/batch.js';
import type { Context } from '../llama/context.js';
import type { Sampler } from './sampling.js';
import type { SpeculationStats } from '../speculative/decoder.js';

/** Time one decoder spent, split by where it went (all milliseconds). */
export interface DecoderTimings {
  prefillMs: number;
  draftMs: number;
  verifyMs: number;
  samplingMs: number;
}

export interface Decoder {
  readonly name: string;
  /**
   * Evaluates the prompt into sequence 0 (its KV is replaced) and returns the first generated token.
   * The sequence's KV then holds the prompt; the returned token is *pending* (not yet decoded).
   */
  prefill(prompt: readonly number[]): Promise<number>;
  /**
   * `sequence` = prompt + every token emitted so far; its last token is pending. Decodes it (and,
   * speculatively, more) and returns the next tokens, at least one.
   */
  step(sequence: readonly number[]): Promise<readonly number[]>;
  /** How many tokens, the pending one included, still fit in the KV cache. */
  room(sequenceLength: number): number;
  /**
   * The logits row that chose the `index`-th token of the last `prefill`/`step`/`extend` result
   * (a zero-copy view, valid until the next decode). Decoders that cannot provide it leave it out.
   */
  emittedLogits?(index: number): Float32Array;
  /**
   * `sequence` = tokens whose first `keptLength` are in the KV cache from earlier calls (the
   * cache may hold more: they are dropped). Decodes the rest, like a prompt extension, and
   * returns the next token (pending). Without it, the loop re-runs `prefill` on the whole sequence.
   */
  extend?(sequence: readonly number[], keptLength: number): Promise<number>;
  readonly timings: DecoderTimings;
  /** Speculative decoders report what their drafts achieved. */
  readonly speculation?: SpeculationStats;
  /** Frees native resources held by the decoder (not the context). */
  dispose(): void;
}

export class PromptTooLongError extends Error {
  override name = 'PromptTooLongError';
}

export function emptyTimings(): DecoderTimings {
  return { prefillMs: 0, draftMs: 0, verifyMs: 0, samplingMs: 0 };
}

/**
 * Decodes `tokens` into sequence `seq` from `position` in batch-size chunks; only the last token
 * requests logits. Returns the batch index of the last token (for `context.logits`).
 */
export async function evaluatePrompt(context: Context, batch: TokenBatch, tokens: readonly number[], position = 0, seq = 0): Promise<number> {
  let index = 0;
  for (let start = 0; start < tokens.length; start += batch.capacity) {
    const chunk = tokens.slice(start, start + batch.capacity);
    batch.clear();
    const last = start + chunk.length === tokens.length;
    for (let i = 0; i < chunk.length; i++) index = batch.add(chunk[i], position + start + i, seq, last && i === chunk.length - 1);
    await context.decode(batch);
  }
  return index;
}

/**
 * Decodes the pending last token of `sequence` alone into sequence 0 (its logits at batch index 0)
 * and returns how long the decode took (ms).
 */
export async function decodePending(context: Context, batch: TokenBatch, sequence: readonly number[]): Promise<number> {
  const started = performance.now();
  batch.clear().add(sequence[sequence.length - 1], sequence.length - 1, 0, true);
  await context.decode(batch);
  return performance.now() - started;
}

export function checkPromptFits(context: Context, promptLength: number): void {
  if (promptLength === 0) throw new PromptTooLongError('the prompt is empty');
  if (promptLength >= context.contextSize) {
    throw new PromptTooLongError(`prompt of ${promptLength} tokens does not fit the context of ${context.contextSize} tokens (it needs room for at least one more)`);
  }
}

/** Cells left for a sequence whose last token (pending, at position length - 1) is not decoded yet. */
export function kvRoom(context: Context, sequenceLength: number): number {
  return context.contextSize - (sequenceLength - 1);
}

/** Plain autoregressive decoding: one decode, one sampled token per step. */
export class PlainDecoder implements Decoder {
  readonly name = 'plain';
  readonly timings = emptyTimings();
  private readonly batch: TokenBatch;
  /** Batch index of the logits row that chose the last returned token. */
  private lastRow = 0;

  constructor(
    private readonly context: Context,
    private readonly sampler: Sampler,
  ) {
    this.batch = new TokenBatch(Math.min(context.batchSize, 512), 1);
  }

  async prefill(prompt: readonly number[]): Promise<number> {
    checkPromptFits(this.context, prompt.length);
    const started = performance.now();
    this.context.seqRemove(0);
    const last = await evaluatePrompt(this.context, this.batch, prompt);
    this.timings.prefillMs += performance.now() - started;
    return this.sample(last, prompt);
  }

  async extend(sequence: readonly number[], keptLength: number): Promise<number> {
    if (!(keptLength >= 1 && keptLength < sequence.length)) throw new RangeError(`extend: keptLength ${keptLength} outside 1..${sequence.length - 1}`);
    checkPromptFits(this.context, sequence.length);
    const started = performance.now();
    this.context.seqRemove(0, keptLength, -1);
    const last = await evaluatePrompt(this.context, this.batch, sequence.slice(keptLength), keptLength);
    this.timings.verifyMs += performance.now() - started;
    return this.sample(last, sequence);
  }

  emittedLogits(index: number): Float32Array {
    if (index !== 0) throw new RangeError(`plain decoding emits one token per step; no row for index ${index}`);
    return this.context.logits(this.lastRow);
  }

  async step(sequence: readonly number[]): Promise<readonly number[]> {
    this.timings.verifyMs += await decodePending(this.context, this.batch, sequence);
    return [this.sample(0, sequence)];
  }

  room(sequenceLength: number): number {
    return kvRoom(this.context, sequenceLength);
  }

  dispose(): void {
    this.batch.dispose();
  }

  private sample(batchIndex: number, history: readonly number[]): number {
    const started = performance.now();
    const token = this.sampler.next(this.context.logits(batchIndex), history);
    this.lastRow = batchIndex;
    this.timings.samplingMs += performance.now() - started;
    return token;
  }
}
