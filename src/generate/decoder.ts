/**
 * A sequence decoder turns one request's sequence into its next token(s), one engine step at a
 * time. The engine loop owns the batch and the decode: each step it asks every running sequence
 * what to verify (its pending token alone, or a token tree rooted at it), decodes all of them in
 * one batch, and hands each decoder the logits of its own nodes. Plain decoding emits one token
 * per step; speculative decoders emit several, and must emit exactly what plain decoding would.
 */
import type { Sampler } from './sampling.js';
import type { SpeculationStats } from '../speculative/decoder.js';
import { TokenTree } from '../speculative/tree.js';

/** Time one decoder spent, split by where it went (all milliseconds). */
export interface DecoderTimings {
  prefillMs: number;
  draftMs: number;
  /** Decodes this sequence took part in (shared with the other sequences of the batch). */
  verifyMs: number;
  samplingMs: number;
}

/** What the engine allows one sequence this step. */
export interface StepLimits {
  /** Cells the sequence may still fill, its pending token included (a tree must fit). */
  room: number;
  /** Most tree nodes, the root included, the batch can still take for this sequence. */
  maxNodes: number;
  /** Most branches (= sequence ids) its tree may use. */
  maxBranches: number;
  /**
   * Tokens already in this step's batch for other sequences (0 when it runs alone): the curve's
   * price of n more tokens is then c(B + n) − c(B), so trees shrink as concurrency grows.
   */
  batchTokens: number;
  /** Sequences sharing the step (1 when alone). */
  sequences: number;
  /**
   * The engine's number of this step, the same for every sequence in it: drafting schedules
   * (probes, draft-model re-checks) fall on multiples of their intervals, so concurrent requests
   * probe in the same step and their draft-model decodes share batches.
   */
  step: number;
}

/** What one step's decode held (the same for every sequence in it). */
export interface DecodedStep {
  /** The engine's step number: sequences of one step report the same one. */
  index: number;
  /** Tokens in the batch, prompt chunks included. */
  tokens: number;
  /** Of those, the decoding sequences' tokens (their pending tokens and trees). */
  decodingTokens: number;
  /** Decoding sequences in the batch. */
  sequences: number;
}

/** A step of one sequence with nothing else in its batch: what cost curves describe. */
export function decodedAlone(step: DecodedStep): boolean {
  return step.sequences === 1 && decodingOnly(step);
}

/** A step without prompt chunks: its time is the decoding sequences' alone. */
export function decodingOnly(step: DecodedStep): boolean {
  return step.tokens === step.decodingTokens;
}

/** Logits predicted after node `node` of the verified tree (zero-copy, valid during the call). */
export type NodeLogits = (node: number) => Float32Array;

export interface Accepted {
  /** Emitted tokens, at least one: accepted drafts then the bonus token. */
  tokens: number[];
  /** For each emitted token, the drafter whose node it was (null: the target's own). */
  draftedBy: (string | null)[];
  /** The tree node of the last accepted draft (the root when none was accepted). */
  lastNode: number;
}

export interface SequenceDecoder {
  readonly name: string;
  readonly timings: DecoderTimings;
  /** Speculative decoders report what their drafts achieved. */
  readonly speculation?: SpeculationStats;
  /** The prompt's KV is in place; `logits` predict the first token. Returns it (pending). */
  start(prompt: readonly number[], logits: Float32Array): Promise<number>;
  /**
   * Optional first half of propose(): ask the drafters. The loop calls it for every decoding
   * sequence at once (their draft-model decodes batch together) with estimated limits, then
   * propose() on each in turn with the step's own.
   */
  draft?(sequence: readonly number[], limits: StepLimits): Promise<void>;
  /** The tree to verify this step, rooted at the pending last token of `sequence`. */
  propose(sequence: readonly number[], limits: StepLimits): Promise<TokenTree>;
  /** The step's decode took `ms`. */
  observeDecode(ms: number, step: DecodedStep): void;
  /** After the decode: what the sequence emits. `sequence` ends with the tree's root. */
  accept(tree: TokenTree, logitsOf: NodeLogits, sequence: readonly number[]): Accepted;
  /** The request is over (drafters keep what outlives it). */
  dispose(): void;
}

export class PromptTooLongError extends Error {
  override name = 'PromptTooLongError';
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
  ) {
    super(
      promptTokens === 0
        ? 'the prompt is empty'
        : `prompt of ${promptTokens} tokens does not fit the context of ${contextSize} tokens (it needs room for at least one more)`,
    );
  }
}

export function emptyTimings(): DecoderTimings {
  return { prefillMs: 0, draftMs: 0, verifyMs: 0, samplingMs: 0 };
}

export function checkPromptFits(contextSize: number, promptLength: number): void {
  if (promptLength === 0 || promptLength >= contextSize) throw new PromptTooLongError(promptLength, contextSize);
}

/** Plain autoregressive decoding: the pending token alone, one sampled token per step. */
export class PlainDecoder implements SequenceDecoder {
  readonly name = 'plain';
  readonly timings = emptyTimings();

  constructor(private readonly sampler: Sampler) {}

  async start(prompt: readonly number[], logits: Float32Array): Promise<number> {
    return this.sample(logits, prompt);
  }

  async propose(sequence: readonly number[]): Promise<TokenTree> {
    return new TokenTree(sequence[sequence.length - 1]);
  }

  observeDecode(ms: number): void {
    this.timings.verifyMs += ms;
  }

  accept(_tree: TokenTree, logitsOf: NodeLogits, sequence: readonly number[]): Accepted {
    return { tokens: [this.sample(logitsOf(0), sequence)], draftedBy: [null], lastNode: 0 };
  }

  dispose(): void {}

  private sample(logits: Float32Array, history: readonly number[]): number {
    const started = performance.now();
    const token = this.sampler.next(logits, history);
    this.timings.samplingMs += performance.now() - started;
    return token;
  }
}
